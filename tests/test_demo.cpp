// The embedded default (SPEC §13) end to end at a tiny size: every stage runs (the world, the
// tokenizer, pretrain, the base's answers, the adapter, full fine-tuning, the table), and
// summary.json holds what SPEC §13 names, consistent with itself. That the full-size demo's
// adapter answers >= 80% of the held-out questions is measured by running it (docs/DEMO.md).
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "support/test_support.h"

namespace la {
namespace {

TEST(Demo, TinyRunWritesTheSummary) {
  test::TempDir d;
  const std::string dir = d.file("demo");
  const auto r = test::run_cli("demo --dir " + test::shell_quote(dir) +
                               " --countries 8 --passes 8 --pretrain-steps 4 --epochs 1 --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  for (const char* f : {"corpus.txt", "train.json", "heldout.json", "tokenizer.bin", "base.gguf", "adapter.safetensors",
                        "full.gguf", "summary.json"})
    EXPECT_TRUE(std::filesystem::exists(dir + "/" + f)) << f;
  const auto s = nlohmann::json::parse(test::read_text(dir + "/summary.json"));
  EXPECT_EQ(s["n_heldout"].get<int>(), 16);  // half of 8 countries' 32 questions
  for (const char* k : {"exact_base", "exact_adapter", "exact_full"}) {
    EXPECT_GE(s[k].get<int>(), 0) << k;
    EXPECT_LE(s[k].get<int>(), 16) << k;
  }
  for (const char* side : {"adapter", "full"}) {
    const auto& j = s[side];
    EXPECT_GT(j["trainable_parameters"].get<int64_t>(), 0) << side;
    EXPECT_EQ(j["file_bytes"].get<int64_t>(),
              static_cast<int64_t>(std::filesystem::file_size(
                  dir + (std::string(side) == "adapter" ? "/adapter.safetensors" : "/full.gguf"))));
    EXPECT_GT(j["seconds_per_step"].get<double>(), 0) << side;
    EXPECT_GT(j["peak_memory_bytes"].get<int64_t>(), 1 << 20) << side;
    EXPECT_GT(j["heldout_loss"].get<double>(), 0) << side;
  }
  EXPECT_LT(s["adapter"]["trainable_parameters"].get<int64_t>(), s["full"]["trainable_parameters"].get<int64_t>());
  EXPECT_NE(r.out.find("LLaMA-Adapter"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace la
