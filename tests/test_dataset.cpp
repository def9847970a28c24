// Instruction data (SPEC §3): the Alpaca templates byte for byte, loading JSON / JSONL with clear
// errors, tokenization with the prompt mask and truncation, the seeded epoch order and the
// length-grouped micro-batches.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "la/core/error.h"
#include "la/data/alpaca.h"
#include "la/data/dataset.h"
#include "la/tokenizer/tokenizer.h"
#include "support/test_support.h"

namespace {

using la::test::TempDir;
using la::test::write_text;

const char* kTokModel = "llama2c/tok512.model";

std::unique_ptr<la::Tokenizer> tok512() {
  return la::load_tokenizer(la::test::shared_data() + "/" + kTokModel);
}

// Expects load_alpaca(path) to throw la::Error whose one-line message names the file and
// contains every string in `parts`.
void expect_load_error(const std::string& path, const std::vector<std::string>& parts) {
  try {
    la::load_alpaca(path);
    ADD_FAILURE() << "no error for " << path;
  } catch (const la::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(path), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << "message is not one line: " << m;
    for (const auto& p : parts) EXPECT_NE(m.find(p), std::string::npos) << "'" << p << "' not in: " << m;
  }
}

// Brute force: positions t in [0, n-1) with t + 1 >= prompt_len.
int64_t count_supervised(const la::Example& ex) {
  int64_t c = 0;
  for (int64_t t = 0; t + 1 < static_cast<int64_t>(ex.tokens.size()); ++t)
    if (t + 1 >= ex.prompt_len) ++c;
  return c;
}

// ---------------------------------------------------------------------------------------------
// Templates

TEST(AlpacaTemplate, WithInputIsByteExact) {
  const std::string expected =
      "Below is an instruction that describes a task, paired with an input that provides further context. Write a "
      "response that appropriately completes the request.\n\n### Instruction:\nTranslate to French.\n\n### "
      "Input:\nGood morning\n\n### Response:";
  EXPECT_EQ(la::alpaca_prompt("Translate to French.", "Good morning"), expected);
}

TEST(AlpacaTemplate, WithoutInputIsByteExact) {
  const std::string expected =
      "Below is an instruction that describes a task. Write a response that appropriately completes the "
      "request.\n\n### Instruction:\nName three colors.\n\n### Response:";
  EXPECT_EQ(la::alpaca_prompt("Name three colors.", ""), expected);
  // No trailing space or newline after "### Response:".
  EXPECT_TRUE(la::alpaca_prompt("x", "").ends_with("### Response:"));
  EXPECT_TRUE(la::alpaca_prompt("x", "y").ends_with("\n\n### Input:\ny\n\n### Response:"));
}

// ---------------------------------------------------------------------------------------------
// Tokenization and masking

TEST(TokenizeAlpaca, MasksThePromptAndEndsWithEos) {
  REQUIRE_SHARED_DATA(kTokModel);
  auto tok = tok512();
  const la::AlpacaRecord r{"Tell me a story about a cat.", "", "Once upon a time there was a cat."};
  const auto ds = la::tokenize_alpaca({r}, *tok, 512);
  ASSERT_EQ(ds.examples.size(), 1u);
  const auto& ex = ds.examples[0];

  const std::string prompt = la::alpaca_prompt(r.instruction, r.input);
  const std::vector<int> prompt_body = tok->encode(prompt, false, false);
  const std::vector<int> full_body = tok->encode(prompt + r.output, false, false);
  EXPECT_EQ(ex.prompt_len, 1 + static_cast<int64_t>(prompt_body.size()));

  std::vector<int> expected{tok->bos_id()};
  expected.insert(expected.end(), full_body.begin(), full_body.end());
  expected.push_back(tok->eos_id());
  EXPECT_EQ(ex.tokens, expected);
  EXPECT_EQ(ex.tokens.front(), tok->bos_id());
  EXPECT_EQ(ex.tokens.back(), tok->eos_id());

  // For this record the prompt's tokens are a prefix of the example (the response starts a new
  // piece), so the supervised targets are exactly the output's tokens plus EOS.
  ASSERT_TRUE(std::equal(prompt_body.begin(), prompt_body.end(), ex.tokens.begin() + 1));
  const std::vector<int> targets(ex.tokens.begin() + ex.prompt_len, ex.tokens.end());
  EXPECT_EQ(targets.back(), tok->eos_id());
  EXPECT_EQ(tok->decode(targets), r.output);
  EXPECT_EQ(ex.supervised(), static_cast<int64_t>(targets.size()));
  EXPECT_EQ(ex.supervised(), count_supervised(ex));

  EXPECT_EQ(ds.truncated, 0);
  EXPECT_EQ(ds.total_tokens, static_cast<int64_t>(ex.tokens.size()));
  EXPECT_EQ(ds.supervised_tokens, ex.supervised());
}

TEST(TokenizeAlpaca, EmptyOutputSupervisesOnlyEos) {
  REQUIRE_SHARED_DATA(kTokModel);
  auto tok = tok512();
  const auto ds = la::tokenize_alpaca({{"Say nothing.", "", ""}}, *tok, 512);
  const auto& ex = ds.examples[0];
  EXPECT_EQ(static_cast<int64_t>(ex.tokens.size()), ex.prompt_len + 1);
  EXPECT_EQ(ex.supervised(), 1);
  EXPECT_EQ(ex.tokens.back(), tok->eos_id());
}

TEST(TokenizeAlpaca, SupervisedCountMatchesTheMaskDefinition) {
  // Hand-made examples, including the corner cases (prompt longer than the sequence, prompt_len 0).
  for (int64_t n = 0; n <= 6; ++n)
    for (int64_t p = 0; p <= 8; ++p) {
      la::Example ex;
      ex.tokens.assign(static_cast<size_t>(n), 7);
      ex.prompt_len = p;
      EXPECT_EQ(ex.supervised(), count_supervised(ex)) << "n=" << n << " prompt_len=" << p;
      if (p >= 1) {
        EXPECT_EQ(ex.supervised(), std::max<int64_t>(0, n - p));
      }
    }

  REQUIRE_SHARED_DATA(kTokModel);
  auto tok = tok512();
  const std::vector<la::AlpacaRecord> recs = {
      {"Name three colors.", "", "Red, green and blue."},
      {"Translate to French.", "Good morning", "Bonjour"},
      {"Summarize.", "A long text about many things, written at some length.", "Things."},
  };
  for (int64_t max_len : {2, 10, 40, 45, 50, 60, 512}) {
    const auto ds = la::tokenize_alpaca(recs, *tok, max_len);
    int64_t sup = 0, total = 0;
    for (const auto& ex : ds.examples) {
      EXPECT_EQ(ex.supervised(), count_supervised(ex)) << "max_len " << max_len;
      EXPECT_LE(static_cast<int64_t>(ex.tokens.size()), max_len);
      sup += ex.supervised();
      total += static_cast<int64_t>(ex.tokens.size());
    }
    EXPECT_EQ(ds.supervised_tokens, sup);
    EXPECT_EQ(ds.total_tokens, total);
  }
}

TEST(TokenizeAlpaca, TruncatesAndCounts) {
  REQUIRE_SHARED_DATA(kTokModel);
  auto tok = tok512();
  const std::vector<la::AlpacaRecord> recs = {
      {"Hi.", "", "Ok."},
      {"Write a long answer about the cat, the dog and the bird that lived by the river.", "",
       "This is a fairly long answer that goes on and on for a while, with many words."},
  };
  const auto full = la::tokenize_alpaca(recs, *tok, 4096);
  EXPECT_EQ(full.truncated, 0);
  const auto& a = full.examples[0];
  const auto& b = full.examples[1];
  ASSERT_LT(a.tokens.size(), b.tokens.size());

  // Cut the long one only, keeping two supervised targets: the EOS is gone.
  const int64_t max_len = b.prompt_len + 2;
  ASSERT_GE(max_len, static_cast<int64_t>(a.tokens.size()));
  const auto cut = la::tokenize_alpaca(recs, *tok, max_len);
  EXPECT_EQ(cut.truncated, 1);
  EXPECT_EQ(cut.examples[0].tokens, a.tokens);
  const auto& bc = cut.examples[1];
  EXPECT_EQ(static_cast<int64_t>(bc.tokens.size()), max_len);
  EXPECT_TRUE(std::equal(bc.tokens.begin(), bc.tokens.end(), b.tokens.begin()));
  EXPECT_EQ(bc.prompt_len, b.prompt_len);
  EXPECT_EQ(bc.supervised(), 2);
  EXPECT_NE(bc.tokens.back(), tok->eos_id());

  // Shorter than both prompts: everything truncated, nothing supervised, prompt_len unchanged.
  const auto tiny = la::tokenize_alpaca(recs, *tok, 8);
  EXPECT_EQ(tiny.truncated, 2);
  EXPECT_EQ(tiny.supervised_tokens, 0);
  EXPECT_EQ(tiny.total_tokens, 16);
  EXPECT_EQ(tiny.examples[0].prompt_len, a.prompt_len);

  EXPECT_THROW(la::tokenize_alpaca(recs, *tok, 1), la::Error);
  EXPECT_THROW(la::tokenize_alpaca(recs, *tok, 0), la::Error);
}

// ---------------------------------------------------------------------------------------------
// Loading

TEST(LoadAlpaca, JsonAndJsonlGiveTheSameRecords) {
  TempDir dir;
  const std::string arr = dir.file("data.json");
  const std::string jsonl = dir.file("data.jsonl");
  write_text(
      arr,
      "  [\n"
      "  {\"instruction\": \"Say hi.\", \"input\": \"\", \"output\": \"Hi!\"},\n"
      "  {\"instruction\": \"Translate\", \"input\": \"caf\\u00e9 \\\"au lait\\\"\", \"output\": \"coffee\\nwith "
      "milk\", \"extra\": 5},\n"
      "  {\"output\": \"\u00fcber \u732b \U0001F600\", \"instruction\": \"Unicode\"},\n"
      "  {\"instruction\": \"Null input\", \"input\": null, \"output\": \"\"}\n"
      "]\n");
  write_text(jsonl,
             "\n"
             "{\"instruction\": \"Say hi.\", \"input\": \"\", \"output\": \"Hi!\"}\r\n"
             "{\"instruction\": \"Translate\", \"input\": \"caf\\u00e9 \\\"au lait\\\"\", \"output\": \"coffee\\nwith "
             "milk\", \"extra\": {\"nested\": [1]}}\n"
             "   \n"
             "{\"output\": \"\u00fcber \u732b \U0001F600\", \"instruction\": \"Unicode\"}\n"
             "{\"instruction\": \"Null input\", \"input\": null, \"output\": \"\"}");
  const auto a = la::load_alpaca(arr);
  const auto b = la::load_alpaca(jsonl);
  ASSERT_EQ(a.size(), 4u);
  ASSERT_EQ(b.size(), 4u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].instruction, b[i].instruction) << i;
    EXPECT_EQ(a[i].input, b[i].input) << i;
    EXPECT_EQ(a[i].output, b[i].output) << i;
  }
  EXPECT_EQ(a[0].output, "Hi!");
  EXPECT_EQ(a[1].input, "caf\u00e9 \"au lait\"");
  EXPECT_EQ(a[1].output, "coffee\nwith milk");
  EXPECT_EQ(a[2].instruction, "Unicode");
  EXPECT_EQ(a[2].input, "");
  EXPECT_EQ(a[2].output, "\u00fcber \u732b \U0001F600");
  EXPECT_EQ(a[3].input, "");
  EXPECT_EQ(a[3].output, "");

  if (la::test::shared_file_exists(kTokModel)) {
    auto tok = tok512();
    const auto ta = la::tokenize_alpaca(a, *tok, 512);
    const auto tb = la::tokenize_alpaca(b, *tok, 512);
    ASSERT_EQ(ta.examples.size(), tb.examples.size());
    for (size_t i = 0; i < ta.examples.size(); ++i) {
      EXPECT_EQ(ta.examples[i].tokens, tb.examples[i].tokens);
      EXPECT_EQ(ta.examples[i].prompt_len, tb.examples[i].prompt_len);
    }
  }
}

