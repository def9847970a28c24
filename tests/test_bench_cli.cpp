// The `bench` sub-command end to end on a tiny named shape: every number it reports is there and
// plausible (positive rates, memory at least the weights), the paired adapter-overhead
// measurement reports both rates, bf16 arithmetic is reported as on only where it was asked for
// and the CPU has it, the full-parameter step trains every weight and counts its FLOPs as the
// comment in cmd_bench.cpp says, the FMA peak is measured alone, and bad arguments fail with one
// line.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>

#include "la/kernels/matmul.h"
#include "support/test_support.h"

namespace la {
namespace {

using test::run_cli;

nlohmann::json bench_json(const std::string& args) {
  const test::CommandResult r = run_cli("bench --json --threads 1 " + args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return nlohmann::json::parse(r.out);
}

TEST(BenchCli, ReportsEveryMeasurement) {
  const nlohmann::json d = bench_json(
      "--shape stories260k --repeat 2 --prompt-tokens 8 --gen-tokens 12 --train-batch 2 --train-seq 32 "
      "--adapter-overhead");
  for (const char* key : {"prefill_tok_s", "decode_tok_s", "train_tok_s", "train_step_s", "decode_tok_s_plain",
                          "decode_tok_s_adapter", "peak_rss_mib", "activation_mib"}) {
    ASSERT_TRUE(d.contains(key)) << key;
    EXPECT_GT(d[key].get<double>(), 0.0) << key;
  }
  EXPECT_EQ(d["decode_tokens"].get<int>(), 12);
  // The KV cache read per decoded token, on average: (8 prompt rows + (12 + 1) / 2) x keys and
  // values x kv_dim 32 x 5 layers x f32 (stories260k).
  EXPECT_DOUBLE_EQ(d["decode_kv_mib"].get<double>() * (1 << 20), 14.5 * 2 * 32 * 5 * 4);
  EXPECT_EQ(d["threads"].get<int>(), 1);
  // A relative difference of two positive rates: above -100%, and finite.
  const double overhead = d["adapter_overhead_pct"].get<double>();
  EXPECT_TRUE(std::isfinite(overhead));
  EXPECT_GT(overhead, -100.0);
  EXPECT_GE(d["peak_rss_mib"].get<double>(), d["rss_after_load_mib"].get<double>());
  EXPECT_FALSE(d["bf16_compute"].get<bool>());
}

// --decode-batch: one entry per count, in the order given, each a positive aggregate rate; on a
// Q4_0 model (packed for inference as generate does).
TEST(BenchCli, BatchedDecode) {
  const nlohmann::json d = bench_json(
      "--shape stories15m --type q4_0 --no-train --repeat 1 --prompt-tokens 4 --gen-tokens 6 --decode-batch 3,1");
  ASSERT_EQ(d["batched_decode"].size(), 2u);
  EXPECT_EQ(d["batched_decode"][0]["seqs"].get<int>(), 3);
  EXPECT_EQ(d["batched_decode"][1]["seqs"].get<int>(), 1);
  for (const auto& e : d["batched_decode"]) {
    EXPECT_GT(e["tok_s"].get<double>(), 0.0);
    EXPECT_FALSE(e.contains("tok_s_mixed"));
  }
  // With adapters: one adapter for all, then one each, both rates and their relative difference.
  const nlohmann::json m = bench_json(
      "--shape stories15m --type q4_0 --no-train --repeat 1 --prompt-tokens 4 --gen-tokens 4 --decode-batch 2 "
      "--adapter-decode --adapter-layers 2");
  const auto& e = m["batched_decode"][0];
  EXPECT_GT(e["tok_s_mixed"].get<double>(), 0.0);
  EXPECT_NEAR(e["mixed_vs_same_pct"].get<double>(),
              (e["tok_s_mixed"].get<double>() / e["tok_s"].get<double>() - 1.0) * 100.0, 1e-6);
  EXPECT_NE(run_cli("bench --shape stories260k --decode-batch 0").exit_code, 0);
}

TEST(BenchCli, Bf16ComputeIsReportedWhereAvailable) {
  const test::CommandResult r = run_cli(
      "bench --json --threads 1 --shape stories260k --type bf16 --no-infer --repeat 1 --train-seq 32 "
      "--bf16-compute");
  if (!bf16_compute_supported()) {
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("error:"), std::string::npos) << r.err;
    return;
  }
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json d = nlohmann::json::parse(r.out);
  EXPECT_TRUE(d["bf16_compute"].get<bool>());
  EXPECT_GT(d["train_tok_s"].get<double>(), 0.0);
}

TEST(BenchCli, FullStepTrainsEveryWeight) {
  const nlohmann::json d =
      bench_json("--shape stories260k --full --no-infer --repeat 1 --train-batch 2 --train-seq 32");
  EXPECT_TRUE(d["train_full"].get<bool>());
  EXPECT_FALSE(d.contains("adapter_len"));
  // Every parameter of the model is trained (not an adapter's few thousand).
  EXPECT_EQ(d["train_params"].get<int64_t>(), d["params"].get<int64_t>());
  for (const char* key : {"train_tok_s", "train_step_s", "train_gflop_s", "activation_mib"}) {
    ASSERT_TRUE(d.contains(key)) << key;
    EXPECT_GT(d[key].get<double>(), 0.0) << key;
  }
  // stories260K (dim 64, hidden 172, 5 layers, kv dim 32, vocab 512), written out by hand:
  // P = 5 * (64*64 + 2*32*64 + 64*64 + 3*172*64) + 512*64 = 259,328 matrix values; per token
  // 6P + 6 * layers * dim * (seq + 1) with seq 32.
  const double flop = 6.0 * 259328 + 6.0 * 5 * 64 * 33;
  EXPECT_NEAR(d["train_gflop_per_token"].get<double>(), flop / 1e9, 1e-12);
  EXPECT_NEAR(d["train_gflop_s"].get<double>(), flop * d["train_tok_s"].get<double>() / 1e9,
              1e-9 * d["train_gflop_s"].get<double>());
  // The warm-up step's update reached the weights: the same batch's loss fell after it.
  EXPECT_LT(d["train_loss_last"].get<double>(), d["train_loss_first"].get<double>());
}

TEST(BenchCli, FmaPeakAlone) {
  const nlohmann::json d = bench_json("--fma-peak");
  EXPECT_GT(d["fma_peak_gflop_s"].get<double>(), 0.5);  // any CPU of this century, one thread
  EXPECT_EQ(d["fma_peak_threads"].get<int>(), 1);
  const int width = d["fma_peak_width"].get<int>();
  EXPECT_TRUE(width == 4 || width == 8 || width == 16) << width;
  // The loop of the instruction set in force (avx512vnni runs the avx512 one).
  EXPECT_EQ(d["isa"].get<std::string>().rfind(d["fma_peak_isa"].get<std::string>(), 0), 0u) << d["isa"];
  EXPECT_FALSE(d.contains("train_tok_s"));
}

TEST(BenchCli, BadArgumentsFailWithOneLine) {
  // A usage error gets the argument parser's message and its hint to --help.
  const test::CommandResult usage = run_cli("bench");
  EXPECT_NE(usage.exit_code, 0);
  EXPECT_NE(usage.err.find("give --model or --shape"), std::string::npos) << usage.err;
  for (const char* args : {"bench --shape no-such-shape", "bench --shape stories260k --type q9_9",
                           "bench --shape stories260k --no-infer --train-seq 100000"}) {
    SCOPED_TRACE(args);
    const test::CommandResult r = run_cli(args);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_FALSE(r.err.empty());
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
  }
}

}  // namespace
}  // namespace la
