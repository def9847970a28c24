// Micro-benchmark of attention for one query row over a KV cache (a decode step's attention in
// one layer), TinyLlama's heads: 32 query heads of 64 over 4 kv heads, n keys, the interleaved
// (GGUF) or rotate-half (Hugging Face) RoPE layout, optionally the adapter's 10 prompt keys.
//   build/bin/bench_attention --benchmark_repetitions=3      (OMP_NUM_THREADS sets the threads)
// GFLOP/s counts the two products (q·k and p·v) per head and key; GB/s the f32 keys and values
// read.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "la/kernels/attention.h"

namespace {

void BM_AttentionDecode(benchmark::State& state) {
  const int64_t n = state.range(0), plen = state.range(2);
  la::AttentionDims d;
  d.n_heads = 32, d.n_kv_heads = 4, d.head_dim = 64, d.rope_half = state.range(1) != 0;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  auto fill = [&](int64_t count) {
    std::vector<float> v(static_cast<size_t>(count));
    for (float& x : v) x = u(rng);
    return v;
  };
  const std::vector<float> q = fill(d.q_dim()), k = fill(n * d.kv_dim()), v = fill(n * d.kv_dim()),
                           pk = fill(plen * d.kv_dim()), pv = fill(plen * d.kv_dim()), gamma = fill(d.n_heads);
  const la::PromptKV prompt{pk.data(), pv.data(), gamma.data(), plen};
  std::vector<float> out(static_cast<size_t>(d.q_dim()));
  for (auto _ : state) {
    la::attention_forward(out.data(), nullptr, nullptr, q.data(), k.data(), v.data(), 1, n - 1, d,
                          plen > 0 ? &prompt : nullptr);
    benchmark::DoNotOptimize(out.data());
  }
  const auto per_iter = [&](double x) {
    return benchmark::Counter(x * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate,
                              benchmark::Counter::kIs1000);
  };
  const double keys = static_cast<double>(n + plen);
  state.counters["GFLOP/s"] = per_iter(4.0 * static_cast<double>(d.n_heads * d.head_dim) * keys / 1e9);
  state.counters["GB/s"] = per_iter(2.0 * static_cast<double>(d.kv_dim()) * keys * sizeof(float) / 1e9);
}

BENCHMARK(BM_AttentionDecode)
    ->ArgNames({"keys", "half", "prompt"})
    ->ArgsProduct({{64, 512, 1536}, {0, 1}, {0}})
    ->Args({512, 0, 10})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