TEST(LoadAlpaca, ByteOrderMarkIsSkipped) {
  TempDir dir;
  write_text(dir.file("bom.json"), "\xEF\xBB\xBF[{\"instruction\": \"a\", \"output\": \"b\"}]");
  write_text(dir.file("bom.jsonl"), "\xEF\xBB\xBF{\"instruction\": \"a\", \"output\": \"b\"}\n");
  EXPECT_EQ(la::load_alpaca(dir.file("bom.json")).size(), 1u);
  EXPECT_EQ(la::load_alpaca(dir.file("bom.jsonl")).size(), 1u);
}

TEST(LoadAlpaca, SharedSubset) {
  REQUIRE_SHARED_DATA("alpaca/alpaca_data_1k_subset.json");
  const auto recs = la::load_alpaca(la::test::shared_data() + "/alpaca/alpaca_data_1k_subset.json");
  ASSERT_EQ(recs.size(), 1000u);
  const auto empty_input = std::count_if(recs.begin(), recs.end(), [](const auto& r) { return r.input.empty(); });
  EXPECT_EQ(empty_input, 608);
  EXPECT_EQ(recs[0].output, "They walked to a nearby store.");
  EXPECT_TRUE(recs[0].instruction.starts_with("Re-write the following sentence, making it more concise:"));
  for (const auto& r : recs) EXPECT_FALSE(r.instruction.empty());

  if (!la::test::shared_file_exists(kTokModel)) return;
  auto tok = tok512();
  const auto ds = la::tokenize_alpaca(recs, *tok, 512);
  ASSERT_EQ(ds.examples.size(), 1000u);
  int64_t sup = 0, total = 0, truncated = 0;
  for (const auto& ex : ds.examples) {
    EXPECT_EQ(ex.tokens.front(), tok->bos_id());
    EXPECT_LE(ex.tokens.size(), 512u);
    if (ex.tokens.back() != tok->eos_id()) ++truncated;
    sup += ex.supervised();
    total += static_cast<int64_t>(ex.tokens.size());
  }
  EXPECT_EQ(ds.supervised_tokens, sup);
  EXPECT_EQ(ds.total_tokens, total);
  EXPECT_EQ(ds.truncated, truncated);
  EXPECT_GT(sup, 0);
  EXPECT_LT(sup, total);
  // Deterministic (tokenization runs in parallel).
  const auto again = la::tokenize_alpaca(recs, *tok, 512);
  for (size_t i = 0; i < ds.examples.size(); ++i) ASSERT_EQ(again.examples[i].tokens, ds.examples[i].tokens);
}

