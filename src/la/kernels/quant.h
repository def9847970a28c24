// Quantising to and from ggml's block formats (tensor/quant_blocks.h has the layouts).
#pragma once
#include <cstddef>
#include <cstdint>

#include "la/kernels/convert.h"
#include "la/tensor/dtype.h"
#include "la/tensor/quant_blocks.h"

namespace la {

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
