// Matrix products against weights in any stored type, and the weight gradient of full training.
//   matmul_nt:  out[M,N]  = x[M,K] · W[N,K]^T       (the forward of y = W x, row by row)
//   matmul_nn:  out[M,K] (+)= dy[M,N] · W[N,K]      (the activation gradient dX = dY·W)
//   matmul_tn:  dw[N,K]  += dy[M,N]^T · x[M,K]      (the weight gradient dW = dY^T·X, f32 only:
//                                                   full training, SPEC §12; adapters never)
#pragma once
#include <cstdint>

#include "la/kernels/quant_dot.h"
#include "la/tensor/dtype.h"

namespace la {

struct Bf16Panels;  // gemm.h

// `panels`: w packed beforehand for the bf16 GEMM (gemm.h's pack_bf16_panels; a model's are
// ModelWeights::bf16_panels_for(w)), read in place when the product takes that path; ignored
// otherwise, and the same bits as without.
void matmul_nt(float* out, const float* x, const WeightMatrix& w, int64_t M, const Bf16Panels* panels = nullptr);
// Products of one input with several weights (a layer's q, k and v; its w1 and w3):
// out_i[M, w_i.rows] = x[M,K] · w_i^T, the same bits as matmul_nt on each. Quantised weights at
// inference quantise x once and share one parallel loop (quant_dot.h's quant_matmul_nt_shared);
// n <= kMaxSharedProducts.
struct SharedProduct {
  float* out;
  const WeightMatrix* w;
  const Bf16Panels* panels = nullptr;
};
void matmul_nt_shared(const float* x, int64_t M, const SharedProduct* products, int64_t n);
void matmul_nn(float* out, const float* dy, const WeightMatrix& w, int64_t M, bool accumulate,
               const Bf16Panels* panels = nullptr);

// Opt-in bf16 arithmetic (off by default): while runtime().bf16_compute is on (core/runtime.h),
// matmul_nt and matmul_nn with more than kGemvMaxRows rows against BF16-stored weights round the
// activations to bf16 and use vdpbf16ps (gemm.h's gemm_bf16_*) — about twice the f32 GEMM's
// arithmetic rate, at the cost of a relative error of up to 2^-9 per activation element. Decode
// (gemv) and every other weight type are unchanged. It applies to training as well (independent
// of ExactActivations). set_runtime refuses it where the CPU has no AVX512-BF16.
// bf16_compute_supported(): the CPU has AVX512-BF16 and the instruction set in force is AVX-512.
bool bf16_compute_supported();

void matmul_tn(float* dw, const float* dy, const float* x, int64_t M, int64_t N, int64_t K);

// Plain references (double accumulation, no BLAS, no threads) the fast paths are tested against.
void matmul_tn_ref(float* dw, const float* dy, const float* x, int64_t M, int64_t N, int64_t K);
void matmul_nt_ref(float* out, const float* x, const WeightMatrix& w, int64_t M);
void matmul_nn_ref(float* out, const float* dy, const WeightMatrix& w, int64_t M, bool accumulate);

}  // namespace la
