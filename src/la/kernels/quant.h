// ggml's block-quantised formats, bit-compatible with GGUF files (llama.cpp's ggml-common.h
// layouts): each block stores a scale (f16) and small integers.
//   Q8_0: 32 values, d (f16) + 32 int8;             x = d * q
//   Q4_0: 32 values, d (f16) + 16 bytes of nibbles;   x = d * (q - 8); low nibbles are values
//         0..15, high nibbles 16..31
//   Q4_K: 256 values in 8 sub-blocks of 32, d and dmin (f16), 12 bytes of packed 6-bit sub-block
//         scales and mins, 128 bytes of nibbles;       x = d*sc*q - dmin*m
//   Q6_K: 256 values in 16 sub-blocks of 16, 128 bytes low 4 bits, 64 bytes high 2 bits,
//         16 int8 scales, d (f16);                     x = d * sc * (q - 32)
#pragma once
#include <cstddef>
#include <cstdint>

#include "la/kernels/dtype.h"

namespace la {

constexpr int64_t kQK8_0 = 32;
constexpr int64_t kQK4_0 = 32;
constexpr int64_t kQK_K = 256;
constexpr int64_t kKScaleSize = 12;

struct BlockQ8_0 {
  uint16_t d;  // f16
  int8_t qs[kQK8_0];
};
struct BlockQ4_0 {
  uint16_t d;  // f16
  uint8_t qs[kQK4_0 / 2];
};
struct BlockQ4_K {
  uint16_t d;     // f16 super-block scale for the sub-block scales
  uint16_t dmin;  // f16 super-block scale for the sub-block mins
  uint8_t scales[kKScaleSize];
  uint8_t qs[kQK_K / 2];
};
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;  // f16
};
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_K) == 144 &&
              sizeof(BlockQ6_K) == 210, "block layouts must match ggml");

// n stored elements (n % block size == 0) of quantised type t to f32, exactly as ggml's
// dequantize_row_*. (F32/F16/BF16 are accepted too: plain conversion.) Throws la::Error when n
// is not a whole number of blocks.
void dequantize(DType t, const void* src, float* dst, int64_t n);

// f32 -> type t, n % block size == 0; `dst` has dtype_row_bytes(t, n) bytes. Q8_0 and Q4_0 are
// bit-identical with ggml's quantize_row_q8_0_ref / quantize_row_q4_0_ref; Q4_K and Q6_K use a
// plain round-to-nearest quantiser in ggml's structure without its scale searches (valid blocks,
// slightly larger error than llama.cpp's; see quant.cpp). F32/F16/BF16: plain conversion
// (round to nearest even).
void quantize(DType t, const float* src, void* dst, int64_t n);

}  // namespace la
