// llama2.c checkpoints against the real material in ../shared/data/llama2c:
//   - stories260K.bin reproduces llama2.c run.c's greedy output (CLI and library), and its first
//     logits match a float64 port of run.c;
//   - aidreams260K.bin (plain multi-head attention, seq_len 128) loads and generates;
//   - the version-1 "ak42" layout and the legacy separate-classifier layout (negative vocab),
//     both written here from stories260K's own arrays, load to the same model.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <numeric>
#include <string>
#include <vector>

#include "la/core/cpu.h"
#include "la/io/loader.h"
#include "la/model/inference.h"
#include "la/sample/sampler.h"
#include "la/tokenizer/tokenizer.h"
#include "support/test_support.h"

namespace {

using la::test::run_cli;
using la::test::shared_data;
using la::test::shell_quote;

// The library runs here use one thread (the default thread count is exercised by the CLI golden
// run in test_llama2c).
[[maybe_unused]] const bool kOneThread = la::test::run_library_on_one_thread();

constexpr const char* kStories = "llama2c/stories260K.bin";
constexpr const char* kReference = "llama2c/stories260K_greedy_reference.json";

std::string data(const std::string& rel) {
  return la::test::shared_path(rel);
}

nlohmann::json reference() {
  return nlohmann::json::parse(la::test::read_text(data(kReference)));
}

// Logits at every position of feeding `inputs` one token at a time.
std::vector<std::vector<float>> logits_for(const la::ModelWeights& w, const std::vector<int>& inputs) {
  la::InferenceModel m(w, w.config.max_seq_len);
  std::vector<std::vector<float>> out;
  for (int t : inputs) {
    const float* l = m.forward(&t, 1);
    out.emplace_back(l, l + w.config.vocab_size);
  }
  return out;
}

struct GreedyRun {
  std::vector<int> generated;  // after BOS
  std::vector<std::vector<float>> logits;
};

// Greedy decoding from BOS (id 1) for `steps` tokens, as run.c -t 0 does.
GreedyRun greedy(const la::ModelWeights& w, int steps) {
  la::InferenceModel m(w, w.config.max_seq_len);
  GreedyRun r;
  int tok = 1;
  for (int s = 0; s < steps; ++s) {
    const float* l = m.forward(&tok, 1);
    r.logits.emplace_back(l, l + w.config.vocab_size);
    tok = la::argmax(l, w.config.vocab_size);
    r.generated.push_back(tok);
  }
  return r;
}

const float* f32(const la::WeightMatrix& m) {
  EXPECT_EQ(m.type, la::DType::F32);
  return static_cast<const float*>(m.data);
}

void append_floats(std::string& out, const float* p, int64_t n) {
  out.append(reinterpret_cast<const char*>(p), static_cast<size_t>(n) * sizeof(float));
}
template <typename T>
void append_pod(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

// The classifier used for the separate-classifier files: row r = 2 * embedding row (V-1-r).
// Scaling by 2 is exact, so its logits are exactly (up to summation order) 2 * the tied
// model's logits read backwards, which proves the appended matrix, not the embedding, is used.
std::vector<float> reversed_doubled_embedding(const la::ModelWeights& w) {
  const int64_t V = w.config.vocab_size, D = w.config.dim;
  const float* e = f32(w.tok_embeddings);
  std::vector<float> c(static_cast<size_t>(V * D));
  for (int64_t r = 0; r < V; ++r)
    for (int64_t i = 0; i < D; ++i) c[static_cast<size_t>(r * D + i)] = 2.0f * e[(V - 1 - r) * D + i];
  return c;
}

// Serialises `w` in llama2.c's version-1 layout (export.py version1_export).
std::string to_v1(const la::ModelWeights& w, const float* classifier /* null: shared */) {
  const la::ModelConfig& c = w.config;
  std::string out;
  append_pod<uint32_t>(out, 0x616b3432u);
  append_pod<int32_t>(out, 1);
  for (int64_t v : {c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.max_seq_len})
    append_pod<int32_t>(out, static_cast<int32_t>(v));
  append_pod<uint8_t>(out, classifier ? 0 : 1);
  out.resize(256, '\0');
  const int64_t D = c.dim;
  for (const auto& l : w.layers) append_floats(out, l.rms_att, D);
  for (const auto& l : w.layers) append_floats(out, l.rms_ffn, D);
  append_floats(out, w.rms_final, D);
  append_floats(out, f32(w.tok_embeddings), w.tok_embeddings.numel());
  using M = la::WeightMatrix la::LayerWeights::*;
  for (M m : {&la::LayerWeights::wq, &la::LayerWeights::wk, &la::LayerWeights::wv, &la::LayerWeights::wo,
              &la::LayerWeights::w1, &la::LayerWeights::w2, &la::LayerWeights::w3})
    for (const auto& l : w.layers) append_floats(out, f32(l.*m), (l.*m).numel());
  if (classifier) append_floats(out, classifier, c.vocab_size * D);
  return out;
}

void expect_same_shape(const la::ModelConfig& a, const la::ModelConfig& b) {
  EXPECT_EQ(a.dim, b.dim);
  EXPECT_EQ(a.hidden_dim, b.hidden_dim);
  EXPECT_EQ(a.n_layers, b.n_layers);
  EXPECT_EQ(a.n_heads, b.n_heads);
  EXPECT_EQ(a.n_kv_heads, b.n_kv_heads);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.max_seq_len, b.max_seq_len);
}

// ------------------------------------------------------------------------------------------------

TEST(Llama2c, Stories260KHeader) {
  REQUIRE_SHARED_DATA(kStories);
  auto w = la::load_model(data(kStories));
  const la::ModelConfig& c = w->config;
  EXPECT_EQ(w->format, "llama2c");
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.hidden_dim, 172);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.max_seq_len, 512);
  EXPECT_TRUE(c.tied_classifier);
  EXPECT_EQ(w->output.data, w->tok_embeddings.data);
  EXPECT_EQ(c.rope_style, la::RopeStyle::Interleaved);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-5f);
  ASSERT_EQ(w->layers.size(), 5u);
  EXPECT_EQ(w->layers[0].wk.rows, 32);  // kv_dim = 4 heads * 8
  EXPECT_EQ(w->layers[0].w2.cols, 172);
}