TEST(LoadAlpaca, Errors) {
  TempDir dir;
  auto file = [&](const std::string& name, const std::string& text) {
    const std::string p = dir.file(name);
    write_text(p, text);
    return p;
  };
  expect_load_error(dir.file("missing.json"), {"cannot open"});
  expect_load_error(file("empty.json", ""), {"no records"});
  expect_load_error(file("blank.json", "  \n\n \t\n"), {"no records"});
  expect_load_error(file("emptyarr.json", " [ ] "), {"no records"});
  expect_load_error(file("no_instr.json", R"([{"instruction":"a","output":"b"},{"input":"x","output":"y"}])"),
                    {"record 1", "missing 'instruction'"});
  expect_load_error(file("no_output.json", R"([{"instruction":"a"}])"), {"record 0", "missing 'output'"});
  expect_load_error(file("num_output.json", R"([{"instruction":"a","output":3}])"), {"record 0", "'output'", "string"});
  expect_load_error(file("arr_instr.json", R"([{"instruction":["a"],"output":"b"}])"), {"'instruction'", "string"});
  expect_load_error(file("num_input.json", R"([{"instruction":"a","input":1,"output":"b"}])"), {"'input'", "string"});
  expect_load_error(file("not_object.json", R"([{"instruction":"a","output":"b"}, "text"])"), {"record 1", "object"});
  // 0xC3 0x28: a lead byte followed by a non-continuation byte, at offset 30.
  expect_load_error(file("bad_utf8.json", "[{\"instruction\":\"a\",\"output\":\"\xC3\x28\"}]"),
                    {"invalid UTF-8", "byte offset 30"});
  // Overlong '/' and an encoded surrogate are rejected too.
  expect_load_error(file("overlong.json", "[{\"instruction\":\"\xC0\xAF\",\"output\":\"b\"}]"), {"invalid UTF-8"});
  expect_load_error(file("surrogate.json", "[{\"instruction\":\"\xED\xA0\x80\",\"output\":\"b\"}]"), {"invalid UTF-8"});
  expect_load_error(file("text.json", "hello, this is not JSON\n"), {"not JSON"});
  expect_load_error(file("trunc.json", R"([{"instruction":"a","output":"b"}, {"instruction":"c")"), {"not valid JSON"});
  expect_load_error(file("trailing.json", R"([{"instruction":"a","output":"b"}] x)"), {"not valid JSON"});

  // JSONL errors name the (1-based) line.
  expect_load_error(file("l_missing.jsonl", "{\"instruction\":\"a\",\"output\":\"b\"}\n\n{\"instruction\":\"c\"}\n"),
                    {"line 3", "missing 'output'"});
  expect_load_error(file("l_trunc.jsonl", "{\"instruction\":\"a\",\"output\":\"b\"}\n{\"instruction\":\"c\",\n"),
                    {"line 2", "not valid JSON"});
  expect_load_error(file("l_array.jsonl", "{\"instruction\":\"a\",\"output\":\"b\"}\n[1, 2]\n"), {"line 2", "object"});
  expect_load_error(file("pretty.json", "{\n  \"instruction\": \"a\",\n  \"output\": \"b\"\n}\n"),
                    {"single multi-line JSON value"});
}

