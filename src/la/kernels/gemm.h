// Our own blocked, threaded f32 GEMM against weight matrices in any stored type (Goto/BLIS
// scheme): C[M, Ng] (+)= A[M, Kg] · B with B the weight used transposed (nt) or as is (nn).
//   nt:  C[M, w.rows] = A[M, w.cols] · W^T     (forward:  y = x W^T)
//   nn:  C[M, w.cols] = A[M, w.rows] · W       (backward: dX = dY W)
// A and C are contiguous row-major. The weight is converted to f32 while it is packed, a KC x NC
// block at a time (F16/BF16 by SIMD conversion, block-quantised rows by dequantising just the
// span needed), so no f32 copy of W exists and packing replaces both the separate conversion
// pass and BLAS's own packing.
// Each element of C is computed by one thread in one fixed order (k ascending, KC at a time), so
// results do not depend on the thread count.
//
// Built for AVX-512 (a 14 x 32 register tile of FMAs; 16 x 16 SIMD transposes for the nt
// packing) and for AVX2 (6 x 16; 8 x 8 transposes); isa/gemm_kernels.h has each build's
// geometry. gemm_available() says whether the instruction set in force (core/runtime.h) runs one
// (avx2 and up); matmul.cpp uses OpenBLAS otherwise.
#pragma once
#include <cstdint>
#include <vector>

#include "la/tensor/dtype.h"

namespace la {

bool gemm_available();
// The build in force: "avx512" or "avx2"; "none" where gemm_available() is false.
const char* gemm_kernels_name();

// For prefill-sized products gemm_nt on an F32 weight broadcasts the weight rows in place against
// a packed A^T (32 rows of A per panel in the AVX-512 build; the AVX2 build has no such form)
// instead of packing (transposing) the weight. Measured on one core (AVX-512), GFLOP/s broadcast
// vs packed: M = 64 170 vs 140 (N = K = 2048); M = 65 122 vs 142 and 48 142 vs 139 (the last
// panel mostly padding); M = 128 at N = 32000, K = 768 163 vs 175. So: up to 64 rows, where at
// most 1/8 of the panel rows would be padding (or a single panel). Same bits either way.
constexpr int64_t kGemmBroadcastMaxRows = 64;
bool gemm_broadcast_form(int64_t M);  // whether gemm_nt takes that form for M rows (F32 weights)

// `accumulate`: C += product instead of C = product.
void gemm_nt(float* C, const float* A, const WeightMatrix& w, int64_t M, bool accumulate);
void gemm_nn(float* C, const float* A, const WeightMatrix& w, int64_t M, bool accumulate);

// A frozen BF16 weight packed once, whole, into the panels the bf16 GEMM packs a block at a time:
// both layouts (nt for y = x W^T, nn for dX = dY W), each a sequence of 32-column panels of
// k-pairs over the full depth. gemm_bf16_nt/nn read them in place when given (same bits as
// packing per call); training steps then never repack the base model. Costs twice the matrix's
// bytes. Call only when gemm_bf16_available(). The owner of the weights keeps them (the model's
// ModelWeights::bf16_panels_for); `source`, rows and cols name the matrix they were packed from.
struct Bf16Panels {
  const void* source = nullptr;
  int64_t rows = 0, cols = 0;
  std::vector<uint32_t> nt, nn;
};
Bf16Panels pack_bf16_panels(const WeightMatrix& w);

// The same products with bf16 arithmetic, for BF16-stored weights on AVX512-BF16 CPUs (opt-in
// through core/runtime.h's Runtime::bf16_compute, which matmul.h follows: the numerics differ). A
// is rounded to bf16 (nearest, ties to even) while it is packed, W is used as stored (or as
// `panels`, packed from w beforehand: la::Error when they were packed from another matrix), and
// vdpbf16ps accumulates the products of k-pairs in f32. Against the exact product of the rounded
// A with W the error is only that f32 accumulation; against the f32 GEMM it is that of rounding A
// (2^-9 relative per element). Results do not depend on the thread count either.
// gemm_bf16_available(): gemm_available() and AVX512-BF16.
bool gemm_bf16_available();
void gemm_bf16_nt(float* C, const float* A, const WeightMatrix& w, int64_t M, bool accumulate,
                  const Bf16Panels* panels = nullptr);
void gemm_bf16_nn(float* C, const float* A, const WeightMatrix& w, int64_t M, bool accumulate,
                  const Bf16Panels* panels = nullptr);

}  // namespace la
