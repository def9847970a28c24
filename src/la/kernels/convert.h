// Stored elements of any DType widened to f32.
#pragma once
#include <cstdint>

#include "la/tensor/dtype.h"

namespace la {

// Converts `n` stored elements to f32.
void convert_to_f32(DType t, const void* src, float* dst, int64_t n);
// One row of a weight matrix as f32.
inline void dequantize_row(const WeightMatrix& w, int64_t r, float* out) {
  convert_to_f32(w.type, w.row_ptr(r), out, w.cols);
}

// The index of the first of `n` stored elements that is NaN or infinite, or -1. Reads the bits
// (no conversion): f32/f16/bf16 values by their exponent field; quantised blocks by their f16
// scales (their integers are always finite), reporting the block's first element.
int64_t first_non_finite(DType t, const void* src, int64_t n);

}  // namespace la
