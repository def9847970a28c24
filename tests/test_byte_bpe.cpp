// Byte-level BPE (GPT-2, Llama-3, ...) and the SentencePiece-style GGUF vocabularies against
// the ids the projects themselves give:
//  - llama.cpp's expected ids (ggml-vocab-*.gguf.inp/.out, written from Hugging Face's
//    tokenizers) for every vocabulary ../shared/data/gguf holds;
//  - Llama-3's tokenizer.json against ggml-vocab-llama-bpe.gguf.out, and against Hugging Face
//    `tokenizers` on a 47 KB mixed text (tests/fixtures/tokenizer, from
//    tests/reference/make_tokenizer_fixtures.py);
//  - the vocabulary written to GGUF and read back gives the same ids; decoding gives the text
//    back, whole or streamed token by token.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "la/core/error.h"
#include "la/formats/gguf.h"
#include "la/tokenizer/byte_bpe_tokenizer.h"
#include "la/tokenizer/gguf_vocab.h"
#include "la/tokenizer/hf_tokenizer.h"
#include "la/tokenizer/pretokenizer.h"
#include "la/tokenizer/tokenizer.h"
#include "support/test_support.h"

namespace {

using la::test::read_text;
using la::test::run_cli;
using la::test::shared_path;
using la::test::shell_quote;
using la::test::TempDir;

constexpr const char* kLlama3 = "tokenizer/llama3/tokenizer.json";

std::string fixture(const std::string& name) {
  return std::string(LA_SOURCE_DIR) + "/tests/fixtures/tokenizer/" + name;
}

std::vector<int> parse_ids(const std::string& line) {
  std::vector<int> ids;
  std::istringstream in(line);
  for (int id; in >> id;) ids.push_back(id);
  return ids;
}

// llama.cpp's test-tokenizer-0 pairs: the .inp strings split at "\n__ggml_vocab_test__\n", one
// line of ids in the .out per string.
std::vector<std::pair<std::string, std::vector<int>>> vocab_tests(const std::string& stem) {
  const std::string inp = read_text(shared_path("gguf/" + stem + ".inp"));
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  for (size_t pos = 0; pos < inp.size();) {
    const size_t next = inp.find(sep, pos);
    texts.push_back(inp.substr(pos, next == std::string::npos ? std::string::npos : next - pos));
    if (next == std::string::npos) break;
    pos = next + sep.size();
  }
  std::vector<std::pair<std::string, std::vector<int>>> tests;
  std::istringstream out(read_text(shared_path("gguf/" + stem + ".out")));
  size_t i = 0;
  for (std::string line; std::getline(out, line); ++i) {
    EXPECT_LT(i, texts.size()) << stem << ": more lines of ids than texts";
    if (i < texts.size()) tests.emplace_back(texts[i], parse_ids(line));
  }
  EXPECT_EQ(tests.size(), texts.size()) << stem;
  return tests;
}

std::string show(const std::vector<int>& ids) {
  std::string s;
  for (int id : ids) s += " " + std::to_string(id);
  return s;
}

void expect_vocab_tests(const la::Tokenizer& tok, const std::string& stem) {
  const auto tests = vocab_tests(stem);
  ASSERT_GT(tests.size(), 20u) << stem;
  int failures = 0;
  for (const auto& [text, want] : tests) {
    const std::vector<int> got = tok.encode(text, false, false);
    if (got != want && ++failures <= 5)
      ADD_FAILURE() << stem << ": '" << la::printable(text) << "'\n want" << show(want) << "\n got " << show(got);
  }
  EXPECT_EQ(failures, 0) << stem << ": " << failures << " of " << tests.size() << " texts differ";
}

class GgufVocab : public testing::TestWithParam<const char*> {};

TEST_P(GgufVocab, ReproducesLlamaCppExpectedIds) {
  const std::string stem = std::string("ggml-vocab-") + GetParam() + ".gguf";
  REQUIRE_SHARED_DATA("gguf/" + stem);
  const auto tok = la::load_tokenizer(shared_path("gguf/" + stem));
  expect_vocab_tests(*tok, stem);
}

// Every vocabulary in ../shared/data/gguf but bert-bge, a WordPiece vocabulary (not BPE; no
// LLaMA-family model uses one).
INSTANTIATE_TEST_SUITE_P(AllBpe, GgufVocab,
                         testing::Values("gpt-2", "deepseek-llm", "falcon", "refact", "starcoder", "llama-spm",
                                         "phi-3"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

TEST(Llama3Tokenizer, ReproducesLlamaCppExpectedIds) {
  REQUIRE_SHARED_DATA(kLlama3);
  const auto tok = la::load_tokenizer(shared_path(kLlama3));
  EXPECT_EQ(tok->vocab_size(), 128256);
  EXPECT_EQ(tok->piece(tok->bos_id()), "<|begin_of_text|>");
  expect_vocab_tests(*tok, "ggml-vocab-llama-bpe.gguf");
}

TEST(Llama3Tokenizer, MatchesHuggingFaceTokenizersOnMixedText) {
  REQUIRE_SHARED_DATA(kLlama3);
  const auto tok = la::load_tokenizer(shared_path(kLlama3));
  const std::string text = read_text(fixture("mixed.txt"));
  const std::vector<int> want = parse_ids(read_text(fixture("mixed.llama3.ids")));
  ASSERT_GT(want.size(), 10000u);
  const std::vector<int> got = tok->encode(text, false, false);
  ASSERT_EQ(got.size(), want.size());
  size_t first = 0;
  while (first < got.size() && got[first] == want[first]) ++first;
  EXPECT_EQ(first, got.size()) << "first difference at id " << first;
  EXPECT_EQ(tok->decode(got), text);
  // BOS only when asked.
  const std::vector<int> with_bos = tok->encode("Hi", true, false);
  ASSERT_EQ(with_bos.size(), 2u);
  EXPECT_EQ(with_bos[0], tok->bos_id());
}

TEST(Llama3Tokenizer, StreamedDecodeHoldsBackPartialCharacters) {
  REQUIRE_SHARED_DATA(kLlama3);
  const auto tok = la::load_tokenizer(shared_path(kLlama3));
  const std::string text = "Llamas 🦙 and 👩‍💻 write 日本語 — naïve café";
  const std::vector<int> ids = tok->encode(text, false, false);
  la::StreamDecoder dec(*tok);
  std::string streamed;
  bool held_back = false;
  for (int id : ids) {
    const std::string part = dec.push(id);
    // Each part is whole characters: a byte-level piece may end mid-character, never a part.
    EXPECT_EQ(la::sanitize_utf8(part), part);
    held_back |= part.size() != tok->piece_bytes(id).size();
    streamed += part;
  }
  streamed += dec.flush();
  EXPECT_EQ(streamed, text);
  EXPECT_TRUE(held_back) << "no token of the emoji or CJK text ended inside a character";
}

TEST(Llama3Tokenizer, MalformedUtf8IsEncodedByteForByte) {
  REQUIRE_SHARED_DATA(kLlama3);
  const auto tok = la::load_tokenizer(shared_path(kLlama3));
  const std::string text = "ok \xff\xfe bad \xe6\x97 cut \xc3";
  std::string bytes;
  for (int id : tok->encode(text, false, false)) bytes += tok->piece_bytes(id);
  EXPECT_EQ(bytes, text);
}

TEST(Llama3Tokenizer, GgufRoundTripKeepsTheIds) {
  REQUIRE_SHARED_DATA(kLlama3);
  const auto tok = la::load_tokenizer(shared_path(kLlama3));
  const auto& bbpe = dynamic_cast<const la::ByteBpeTokenizer&>(*tok);
  EXPECT_EQ(bbpe.vocab().pre, "llama-bpe");
  EXPECT_TRUE(bbpe.vocab().ignore_merges);
  TempDir dir;
  la::GgufWriter w;
  w.set_string("general.architecture", "llama");
  la::write_gguf_vocab(w, bbpe.vocab());
  w.write(dir.file("vocab.gguf"));
  const auto back = la::load_tokenizer(dir.file("vocab.gguf"));
  EXPECT_EQ(back->vocab_size(), tok->vocab_size());
  const std::string text = read_text(fixture("mixed.txt"));
  EXPECT_EQ(back->encode(text, true, false), tok->encode(text, true, false));
}

TEST(ByteBpe, UnknownPreTokenizerIsRefused) {
  TempDir dir;
  la::GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", "tekken");
  w.set_strings("tokenizer.ggml.tokens", {"a", "b"});
  w.set_strings("tokenizer.ggml.merges", {});
  w.write(dir.file("v.gguf"));
  la::test::expect_error([&] { la::load_tokenizer(dir.file("v.gguf")); }, dir.file("v.gguf"),
                         {"pre-tokenizer 'tekken'", "not implemented"});
}

TEST(ByteBpe, SplitsAsTheExpressionsSay) {
  const auto pre = la::PreTokenizer::named("llama-bpe", "test");
  std::vector<std::string> words;
  pre->split("Hello world's  123456 \n\n  x", [&](std::string_view w) { words.emplace_back(w); });
  const std::vector<std::string> want = {"Hello", " world", "'s", " ", " ", "123", "456", " \n\n", " ", " x"};
  EXPECT_EQ(words, want);
  EXPECT_EQ(
      la::PreTokenizer::name_of(
          {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}),
      "llama-bpe");
  la::test::expect_error([] { la::PreTokenizer::from_regexes({"(unclosed"}, "t.json"); }, "t.json",
                         {"does not compile"});
}

TEST(TokenizeCli, PrintsIdsAndJson) {
  REQUIRE_SHARED_DATA(kLlama3);
  const std::string tok = " --tokenizer " + shell_quote(shared_path(kLlama3));
  const auto r = run_cli("tokenize" + tok + " --text " + shell_quote("Hello world") + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"ids\":[9906,1917]}\n");
  const auto plain = run_cli("tokenize" + tok + " --bos --file " + shell_quote(fixture("mixed.txt")));
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_EQ(parse_ids(plain.out).size(), parse_ids(read_text(fixture("mixed.llama3.ids"))).size() + 1);
  // Special pieces are text unless --parse-special (Hugging Face's encode reads them).
  const auto special = run_cli("tokenize" + tok + " --parse-special --text " + shell_quote("a<|eot_id|>b"));
  ASSERT_EQ(special.exit_code, 0) << special.err;
  EXPECT_EQ(parse_ids(special.out), (std::vector<int>{64, 128009, 65}));
  const auto as_text = run_cli("tokenize" + tok + " --text " + shell_quote("a<|eot_id|>b"));
  EXPECT_GT(parse_ids(as_text.out).size(), 3u) << as_text.out;
  const auto bad = run_cli("tokenize --tokenizer /nonexistent/tokenizer.json --text x");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("/nonexistent/tokenizer.json"), std::string::npos) << bad.err;
}

}  // namespace
