#include "la/kernels/matmul.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <vector>

#include "la/core/error.h"
#include "la/core/runtime.h"
#include "la/kernels/convert.h"
#include "la/kernels/gemm.h"
#include "la/kernels/gemv.h"
#include "la/kernels/quant_dot.h"
#include "la/kernels/vec.h"

namespace la {

namespace {

constexpr int64_t kRowBlock = 128;  // rows of W converted to f32 at a time (fits in L2)

// GEMV for M == 1 on the types gemv.h does not cover (the block-quantised ones under
// ExactActivations): convert a row to f32, then a dot.
void gemv_typed(float* out, const float* x, const WeightMatrix& w) {
  const int64_t N = w.rows, K = w.cols;
#pragma omp parallel if (N * K >= (1 << 14))
  {
    std::vector<float> row(static_cast<size_t>(K));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      dequantize_row(w, n, row.data());
      out[n] = dot(row.data(), x, K);
    }
  }
}

// The products Runtime::bf16_compute switches: BF16 weights, more rows than gemv takes.
bool use_bf16_gemm(const WeightMatrix& w, int64_t M) {
  return w.type == DType::BF16 && M > kGemvMaxRows && runtime().bf16_compute;
}

}  // namespace

bool bf16_compute_supported() {
  return gemm_bf16_available();
}

void matmul_nt(float* out, const float* x, const WeightMatrix& w, int64_t M, const Bf16Panels* panels) {
  const int64_t N = w.rows, K = w.cols;
  if (M <= 0 || N <= 0) return;
  // Decode and other short products of F32/F16/BF16 weights are memory-bound: one fused pass over
  // the stored weights, converted in registers (gemv.h). Faster than sgemm up to 8 rows, and than
  // the former convert-a-row-then-dot path for F16/BF16 (measurements in gemv.h).
  if (M <= kGemvMaxRows && gemv_supports(w.type)) return gemv_nt(out, x, w, M);
  if (use_bf16_gemm(w, M)) return gemm_bf16_nt(out, x, w, M, false, panels);
  if (w.type == DType::F32) {
    const auto* W = static_cast<const float*>(w.data);
    if (gemm_available())
      gemm_nt(out, x, w, M, false);
    else
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, W, K, 0.0f, out, N);
    return;
  }
  // Q8_0/Q4_0/Q4_K/Q6_K weights at inference: integer products against 8-bit activations
  // (llama.cpp's scheme; error bound in quant_dot.h), per row for decode (memory-bound: the
  // weights are read once, as stored) and as an integer GEMM for prefill.
  if (quant_dot_supports(w.type) && quantized_activations_allowed()) return quant_matmul_nt(out, x, w, M);
  if (M == 1) return gemv_typed(out, x, w);
  // Short F16/BF16 prefill on AVX2 (gemv.h): faster there than the 6 x 16 GEMM at 64 rows (F16,
  // TinyLlama, 64 tokens: 66-71 against 58-60 tok/s).
  if (M <= kGemvPrefillMaxRows && gemv_prefill_available(w.type)) return gemv_prefill_nt(out, x, w, M);
  if (gemm_available()) return gemm_nt(out, x, w, M, false);
  // Convert W a block of rows at a time, each thread its own block, single-threaded sgemm
  // inside (OpenBLAS runs serially when called from an OpenMP parallel region).
  const int64_t nblocks = (N + kRowBlock - 1) / kRowBlock;
#pragma omp parallel
  {
    std::vector<float> wf(static_cast<size_t>(kRowBlock * K));
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < nblocks; ++b) {
      const int64_t n0 = b * kRowBlock, nb = std::min(kRowBlock, N - n0);
      for (int64_t r = 0; r < nb; ++r) dequantize_row(w, n0 + r, wf.data() + r * K);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, nb, K, 1.0f, x, K, wf.data(), K, 0.0f, out + n0, N);
    }
  }
}

