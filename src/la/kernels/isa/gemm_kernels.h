// The pieces of gemm.cpp's blocked GEMMs that are built per instruction set: packing and the
// register-tile kernel of the f32 GEMM (isa/gemm_avx2.cpp, isa/gemm_avx512.cpp) and of the
// bf16-arithmetic GEMM (isa/gemm_bf16_avx512.cpp, also AVX512-BF16). Internal to gemm.cpp and
// tests.
#pragma once
#include <cstdint>

#include "la/tensor/dtype.h"

namespace la::gemm_detail {

// One build of the f32 GEMM: its geometry and its pieces.
//   avx512: a 14 x 32 register tile (28 zmm accumulators), KC 256, MC 112 (packed A ~112 KiB,
//           stays in L2), NC 512 (packed B 512 KiB); weight-broadcast tile 14 weight rows x 32.
//   avx2:   6 x 16 (12 ymm accumulators), KC 256, MC 96, NC 512; no weight-broadcast form.
// KC is a multiple of 256, so a k-span of a quantised row is whole blocks.
struct Kernels {
  const char* name;
  int64_t mr, nr, kc, mc, nc;  // register tile mr x nr; packed blocks A mc x kc, B kc x nc
  // The weight-broadcast form for few rows of A and an f32 weight (prefill): C^T = W · A^T with
  // the weight rows broadcast in place and A^T packed instead of W, so no transpose of the weight.
  // Tile: wr weight rows x wm rows of A; K in kc blocks, as the packed form, so both give the
  // same bits. wr = 0: this build has none (pack_at and kernel_wb are null).
  int64_t wr, wm;
  // A[mc, kc] (row stride lda) -> ceil(mc/mr) panels [kc][mr], rows past mc zero.
  void (*pack_a)(const float* A, int64_t lda, int64_t mc, int64_t kc, float* ap);
  // B[k][n] = W[n][k] for n in [n0, n0+nr), k in [k0, k0+kc) -> one panel [kc][NR], columns past
  // nr zero. tmp: NR*KC floats (quantised rows are dequantised there first).
  void (*pack_b_nt)(const WeightMatrix& w, int64_t n0, int64_t nr, int64_t k0, int64_t kc, float* panel, float* tmp);
  // B[k][n] = W[k][n] for k in [k0, k0+kc), n in [n0, n0+nc) -> ceil(nc/NR) panels [kc][NR].
  // tmp: NC floats. For quantised W, n0 is a multiple of the block size.
  void (*pack_b_nn)(const WeightMatrix& w, int64_t k0, int64_t kc, int64_t n0, int64_t nc, float* bp, float* tmp);
  // C[mr, nr] (+)= a-panel · b-panel over kc (ldc: C's row stride).
  void (*kernel)(int64_t kc, const float* a, const float* b, float* C, int64_t ldc, int mr, int nr, bool add);
  // A[m][k0 + k] -> at[k * ldat + m] for m < M, k < kc; columns M .. ldat-1 zero (ldat % wm == 0).
  void (*pack_at)(const float* A, int64_t lda, int64_t M, int64_t k0, int64_t kc, float* at, int64_t ldat);
  // C[m][j] (+)= Σ_k w[j * ldw + k] at[k * ldat + m] for j < nr (<= wr), m < mr (<= wm).
  void (*kernel_wb)(int64_t kc, const float* w, int64_t ldw, int nr, const float* at, int64_t ldat, float* C,
                    int64_t ldc, int mr, bool add);
};

const Kernels& avx512_kernels();  // call only where the CPU runs the avx512 build
const Kernels& avx2_kernels();    // call only where the CPU runs the avx2 build
// The build for the instruction set in force (core/runtime.h): avx512 from avx512 up, else avx2;
// call only when gemm_available().
const Kernels& kernels();

// 16 x 16 transpose: dst[j * ldd + i] = src[i * lds + j] (exposed for its test).
void transpose16(const float* src, int64_t lds, float* dst, int64_t ldd);

// The bf16-arithmetic GEMM (gemm_bf16_nt/nn, BF16 weights only): A is rounded to bf16 while it
// is packed, the weight is packed as stored, and vdpbf16ps adds the products of one k-pair into
// f32 accumulators: c += a[k] b[k] + a[k+1] b[k+1]. Packed elements are such pairs, a uint32
// with k in the low and k+1 in the high half (zero past the end of an odd K). Same register tile
// as the f32 kernel; KC counts k (even, so pairs never straddle blocks): 768 = a 110M model's
// dim in one block, with B's block (KC/2 x NC pairs, 768 KiB) and A's (168 KiB) in a 1 MiB L2.
// Measured on Zen 5 against 256, 512 and 1024 (bench/bench_gemm): 2-8% better.
constexpr int64_t kBf16MR = 14, kBf16NR = 32, kBf16KC = 768, kBf16MC = 8 * kBf16MR, kBf16NC = 512;

struct Bf16Kernels {
  // A[mc, kc] f32 (row stride lda) -> ceil(mc/MR) panels [ceil(kc/2)][MR] of pairs, each value
  // rounded to the nearest bf16 (ties to even; vcvtne2ps2bf16: subnormals become zero).
  void (*pack_a)(const float* A, int64_t lda, int64_t mc, int64_t kc, uint32_t* ap);
  // Pairs (W[n][k], W[n][k+1]) for n in [n0, n0+nr), k in [k0, k0+kc) -> one panel
  // [ceil(kc/2)][NR], columns past nr zero.
  void (*pack_b_nt)(const WeightMatrix& w, int64_t n0, int64_t nr, int64_t k0, int64_t kc, uint32_t* panel);
  // Pairs (W[k][n], W[k+1][n]) for k in [k0, k0+kc), n in [n0, n0+nc) -> ceil(nc/NR) panels
  // [ceil(kc/2)][NR].
  void (*pack_b_nn)(const WeightMatrix& w, int64_t k0, int64_t kc, int64_t n0, int64_t nc, uint32_t* bp);
  // C[mr, nr] (+)= a-panel · b-panel over kp pairs (ldc: C's row stride).
  void (*kernel)(int64_t kp, const uint32_t* a, const uint32_t* b, float* C, int64_t ldc, int mr, int nr, bool add);
};

const Bf16Kernels& bf16_kernels();  // the AVX512-BF16 build; call only when gemm_bf16_available()

}  // namespace la::gemm_detail