// This run uses the default thread count; the other CLI runs pass --threads 1, so the golden
// text is checked both ways (and a busy machine does not slow the OpenMP barriers down).
TEST(Llama2c, GoldenGreedyCliWithTokenizerBin) {
  REQUIRE_SHARED_DATA(kReference);
  REQUIRE_SHARED_DATA("llama2c/tok512.bin");
  const auto ref = reference();
  auto r = run_cli("generate --model " + shell_quote(data(kStories)) + " --tokenizer " +
                   shell_quote(data("llama2c/tok512.bin")) + " --prompt '' --temperature 0 --max-new-tokens 200");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, ref["decoded_text"].get<std::string>() + "\n");
}

TEST(Llama2c, GoldenGreedyCliWithSentencePieceModel) {
  REQUIRE_SHARED_DATA(kReference);
  REQUIRE_SHARED_DATA("llama2c/tok512.model");
  const auto ref = reference();
  auto r = run_cli("generate --model " + shell_quote(data(kStories)) + " --tokenizer " +
                   shell_quote(data("llama2c/tok512.model")) +
                   " --prompt '' --temperature 0 --max-new-tokens 200 --threads 1");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, ref["decoded_text"].get<std::string>() + "\n");
  EXPECT_EQ(r.err.find("warning"), std::string::npos) << r.err;  // 200 tokens fit the 512 context
}

