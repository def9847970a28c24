// The `bench` sub-command end to end on a tiny named shape: every number it reports is there and
// plausible (positive rates, memory at least the weights), the paired adapter-overhead
// measurement reports both rates, bf16 arithmetic is reported as on only where it was asked for
// and the CPU has it, and bad arguments fail with one line.
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
  EXPECT_EQ(d["threads"].get<int>(), 1);
  // A relative difference of two positive rates: above -100%, and finite.
  const double overhead = d["adapter_overhead_pct"].get<double>();
  EXPECT_TRUE(std::isfinite(overhead));
  EXPECT_GT(overhead, -100.0);
  EXPECT_GE(d["peak_rss_mib"].get<double>(), d["rss_after_load_mib"].get<double>());
  EXPECT_FALSE(d["bf16_compute"].get<bool>());
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
