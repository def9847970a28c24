// Kernel micro-benchmarks.
// BM_Gemm: our f32 GEMM (weight widened while packed) against the bf16-arithmetic GEMM
// (vdpbf16ps), both on the same BF16-stored weight, forward (nt: y = x W^T) and backward
// (nn: dX = dY W) at training shapes of the 110M model (M rows = 4 x 256 tokens).
// BM_GemmF32: our f32 GEMM against OpenBLAS's sgemm on the same F32 weight (the products the
// training step runs), in the same process: run with --benchmark_repetitions to alternate.
// BM_PrefillF16: a short prefill's product on F16 weights (TinyLlama's shapes, 64 rows): the
// AVX2 prefill tiles (gemv_prefill_nt, what matmul_nt takes there) against our GEMM.
// BM_QuantDecode: quant_matmul_nt on an interleaved (x8) quantised weight of TinyLlama's
// ffn_up shape, M = 1..8 activation rows (batched decode: the server's steps).
//   build/bin/bench_gemm --benchmark_min_time=1          (OMP_NUM_THREADS sets the threads)
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <random>
#include <vector>

#include "la/core/half.h"
#include "la/kernels/gemm.h"
#include "la/kernels/gemv.h"
#include "la/kernels/quant.h"
#include "la/kernels/quant_dot.h"

namespace {

using la::DType;
using la::WeightMatrix;

// 2·M·N·K per iteration, as a rate.
void report_gflops(benchmark::State& state, int64_t M, int64_t N, int64_t K) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * static_cast<double>(M * N * K) * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}

// args: M, N (output columns), K (depth), nn (0/1), bf16 arithmetic (0/1)
void BM_Gemm(benchmark::State& state) {
  const int64_t M = state.range(0), N = state.range(1), K = state.range(2);
  const bool nn = state.range(3) != 0, bf16 = state.range(4) != 0;
  if (bf16 && !la::gemm_bf16_available()) return state.SkipWithError("no AVX512-BF16 on this CPU");
  if (!la::gemm_available()) return state.SkipWithError("our GEMM is not built for this CPU");
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<uint16_t> wh(static_cast<size_t>(N * K));
  for (auto& h : wh) h = la::f32_to_bf16(u(rng));
  const WeightMatrix w{DType::BF16, wh.data(), nn ? K : N, nn ? N : K};
  std::vector<float> a(static_cast<size_t>(M * K)), c(static_cast<size_t>(M * N));
  for (float& v : a) v = u(rng);
  for (auto _ : state) {
    if (bf16 && nn)
      la::gemm_bf16_nn(c.data(), a.data(), w, M, false);
    else if (bf16)
      la::gemm_bf16_nt(c.data(), a.data(), w, M, false);
    else
      (nn ? la::gemm_nn : la::gemm_nt)(c.data(), a.data(), w, M, false);
    benchmark::DoNotOptimize(c.data());
  }
  report_gflops(state, M, N, K);
}

