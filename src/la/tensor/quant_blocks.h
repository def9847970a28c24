// ggml's block-quantised storage formats, bit-compatible with GGUF files (llama.cpp's
// ggml-common.h layouts): each block stores a scale (f16) and small integers.
//   Q8_0: 32 values, d (f16) + 32 int8;             x = d * q
//   Q4_0: 32 values, d (f16) + 16 bytes of nibbles;   x = d * (q - 8); low nibbles are values
//         0..15, high nibbles 16..31
//   Q4_K: 256 values in 8 sub-blocks of 32, d and dmin (f16), 12 bytes of packed 6-bit sub-block
//         scales and mins, 128 bytes of nibbles;       x = d*sc*q - dmin*m
//   Q6_K: 256 values in 16 sub-blocks of 16, 128 bytes low 4 bits, 64 bytes high 2 bits,
//         16 int8 scales, d (f16);                     x = d * sc * (q - 32)
// The kernels that read and write them are in kernels/quant.h.
#pragma once
#include <cstddef>
#include <cstdint>

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
                  sizeof(BlockQ6_K) == 210,
              "block layouts must match ggml");

}  // namespace la
