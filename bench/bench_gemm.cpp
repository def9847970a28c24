// GEMM micro-benchmark: the f32 GEMM (weight widened while packed) against the bf16-arithmetic
// GEMM (vdpbf16ps), both on the same BF16-stored weight, forward (nt: y = x W^T) and backward
// (nn: dX = dY W) at training shapes of the 110M model (M rows = 4 x 256 tokens).
//   build/bin/bench_gemm --benchmark_min_time=1          (OMP_NUM_THREADS sets the threads)
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "la/core/half.h"
#include "la/kernels/gemm.h"

namespace {

using la::DType;
using la::WeightMatrix;

// args: M, N (output columns), K (depth), nn (0/1), bf16 arithmetic (0/1)
void BM_Gemm(benchmark::State& state) {
  const int64_t M = state.range(0), N = state.range(1), K = state.range(2);
  const bool nn = state.range(3) != 0, bf16 = state.range(4) != 0;
  if (bf16 && !la::gemm_bf16_available()) return state.SkipWithError("no AVX512-BF16 on this CPU");
  if (!la::gemm_available()) return state.SkipWithError("no AVX-512 on this CPU");
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
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * static_cast<double>(M * N * K) * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}

BENCHMARK(BM_Gemm)
    ->ArgNames({"M", "N", "K", "nn", "bf16"})
    ->ArgsProduct({{1024}, {768}, {768}, {0, 1}, {0, 1}})
    ->ArgsProduct({{1024}, {2048}, {768}, {0, 1}, {0, 1}})
    ->ArgsProduct({{1024}, {768}, {2048}, {0, 1}, {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