// ---------------------------------------------------------------------------------------------
// Epoch order and micro-batches

TEST(EpochOrder, IsASeededPermutation) {
  const int64_t n = 1000;
  const auto o = la::epoch_order(n, 42, 0, true);
  ASSERT_EQ(static_cast<int64_t>(o.size()), n);
  std::vector<int64_t> sorted = o;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(sorted[static_cast<size_t>(i)], i);

  std::vector<int64_t> identity(static_cast<size_t>(n));
  std::iota(identity.begin(), identity.end(), 0);
  EXPECT_NE(o, identity);
  EXPECT_EQ(la::epoch_order(n, 42, 0, true), o);  // same (seed, epoch) -> same order
  EXPECT_NE(la::epoch_order(n, 42, 1, true), o);  // other epoch
  EXPECT_NE(la::epoch_order(n, 43, 0, true), o);  // other seed
  EXPECT_NE(la::epoch_order(n, 42, 1, true), la::epoch_order(n, 42, 2, true));
  EXPECT_EQ(la::epoch_order(n, 42, 3, false), identity);
  EXPECT_EQ(la::epoch_order(n, 0, 0, false), identity);
  EXPECT_TRUE(la::epoch_order(0, 1, 0, true).empty());
  EXPECT_EQ(la::epoch_order(1, 1, 0, true), std::vector<int64_t>{0});

  // Roughly uniform: over many epochs each element visits position 0 about equally often.
  std::vector<int> first(5, 0);
  for (int64_t e = 0; e < 5000; ++e) ++first[static_cast<size_t>(la::epoch_order(5, 7, e, true)[0])];
  for (int c : first) EXPECT_NEAR(c, 1000, 150);
}