// A context that fills before --max-new-tokens cuts the text short: that must not look like the
// model's own stop (EOS), so a one-line warning names the context and the option that raises it,
// even with -q.
TEST(Llama2c, FullContextIsReported) {
  REQUIRE_SHARED_DATA(kReference);
  REQUIRE_SHARED_DATA("llama2c/tok512.bin");
  const std::string golden = reference()["decoded_text"].get<std::string>();
  const std::string args = "generate -q --threads 1 --model " + shell_quote(data(kStories)) + " --tokenizer " +
                           shell_quote(data("llama2c/tok512.bin")) + " --prompt '' --temperature 0 --context 64";
  auto r = run_cli(args + " --max-new-tokens 200");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ASSERT_GT(r.out.size(), 1u);
  EXPECT_TRUE(golden.starts_with(r.out.substr(0, r.out.size() - 1))) << r.out;
  EXPECT_LT(r.out.size(), golden.size());
  EXPECT_TRUE(r.err.starts_with("warning: ")) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("after 64 of 200 new tokens"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("context of 64 tokens"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--context"), std::string::npos) << r.err;
  // Stopping at --max-new-tokens inside the context is no reason to warn.
  r = run_cli(args + " --max-new-tokens 20");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
}

TEST(Llama2c, GoldenGreedyIdsAndDecodeViaLibrary) {
  REQUIRE_SHARED_DATA(kReference);
  REQUIRE_SHARED_DATA("llama2c/tok512.bin");
  const auto ref = reference();
  const auto expected = ref["generated_ids"].get<std::vector<int>>();
  ASSERT_EQ(expected.size(), 200u);
  auto w = la::load_model(data(kStories));
  const GreedyRun run = greedy(*w, 200);
  EXPECT_EQ(run.generated, expected);
  auto tok = la::load_tokenizer(data("llama2c/tok512.bin"));
  EXPECT_EQ(tok->decode(run.generated), ref["decoded_text"].get<std::string>());
}

TEST(Llama2c, FirstLogitsMatchFloat64Port) {
  REQUIRE_SHARED_DATA(kReference);
  const auto ref = reference();
  auto w = la::load_model(data(kStories));
  const auto& positions = ref["first_positions_top5_logits"];
  ASSERT_EQ(positions.size(), 3u);
  std::vector<int> inputs;
  for (const auto& p : positions) inputs.push_back(p["input_token"].get<int>());
  ASSERT_EQ(inputs, (std::vector<int>{1, 403, 407}));
  const auto logits = logits_for(*w, inputs);
  for (size_t p = 0; p < positions.size(); ++p) {
    SCOPED_TRACE("position " + std::to_string(p));
    const std::vector<float>& l = logits[p];
    std::vector<int> order(l.size());
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + 5, order.end(), [&](int a, int b) { return l[a] > l[b]; });
    const auto& top5 = positions[p]["top5"];
    ASSERT_EQ(top5.size(), 5u);
    for (size_t k = 0; k < 5; ++k) {
      const int id = top5[k][0].get<int>();
      const double v = top5[k][1].get<double>();
      EXPECT_EQ(order[k], id) << "rank " << k;
      EXPECT_NEAR(l[static_cast<size_t>(id)], v, 1e-3) << "token " << id;
    }
    // The sum of all 512 logits checks the rest of the row (the reference is rounded to 5 decimals).
    const double sum = std::accumulate(l.begin(), l.end(), 0.0);
    EXPECT_NEAR(sum, positions[p]["logits_sum"].get<double>(), 1e-3);
  }
}

TEST(Llama2c, AidreamsMultiHeadModelGenerates) {
  REQUIRE_SHARED_DATA("llama2c/aidreams260K.bin");
  REQUIRE_SHARED_DATA("llama2c/aidreams260K_tok512.bin");
  auto w = la::load_model(data("llama2c/aidreams260K.bin"));
  const la::ModelConfig& c = w->config;
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.hidden_dim, 172);
  EXPECT_EQ(c.n_layers, 4);
  EXPECT_EQ(c.n_heads, 4);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.max_seq_len, 128);
  EXPECT_TRUE(c.tied_classifier);
  EXPECT_EQ(w->layers[0].wk.rows, 64);  // plain multi-head: kv_dim == dim

  // Library: greedy to the end of the context, every logit finite.
  const GreedyRun run = greedy(*w, 128);
  for (const auto& l : run.logits)
    for (float x : l) ASSERT_TRUE(std::isfinite(x));
  auto tok = la::load_tokenizer(data("llama2c/aidreams260K_tok512.bin"));
  EXPECT_EQ(tok->vocab_size(), 512);

  // CLI: asking for more tokens than the recorded context of 128 sizes the KV cache to what is
  // asked and warns (as llama.cpp does); the first 127 tokens are the library's greedy run.
  auto r = run_cli("generate --model " + shell_quote(data("llama2c/aidreams260K.bin")) + " --tokenizer " +
                   shell_quote(data("llama2c/aidreams260K_tok512.bin")) +
                   " --prompt '' --temperature 0 --max-new-tokens 200 --threads 1");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ASSERT_GT(r.out.size(), 20u);
  EXPECT_EQ(r.out.back(), '\n');
  // SOURCES.md: run.c's greedy output begins "Echoes of vectors unfold, a gentle hum of precision".
  EXPECT_NE(r.out.find("Echoes of vectors unfold"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("longer than the 128 the model was trained on"), std::string::npos) << r.err;
  // The same text as the library's greedy tokens (stopping at EOS as the CLI does), then more.
  std::vector<int> ids;
  bool eos = false;
  for (int id : run.generated) {
    if ((eos = id == tok->eos_id())) break;
    ids.push_back(id);
  }
  const std::string lib = tok->decode(ids);
  if (eos) {
    EXPECT_EQ(r.out, lib + "\n");
  } else {
    EXPECT_TRUE(r.out.starts_with(lib) && r.out.size() > lib.size() + 1) << r.out;
  }

  // And the tokenizer beside it is found by name (aidreams260K_tok512.bin) without --tokenizer.
  auto r2 = run_cli("generate --model " + shell_quote(data("llama2c/aidreams260K.bin")) +
                    " --prompt '' --temperature 0 --max-new-tokens 30 --threads 1");
  EXPECT_EQ(r2.exit_code, 0) << r2.err;
  ASSERT_GT(r2.out.size(), 1u);
  EXPECT_TRUE(r.out.starts_with(r2.out.substr(0, r2.out.size() - 1))) << r2.out;
}