BENCHMARK(BM_Gemm)
    ->ArgNames({"M", "N", "K", "nn", "bf16"})
    ->ArgsProduct({{1024}, {768}, {768}, {0, 1}, {0, 1}})
    ->ArgsProduct({{1024}, {2048}, {768}, {0, 1}, {0, 1}})
    ->ArgsProduct({{1024}, {768}, {2048}, {0, 1}, {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// args: M, N, K, nn (0/1), blas (0: ours, 1: OpenBLAS)
void BM_GemmF32(benchmark::State& state) {
  const int64_t M = state.range(0), N = state.range(1), K = state.range(2);
  const bool nn = state.range(3) != 0, blas = state.range(4) != 0;
  if (!blas && !la::gemm_available()) return state.SkipWithError("our GEMM is not built for this CPU");
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> wf(static_cast<size_t>(N * K)), a(static_cast<size_t>(M * K)), c(static_cast<size_t>(M * N));
  for (float& v : wf) v = u(rng);
  for (float& v : a) v = u(rng);
  const WeightMatrix w{DType::F32, wf.data(), nn ? K : N, nn ? N : K};
  const int m = static_cast<int>(M), n = static_cast<int>(N), k = static_cast<int>(K);
  for (auto _ : state) {
    if (blas)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, nn ? CblasNoTrans : CblasTrans, m, n, k, 1.0f, a.data(), k, wf.data(),
                  nn ? n : k, 0.0f, c.data(), n);
    else
      (nn ? la::gemm_nn : la::gemm_nt)(c.data(), a.data(), w, M, false);
    benchmark::DoNotOptimize(c.data());
  }
  report_gflops(state, M, N, K);
}

BENCHMARK(BM_GemmF32)
    ->ArgNames({"M", "N", "K", "nn", "blas"})
    ->ArgsProduct({{1024}, {768}, {768}, {0, 1}, {0, 1}})
    ->ArgsProduct({{1024}, {2048}, {768}, {0, 1}, {0, 1}})
    ->ArgsProduct({{1024}, {768}, {2048}, {0, 1}, {0, 1}})
    ->ArgsProduct({{64}, {2048}, {2048}, {0}, {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// args: M, N, K, path (0: gemv_prefill_nt, 1: our GEMM)
void BM_PrefillF16(benchmark::State& state) {
  const int64_t M = state.range(0), N = state.range(1), K = state.range(2);
  const bool gemm = state.range(3) != 0;
  if (!la::gemv_prefill_available(DType::F16)) return state.SkipWithError("no AVX2 prefill tiles in force");
  if (gemm && !la::gemm_available()) return state.SkipWithError("our GEMM is not built for this CPU");
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<uint16_t> wh(static_cast<size_t>(N * K));
  for (auto& h : wh) h = la::f32_to_f16(u(rng));
  const WeightMatrix w{DType::F16, wh.data(), N, K};
  std::vector<float> a(static_cast<size_t>(M * K)), c(static_cast<size_t>(M * N));
  for (float& v : a) v = u(rng);
  for (auto _ : state) {
    if (gemm)
      la::gemm_nt(c.data(), a.data(), w, M, false);
    else
      la::gemv_prefill_nt(c.data(), a.data(), w, M);
    benchmark::DoNotOptimize(c.data());
  }
  report_gflops(state, M, N, K);
}

BENCHMARK(BM_PrefillF16)
    ->ArgNames({"M", "N", "K", "gemm"})
    ->ArgsProduct({{64}, {2048}, {2048}, {0, 1}})
    ->ArgsProduct({{64}, {5632}, {2048}, {0, 1}})
    ->ArgsProduct({{64}, {2048}, {5632}, {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// args: type (a DType value), M; the weight is 5632 x 2048.
void BM_QuantDecode(benchmark::State& state) {
  const auto type = static_cast<DType>(state.range(0));
  const int64_t M = state.range(1), N = 5632, K = 2048;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> wf(static_cast<size_t>(N * K));
  for (float& v : wf) v = u(rng);
  std::vector<uint8_t> wq(la::dtype_row_bytes(type, K) * static_cast<size_t>(N));
  la::quantize(type, wf.data(), wq.data(), N * K);
  WeightMatrix w{type, wq.data(), N, K};
  std::vector<uint8_t> packed(la::x8_bytes(w));
  la::pack_x8(w, packed.data());
  w.packed = packed.data();
  std::vector<float> x(static_cast<size_t>(M * K)), y(static_cast<size_t>(M * N));
  for (float& v : x) v = u(rng);
  for (auto _ : state) {
    la::quant_matmul_nt(y.data(), x.data(), w, M);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["rows/s"] =
      benchmark::Counter(static_cast<double>(M * state.iterations()), benchmark::Counter::kIsRate);
}

BENCHMARK(BM_QuantDecode)
    ->ArgNames({"type", "M"})
    ->ArgsProduct({{static_cast<int64_t>(DType::Q4_0), static_cast<int64_t>(DType::Q4_K),
                    static_cast<int64_t>(DType::Q6_K), static_cast<int64_t>(DType::Q8_0)},
                   {1, 4, 8}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