void matmul_nt_shared(const float* x, int64_t M, const SharedProduct* products, int64_t n) {
  if (n > kMaxSharedProducts) fail("matmul_nt_shared: {} products, at most {}", n, kMaxSharedProducts);
  bool quant = quantized_activations_allowed();
  for (int64_t i = 0; i < n && quant; ++i) quant = quant_dot_supports(products[i].w->type);
  if (!quant) {
    for (int64_t i = 0; i < n; ++i) matmul_nt(products[i].out, x, *products[i].w, M, products[i].panels);
    return;
  }
  float* outs[kMaxSharedProducts];
  const WeightMatrix* ws[kMaxSharedProducts];
  for (int64_t i = 0; i < n; ++i) {
    outs[i] = products[i].out;
    ws[i] = products[i].w;
  }
  quant_matmul_nt_shared(x, M, outs, ws, n);
}

void matmul_nn(float* out, const float* dy, const WeightMatrix& w, int64_t M, bool accumulate,
               const Bf16Panels* panels) {
  const int64_t N = w.rows, K = w.cols;
  if (M <= 0 || K <= 0) return;
  if (N == 0) {
    if (!accumulate) std::fill(out, out + M * K, 0.0f);
    return;
  }
  if (use_bf16_gemm(w, M)) return gemm_bf16_nn(out, dy, w, M, accumulate, panels);
  if (gemm_available()) return gemm_nn(out, dy, w, M, accumulate);
  const float beta0 = accumulate ? 1.0f : 0.0f;
  if (w.type == DType::F32) {
    const auto* W = static_cast<const float*>(w.data);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f, dy, N, W, K, beta0, out, K);
    return;
  }
  // Sum over blocks of W's rows: out += dy[:, n0:n0+nb] · Wf[n0:n0+nb, :]. Conversion is
  // threaded, the product uses all threads through BLAS; no f32 copy of W outlives a block.
  std::vector<float> wf(static_cast<size_t>(kRowBlock * K));
  for (int64_t n0 = 0; n0 < N; n0 += kRowBlock) {
    const int64_t nb = std::min(kRowBlock, N - n0);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < nb; ++r) dequantize_row(w, n0 + r, wf.data() + r * K);
    const float beta = n0 == 0 ? beta0 : 1.0f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, nb, 1.0f, dy + n0, N, wf.data(), K, beta, out, K);
  }
}

void matmul_nt_ref(float* out, const float* x, const WeightMatrix& w, int64_t M) {
  const int64_t N = w.rows, K = w.cols;
  std::vector<float> row(static_cast<size_t>(K));
  for (int64_t n = 0; n < N; ++n) {
    dequantize_row(w, n, row.data());
    for (int64_t m = 0; m < M; ++m) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += static_cast<double>(x[m * K + k]) * row[k];
      out[m * N + n] = static_cast<float>(s);
    }
  }
}

void matmul_tn(float* dw, const float* dy, const float* x, int64_t M, int64_t N, int64_t K) {
  if (M <= 0 || N <= 0 || K <= 0) return;
  // OpenBLAS (threads from core/runtime.h); a sum over M rows per element, accumulated.
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(N), static_cast<int>(K), static_cast<int>(M),
              1.0f, dy, static_cast<int>(N), x, static_cast<int>(K), 1.0f, dw, static_cast<int>(K));
}

void matmul_tn_ref(float* dw, const float* dy, const float* x, int64_t M, int64_t N, int64_t K) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      double a = dw[n * K + k];
      for (int64_t m = 0; m < M; ++m) a += static_cast<double>(dy[m * N + n]) * x[m * K + k];
      dw[n * K + k] = static_cast<float>(a);
    }
}

void matmul_nn_ref(float* out, const float* dy, const WeightMatrix& w, int64_t M, bool accumulate) {
  const int64_t N = w.rows, K = w.cols;
  std::vector<float> wf(static_cast<size_t>(N * K));
  for (int64_t n = 0; n < N; ++n) dequantize_row(w, n, wf.data() + n * K);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) {
      double s = accumulate ? out[m * K + k] : 0.0;
      for (int64_t n = 0; n < N; ++n) s += static_cast<double>(dy[m * N + n]) * wf[n * K + k];
      out[m * K + k] = static_cast<float>(s);
    }
}

}  // namespace la