TEST(Llama2c, Version1HeaderGivesBitIdenticalLogits) {
  REQUIRE_SHARED_DATA(kStories);
  auto legacy = la::load_model(data(kStories));
  la::test::TempDir tmp;
  const std::string bytes = to_v1(*legacy, nullptr);
  // 256-byte header + every weight once: the legacy file minus its 28-byte header and its
  // seq_len*head_dim floats of RoPE tables.
  const int64_t rope_floats = legacy->config.max_seq_len * legacy->config.head_dim();
  ASSERT_EQ(bytes.size(), 256 + (legacy->files[0]->size() - 28) - static_cast<size_t>(rope_floats) * 4);
  const std::string path = tmp.file("stories260K_v1.bin");
  la::test::write_text(path, bytes);

  auto v1 = la::load_model(path);
  EXPECT_EQ(v1->format, "llama2c-v1");
  expect_same_shape(v1->config, legacy->config);
  EXPECT_TRUE(v1->config.tied_classifier);
  EXPECT_EQ(v1->output.data, v1->tok_embeddings.data);
  // The views point into the new file at the v1 offsets: norms first, then the embedding.
  const uint8_t* base = v1->files[0]->data();
  const int64_t D = v1->config.dim, L = v1->config.n_layers;
  EXPECT_EQ(reinterpret_cast<const uint8_t*>(v1->layers[0].rms_att), base + 256);
  EXPECT_EQ(reinterpret_cast<const uint8_t*>(v1->layers[0].rms_ffn), base + 256 + L * D * 4);
  EXPECT_EQ(reinterpret_cast<const uint8_t*>(v1->rms_final), base + 256 + 2 * L * D * 4);
  EXPECT_EQ(v1->tok_embeddings.data, base + 256 + (2 * L + 1) * D * 4);

  const GreedyRun a = greedy(*legacy, 20), b = greedy(*v1, 20);
  EXPECT_EQ(a.generated, b.generated);
  ASSERT_EQ(a.logits.size(), b.logits.size());
  for (size_t s = 0; s < a.logits.size(); ++s)
    ASSERT_EQ(std::memcmp(a.logits[s].data(), b.logits[s].data(), a.logits[s].size() * sizeof(float)), 0)
        << "logits differ at step " << s;

  // The CLI reads it too (detected by content, not by name) and gives the golden opening.
  if (la::test::shared_file_exists(kReference)) {
    auto r =
        run_cli("generate --model " + shell_quote(path) + " --tokenizer " + shell_quote(data("llama2c/tok512.bin")) +
                " --prompt '' --temperature 0 --max-new-tokens 200 --threads 1");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, reference()["decoded_text"].get<std::string>() + "\n");
  }
}

