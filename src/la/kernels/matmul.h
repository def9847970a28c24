// Matrix products against frozen weights in any stored type.
//   matmul_nt:  out[M,N]  = x[M,K] · W[N,K]^T       (the forward of y = W x, row by row)
//   matmul_nn:  out[M,K] (+)= dy[M,N] · W[N,K]      (the activation gradient dX = dY·W)
// No weight gradient exists anywhere: the base model is frozen.
#pragma once
#include <cstdint>

#include "la/kernels/dtype.h"

namespace la {

void matmul_nt(float* out, const float* x, const WeightMatrix& w, int64_t M);
void matmul_nn(float* out, const float* dy, const WeightMatrix& w, int64_t M, bool accumulate);

// Opt-in bf16 arithmetic (off by default; process-wide): while on, matmul_nt and matmul_nn with
// more than kGemvMaxRows rows against BF16-stored weights round the activations to bf16 and use
// vdpbf16ps (gemm.h's gemm_bf16_*) — about twice the f32 GEMM's arithmetic rate, at the cost of a
// relative error of up to 2^-9 per activation element. Decode (gemv) and every other weight type
// are unchanged. It applies to training as well (independent of ExactActivations).
// bf16_compute_supported(): the CPU has AVX512-BF16 (and LA_ISA allows AVX-512).
// set_bf16_compute(true) on a CPU without it is an error (la::Error).
bool bf16_compute_supported();
void set_bf16_compute(bool on);
bool bf16_compute_enabled();

// Plain references (double accumulation, no BLAS, no threads) the fast paths are tested against.
void matmul_nt_ref(float* out, const float* x, const WeightMatrix& w, int64_t M);
void matmul_nn_ref(float* out, const float* dy, const WeightMatrix& w, int64_t M, bool accumulate);

}  // namespace la
