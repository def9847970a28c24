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

// Plain references (double accumulation, no BLAS, no threads) the fast paths are tested against.
void matmul_nt_ref(float* out, const float* x, const WeightMatrix& w, int64_t M);
void matmul_nn_ref(float* out, const float* dy, const WeightMatrix& w, int64_t M, bool accumulate);

}  // namespace la