TEST(Llama2c, Version1SeparateClassifier) {
  REQUIRE_SHARED_DATA(kStories);
  auto legacy = la::load_model(data(kStories));
  const std::vector<float> cls = reversed_doubled_embedding(*legacy);
  la::test::TempDir tmp;
  const std::string bytes = to_v1(*legacy, cls.data());
  const std::string path = tmp.file("sep_v1.bin");
  la::test::write_text(path, bytes);
  auto v1 = la::load_model(path);
  EXPECT_FALSE(v1->config.tied_classifier);
  EXPECT_EQ(v1->output.data, v1->files[0]->data() + bytes.size() - cls.size() * 4);
  EXPECT_EQ(v1->output.rows, 512);
  EXPECT_EQ(v1->output.cols, 64);
}

TEST(Llama2c, LegacySeparateClassifier) {
  REQUIRE_SHARED_DATA(kStories);
  auto legacy = la::load_model(data(kStories));
  const int64_t V = legacy->config.vocab_size;
  const std::vector<float> cls = reversed_doubled_embedding(*legacy);

  // The same file with vocab negated in the header and the classifier appended after the RoPE
  // tables.
  std::string bytes(reinterpret_cast<const char*>(legacy->files[0]->data()), legacy->files[0]->size());
  int32_t vocab;
  std::memcpy(&vocab, bytes.data() + 20, 4);
  ASSERT_EQ(vocab, 512);
  vocab = -vocab;
  std::memcpy(bytes.data() + 20, &vocab, 4);
  append_floats(bytes, cls.data(), static_cast<int64_t>(cls.size()));
  la::test::TempDir tmp;
  const std::string path = tmp.file("sep.bin");
  la::test::write_text(path, bytes);

  auto sep = la::load_model(path);
  EXPECT_EQ(sep->format, "llama2c");
  expect_same_shape(sep->config, legacy->config);
  EXPECT_FALSE(sep->config.tied_classifier);
  EXPECT_NE(sep->output.data, sep->tok_embeddings.data);
  EXPECT_EQ(sep->output.data, sep->files[0]->data() + legacy->files[0]->size());  // right after the RoPE tables
  EXPECT_EQ(sep->output.rows, V);
  EXPECT_EQ(sep->output.cols, 64);
  EXPECT_EQ(std::memcmp(sep->output.data, cls.data(), cls.size() * 4), 0);

  // Logits through the appended classifier: logit[r] = 2 * tied_logit[V-1-r], on the tied
  // model's own greedy tokens (the hidden states do not depend on the classifier).
  const GreedyRun tied = greedy(*legacy, 8);
  std::vector<int> inputs{1};
  inputs.insert(inputs.end(), tied.generated.begin(), tied.generated.end() - 1);
  const auto logits = logits_for(*sep, inputs);
  for (size_t s = 0; s < logits.size(); ++s)
    for (int64_t r = 0; r < V; ++r) {
      const float want = 2.0f * tied.logits[s][static_cast<size_t>(V - 1 - r)];
      ASSERT_NEAR(logits[s][static_cast<size_t>(r)], want, 1e-4f + 1e-5f * std::fabs(want))
          << "step " << s << " token " << r;
    }

  // `info` reports it.
  auto r = run_cli("info --model " + shell_quote(path));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("separate"), std::string::npos) << r.out;
}

}  // namespace
