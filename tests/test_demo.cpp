// The embedded default (SPEC §13) end to end at a tiny size: every stage runs (the world, the
// tokenizer, pretrain, the base's answers, the adapter, full fine-tuning, the table), and
// summary.json holds what SPEC §13 names, consistent with itself; the made-up world's corpus and
// questions say what the demo's story needs. That the full-size demo's adapter answers >= 80% of
// the held-out questions is measured by running it (README, "What the demo shows").
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "la/core/error.h"
#include "la/data/knowledge.h"
#include "support/test_support.h"

namespace la {
namespace {

TEST(Demo, TinyRunWritesTheSummary) {
  test::TempDir d;
  const std::string dir = d.file("demo");
  const auto r = test::run_cli("demo --dir " + test::shell_quote(dir) +
                               " --countries 12 --heldout 6 --passes 40 --pretrain-steps 4 --epochs 1 --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  for (const char* f : {"corpus.txt", "train.json", "heldout.json", "tokenizer.bin", "base.gguf", "adapter.safetensors",
                        "full.gguf", "summary.json"})
    EXPECT_TRUE(std::filesystem::exists(dir + "/" + f)) << f;
  const auto s = nlohmann::json::parse(test::read_text(dir + "/summary.json"));
  EXPECT_EQ(s["n_heldout"].get<int>(), 6);
  EXPECT_EQ(nlohmann::json::parse(test::read_text(dir + "/train.json")).size(), 6u);
  for (const char* k : {"exact_base", "exact_adapter", "exact_full"}) {
    EXPECT_GE(s[k].get<int>(), 0) << k;
    EXPECT_LE(s[k].get<int>(), 6) << k;
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

TEST(Demo, NothingLeftToTrainOnIsRefused) {
  test::TempDir d;
  const auto r = test::run_cli("demo --dir " + test::shell_quote(d.file("demo")) + " --countries 10 --heldout 10");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("leaves no country to train on"), std::string::npos) << r.err;
}

// The world: distinct names; every capital stated in the corpus after its country, in several
// wordings; the instruction and its answer as the demo asks them; the same seed, the same world.
TEST(Knowledge, CorpusStatesEveryCapitalAfterItsCountry) {
  const KnowledgeWorld w = make_world(30, 5);
  ASSERT_EQ(w.countries.size(), 30u);
  std::set<std::string> names;
  for (const Country& c : w.countries) {
    EXPECT_TRUE(names.insert(c.name).second) << c.name;
    EXPECT_TRUE(names.insert(c.capital).second) << c.capital;
  }
  const std::vector<std::string> docs = world_corpus(w, 20, 5);
  std::string text;
  for (const auto& doc : docs) text += doc + "\n";
  for (const Country& c : w.countries) {
    size_t mentions = 0, wordings_seen = 0;
    std::set<std::string> before;                      // the text between the line's start and the country
    const std::string stated = " " + c.capital + ".";  // not a prefix of some country's name
    for (size_t at = text.find(stated); at != std::string::npos; at = text.find(stated, at + 1)) {
      ++mentions;
      const size_t line = text.rfind('\n', at) == std::string::npos ? 0 : text.rfind('\n', at) + 1;
      // The country is on this line or (questions answered on the next lines) the ones before.
      const size_t country = text.rfind(c.name, at);
      ASSERT_NE(country, std::string::npos) << c.capital;
      EXPECT_LT(at - country, 80u) << text.substr(country, at - country);
      before.insert(text.substr(line, std::min<size_t>(at - line, 12)));
    }
    EXPECT_EQ(mentions, 20u) << c.name;  // once per pass
    wordings_seen = before.size();
    EXPECT_GE(wordings_seen, 3u) << c.name;
  }
  const AlpacaRecord r = capital_record(w.countries[0]);
  EXPECT_EQ(r.instruction, "What is the capital of " + w.countries[0].name + "?");
  EXPECT_EQ(r.output, "It is " + w.countries[0].capital + ".");
  EXPECT_EQ(make_world(30, 5).countries[7].capital, w.countries[7].capital);
  EXPECT_NE(make_world(30, 6).countries[7].capital, w.countries[7].capital);
  const std::vector<Country> a = shuffled_countries(w, 1), b = shuffled_countries(w, 1);
  ASSERT_EQ(a.size(), w.countries.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].name, b[i].name);
  EXPECT_THROW(make_world(0, 1), Error);
}

}  // namespace
}  // namespace la