TEST(MicroBatches, GroupByLengthAndCoverEachIndexOnce) {
  std::vector<la::Example> ex(10);
  const int lens[10] = {5, 3, 9, 3, 7, 1, 9, 2, 5, 4};
  for (size_t i = 0; i < ex.size(); ++i) ex[i].tokens.assign(static_cast<size_t>(lens[i]), 1);

  const std::vector<int64_t> batch = {0, 1, 2, 3, 4, 5, 6, 7, 8};  // not example 9
  const auto mbs = la::split_micro_batches(batch, ex, 4);
  ASSERT_EQ(mbs.size(), 3u);
  EXPECT_EQ(mbs[0].size(), 4u);
  EXPECT_EQ(mbs[1].size(), 4u);
  EXPECT_EQ(mbs[2].size(), 1u);
  // Sorted by length, stable among equal lengths (1 before 3, 0 before 8, 2 before 6).
  const std::vector<std::vector<int64_t>> expected = {{5, 7, 1, 3}, {0, 8, 4, 2}, {6}};
  EXPECT_EQ(mbs, expected);

  std::multiset<int64_t> seen;
  for (const auto& mb : mbs) seen.insert(mb.begin(), mb.end());
  EXPECT_EQ(seen, std::multiset<int64_t>(batch.begin(), batch.end()));

  // Longest example of each micro-batch <= shortest of the next.
  for (size_t k = 0; k + 1 < mbs.size(); ++k) {
    size_t longest = 0, shortest = SIZE_MAX;
    for (auto i : mbs[k]) longest = std::max(longest, ex[static_cast<size_t>(i)].tokens.size());
    for (auto i : mbs[k + 1]) shortest = std::min(shortest, ex[static_cast<size_t>(i)].tokens.size());
    EXPECT_LE(longest, shortest);
  }

  EXPECT_EQ(la::split_micro_batches(batch, ex, 100).size(), 1u);
  EXPECT_EQ(la::split_micro_batches(batch, ex, 1).size(), batch.size());
  EXPECT_TRUE(la::split_micro_batches({}, ex, 4).empty());
  EXPECT_THROW(la::split_micro_batches(batch, ex, 0), la::Error);
  EXPECT_THROW(la::split_micro_batches({10}, ex, 2), la::Error);
}

}  // namespace
