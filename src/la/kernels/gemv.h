// Products of F16 / BF16 (and F32) weight matrices with a few activation rows: matmul_nt's path for
// decode. Memory-bound, so the weights are read once and never written anywhere: each SIMD load of
// stored weights is widened to f32 in registers (vcvtph2ps for F16, a 16-bit shift for BF16) and
// FMA'd against every activation row at once, into several independent accumulators per row.
//
// The stored weights convert to f32 exactly, so the result is the f32 dot product of x with the
// stored values; only the summation order differs from other paths. When a product x_k w_k goes
// through at most d roundings (its own, if not an FMA, and the additions it takes part in),
//   |y - Σ_k x_k w_k| <= γ_d Σ_k |x_k w_k|,   γ_d = d u / (1 - d u),  u = 2^-24
// (Higham, Accuracy and Stability of Numerical Algorithms, §3.1); d = K + 1 covers any order. In
// every variant here d <= ceil(K/16) + 7 (16 or more partial sums, then a pairwise reduction);
// tests/test_gemv.cpp checks that bound.
//
// Measured (AMD EPYC Zen 5, 2 cores of a shared VM, F16 TinyLlama-shaped matrices streamed from
// DRAM, 1 thread, GB/s of weights read): one activation row 26-28 with the hardware prefetcher
// alone, 31-34 with the software prefetch of isa/gemv_impl.inc, against 9-11 for the former
// convert-a-row-to-f32-then-dot; 8 rows 14 (tiles of 4 weight rows x 3 activation rows) against
// 3.5-4 for convert + sgemm. F32 weights: 1 row ties with the f32 dot when W is 64-byte aligned
// and is ~15% faster when it is 16- or 32-byte aligned (GGUF aligns to 32); 2-8 rows 12-20
// against 8 for sgemm (2 threads: 18-33 against 11-15). Hence matmul_nt sends F32 here too.
#pragma once
#include <cstdint>
#include <vector>

#include "la/tensor/dtype.h"

namespace la {

// matmul_nt takes this path for M <= kGemvMaxRows rows of x (decode, short products); larger M
// go through our blocked GEMM (AVX-512), gemv_prefill_nt below (F16/BF16 on AVX2) or convert +
// sgemm, which are compute-bound.
constexpr int64_t kGemvMaxRows = 8;

// F32, F16 and BF16 (the quantised types have quant_dot.h).
bool gemv_supports(DType t);

// out[m*N + n] = x[m,:] · W[n,:] for m < M (any M >= 0; each weight row is read from memory once
// for all M rows), weight rows split over threads. x is [M, K] row-major.
void gemv_nt(float* out, const float* x, const WeightMatrix& w, int64_t M);

// Short prefill products (kGemvMaxRows < M <= kGemvPrefillMaxRows) of F16/BF16 weights on AVX2
// CPUs (with AVX-512 the blocked GEMM of gemm.h takes them): the same fused pass in tiles of 3 weight rows
// x 4 activation rows, one accumulator per pair, so each widened weight vector serves 4 rows and
// each x vector 3. Every output's value depends on none of M, the row range or the threads
// (gemv_nt's values differ from these only in summation order; d <= ceil(K/8) + 4 in the bound
// above). Measured on a 2-vCPU AMD EPYC (AVX2), TinyLlama-shaped F16, 2 threads: prefill of 64
// tokens 70-76 tok/s against 54-68 for convert + OpenBLAS sgemm (BF16 67-70 against ~67); tiles
// of 3x3, 4x3, 6x2 (the last two spill registers) and 2x5-2x6 were slower. At 128 rows the two
// tie and at 256 sgemm is faster (71 against 60-65 tok/s, also with the rows taken 64 at a time),
// and so is it for training's 1024 rows (110M BF16 base: 207-210 against 226-239 tok/s): matmul_nt
// sends only up to kGemvPrefillMaxRows rows here. Against gemm.h's AVX2 build (6 x 16), F16 at 64
// tokens: 66-71 here against 58-60 tok/s.
constexpr int64_t kGemvPrefillMaxRows = 64;
bool gemv_prefill_available(DType t);  // F16/BF16 and the avx2 variant in force
void gemv_prefill_nt(float* out, const float* x, const WeightMatrix& w, int64_t M);

// One instruction-set variant. Every variant gives each output the same value whatever M, n0, n1
// and the thread count are (a row's sum does not depend on which rows share the pass); variants
// differ from each other only in summation order.
struct GemvKernels {
  const char* name;  // "generic", "avx2" (AVX2 + FMA + F16C, 8 lanes), "avx512" (16 lanes)
  // out[m*ldo + n] for n in [n0, n1), m < M; serial (gemv_nt does the threading).
  void (*rows)(float* out, int64_t ldo, const WeightMatrix& w, int64_t n0, int64_t n1, const float* x, int64_t M);
  // The prefill tiles above (F16/BF16), the same contract; null in the variants without them.
  void (*rows_prefill)(float* out, int64_t ldo, const WeightMatrix& w, int64_t n0, int64_t n1, const float* x,
                       int64_t M);
};

// The variants this CPU can run, generic first.
std::vector<const GemvKernels*> gemv_variants();
// The variant gemv_nt uses: the one for the instruction set in force (core/runtime.h: the best by
// CPUID unless LA_ISA says otherwise; avx512vnni uses avx512).
const GemvKernels& gemv_kernels();

}  // namespace la
