// The one LLaMA block and its two drivers (issue 10): training's logits at every position equal
// inference's (prefill, and prefill then token-by-token decode), with and without an adapter; a
// batch holding sequences with different adapters (and none) gives each sequence's logits as if
// it ran alone, in prefill and decode, at awkward lengths; a metadata-free official adapter file
// evaluates equal to the same weights with metadata.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "la/core/error.h"
#include "la/formats/safetensors.h"
#include "la/io/adapter_file.h"
#include "la/io/shapes.h"
#include "la/model/inference.h"
#include "la/model/train_graph.h"
#include "support/test_support.h"

namespace la {
namespace {

[[maybe_unused]] const bool kOneThread = test::run_library_on_one_thread();

// A stories260K-shaped model (dim 64, 5 layers, 8 heads, 4 KV heads: grouped-query) with random
// weights, and adapters with open gates, so the prompt branch really contributes.
const ModelWeights& model() {
  static const std::unique_ptr<ModelWeights> w = random_model(*named_shape("stories260k"), 11);
  return *w;
}

Adapter open_adapter(int64_t len, int64_t layers, uint64_t seed) {
  Adapter a = Adapter::create(model().config, len, layers, GateMode::Tanh, seed);
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::normal_distribution<float> nd(0.0f, 0.8f);
  for (float& g : a.gate()) g = nd(rng);
  return a;
}

std::vector<int> random_tokens(int64_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> tok(3, static_cast<int>(model().config.vocab_size) - 1);
  std::vector<int> t(static_cast<size_t>(n));
  for (int& x : t) x = tok(rng);
  return t;
}

// Largest |a - b| relative to the largest |b| over n values.
double rel_diff(const float* a, const float* b, int64_t n) {
  double d = 0, m = 0;
  for (int64_t i = 0; i < n; ++i) {
    d = std::max(d, static_cast<double>(std::fabs(a[i] - b[i])));
    m = std::max(m, static_cast<double>(std::fabs(b[i])));
  }
  return d / std::max(m, 1e-30);
}

// Training's logits for the rows of one sequence (inputs tokens[0..n-2]).
std::vector<float> train_logits(const std::vector<int>& tokens, const Adapter* a) {
  PackedBatch b;
  b.clear();
  b.add(tokens, 1);
  const int64_t R = b.rows(), V = model().config.vocab_size;
  Adapter none;
  TrainGraph g(model(), a ? *a : none, R, R, false);
  std::vector<float> out(static_cast<size_t>(R * V));
  g.logits(b, a, out.data());
  return out;
}

class TrainVsInference : public ::testing::TestWithParam<bool> {};

TEST_P(TrainVsInference, EqualLogitsAtEveryPosition) {
  const bool with_adapter = GetParam();
  const Adapter a = open_adapter(6, 3, 4);
  const Adapter* ap = with_adapter ? &a : nullptr;
  const int64_t V = model().config.vocab_size;
  const std::vector<int> tokens = random_tokens(41, 3);
  const int64_t R = static_cast<int64_t>(tokens.size()) - 1;
  const std::vector<float> train = train_logits(tokens, ap);

  // Prefill of every row in one step: the same kernels on the same rows, the same bits.
  {
    InferenceModel m(model(), R);
    std::unique_ptr<AdapterPrompts> prompts;
    if (ap) prompts = std::make_unique<AdapterPrompts>(model(), *ap);
    KVCache cache(model().config, R);
    std::vector<float> all(static_cast<size_t>(R * V));
    std::vector<SeqStep> one{{&cache, prompts.get(), tokens.data(), R, all.data(), true}};
    m.step(one);
    EXPECT_EQ(all, train) << "prefill logits differ from training's";
  }
  // Prefill of a prefix, then one token at a time: decode runs the few-row kernels (gemv, the
  // per-row attention), so the sums are ordered differently; within 5e-6 of the largest logit.
  InferenceModel m(model(), R);
  m.set_adapter(ap);
  const int64_t prefix = 9;
  const float* lg = m.forward(tokens.data(), prefix);
  double worst = rel_diff(lg, train.data() + (prefix - 1) * V, V);
  for (int64_t r = prefix; r < R; ++r) {
    lg = m.forward(&tokens[static_cast<size_t>(r)], 1);
    worst = std::max(worst, rel_diff(lg, train.data() + r * V, V));
  }
  std::printf("  decode vs training logits: largest difference %.2e of the largest logit\n", worst);
  EXPECT_LT(worst, 5e-6);
}

INSTANTIATE_TEST_SUITE_P(Block, TrainVsInference, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "WithAdapter" : "BaseModel"; });

// Two adapters and the base model in one batch, each sequence at its own length and position:
// every row equals the same sequence run alone, in prefill and in decode.
TEST(Batch, MixedAdaptersEqualEachSequenceAlone) {
  const ModelConfig& c = model().config;
  const int64_t V = c.vocab_size;
  const Adapter a = open_adapter(10, 5, 21), b = open_adapter(4, 2, 22);
  // Projected once per adapter, shared by reference by every sequence that uses it.
  const AdapterPrompts pa(model(), a), pb(model(), b);
  const std::vector<int64_t> lengths{1, 7, 129, 7};
  const std::vector<const AdapterPrompts*> prompts{&pa, &pb, nullptr, &pa};
  const size_t S = lengths.size();
  std::vector<std::vector<int>> toks;
  for (size_t s = 0; s < S; ++s) toks.push_back(random_tokens(lengths[s] + 6, 100 + static_cast<unsigned>(s)));
  const int64_t context = 160;

  InferenceModel m(model(), context, 256);
  std::vector<KVCache> alone, together;
  for (size_t s = 0; s < S; ++s) {
    alone.emplace_back(c, context);
    together.emplace_back(c, context);
  }
  std::vector<std::vector<float>> want(S), got(S);
  double worst = 0;
  auto run_step = [&](int64_t decode_step) {
    std::vector<SeqStep> batch;
    for (size_t s = 0; s < S; ++s) {
      const int64_t off = decode_step < 0 ? 0 : lengths[s] + decode_step;
      const int64_t n = decode_step < 0 ? lengths[s] : 1;
      want[s].assign(static_cast<size_t>(n * V), 0.0f);
      got[s].assign(want[s].size(), 0.0f);
      std::vector<SeqStep> one{{&alone[s], prompts[s], toks[s].data() + off, n, want[s].data(), true}};
      m.step(one);
      batch.push_back({&together[s], prompts[s], toks[s].data() + off, n, got[s].data(), true});
    }
    m.step(batch);
    for (size_t s = 0; s < S; ++s) {
      const double d = rel_diff(got[s].data(), want[s].data(), static_cast<int64_t>(want[s].size()));
      // The same bits: the step groups its products (Batch::product_rows) so that each sequence's
      // rows take the kernels they take alone (a prompt its own product, decode rows a shared
      // gemv, whose rows do not depend on each other).
      worst = std::max(worst, d);
      EXPECT_EQ(d, 0.0) << "sequence " << s << (decode_step < 0 ? " prefill" : " decode step ") << decode_step;
      EXPECT_EQ(together[s].pos(), alone[s].pos());
    }
  };
  run_step(-1);
  for (int64_t t = 0; t < 6; ++t) run_step(t);
  std::printf("  batched vs alone: largest difference %.2e of the largest logit\n", worst);

  // Not vacuous: the same tokens with the other adapter, or none, give other logits.
  KVCache c1(c, context), c2(c, context);
  std::vector<float> with_a(static_cast<size_t>(7 * V)), with_none(with_a.size());
  std::vector<SeqStep> s1{{&c1, &pa, toks[1].data(), 7, with_a.data(), true}};
  std::vector<SeqStep> s2{{&c2, nullptr, toks[1].data(), 7, with_none.data(), true}};
  m.step(s1);
  m.step(s2);
  EXPECT_GT(rel_diff(with_a.data(), with_none.data(), 7 * V), 1e-3);
}

TEST(Batch, OverflowAndBadTokensAreErrors) {
  InferenceModel m(model(), 16, 8);
  KVCache cache(model().config, 16);
  const std::vector<int> t = random_tokens(20, 1);
  std::vector<SeqStep> big{{&cache, nullptr, t.data(), 9, nullptr, false}};
  EXPECT_THROW(m.step(big), Error);  // more rows than planned
  std::vector<int> bad{1, -4};
  std::vector<SeqStep> neg{{&cache, nullptr, bad.data(), 2, nullptr, false}};
  EXPECT_THROW(m.step(neg), Error);
  EXPECT_EQ(cache.pos(), 0);  // nothing was appended by a refused step
}

// The official release's layout as users convert it: no metadata, K = 10, a [1, H, 1, 1] gate for
// every layer (the untrained lower ones included). It evaluates exactly as the same weights
// written by us with metadata.
TEST(AdapterFile, OfficialLayoutEvaluatesAsOurs) {
  const ModelConfig& c = model().config;
  Adapter ours = open_adapter(10, 3, 31);
  ours.gate_mode = GateMode::Identity;  // what the official inference applies to such a file
  test::TempDir dir;
  save_adapter(ours, dir.file("ours.safetensors"));
  SafetensorsWriter off;
  off.add_f32("adapter_query.weight", {30, c.dim}, ours.query().data());
  std::vector<float> lower(static_cast<size_t>(c.n_heads), 7.0f);  // must be ignored
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const float* g = l < ours.first_layer() ? lower.data() : ours.gate().data() + (l - ours.first_layer()) * c.n_heads;
    off.add_f32("layers." + std::to_string(l) + ".attention.gate", {1, c.n_heads, 1, 1}, g);
  }
  off.write(dir.file("official.safetensors"));

  const Adapter a = load_adapter(dir.file("ours.safetensors"), &c);
  const Adapter o = load_adapter(dir.file("official.safetensors"), &c);
  EXPECT_EQ(o.len, 10);
  EXPECT_EQ(o.n_layers, 3);
  EXPECT_EQ(o.gate_mode, GateMode::Identity);
  EXPECT_EQ(o.params.values(), a.params.values());
  PackedBatch b;
  b.clear();
  b.add(random_tokens(30, 5), 8);
  b.add(random_tokens(17, 6), 3);
  TrainGraph g(model(), a, b.rows(), 29, false);
  const LossResult la = g.evaluate(b, &a), lo = g.evaluate(b, &o);
  EXPECT_EQ(la.loss_sum, lo.loss_sum);
  EXPECT_EQ(la.tokens, lo.tokens);
  Adapter none;
  EXPECT_NE(g.evaluate(b, nullptr).loss_sum, la.loss_sum);  // the gates are open
}

// A model that records a short context (llama.cpp's converter records 128 for stories260K): when
// the prompt and the tokens asked for need more, generate sizes its KV cache to what is asked and
// warns, as llama.cpp does, instead of stopping at the recorded length.
TEST(Context, GenerateGrowsPastARecordedShortContext) {
  REQUIRE_SHARED_DATA("llama2c/tok512.bin");
  ModelConfig c = *named_shape("stories260k");
  c.max_seq_len = 16;
  const std::unique_ptr<ModelWeights> w = random_model(c, 5);
  test::TempDir dir;
  save_llama2c(*w, dir.file("short.bin"));
  const auto r = test::run_cli("generate --model " + test::shell_quote(dir.file("short.bin")) + " --tokenizer " +
                               test::shell_quote(test::shared_path("llama2c/tok512.bin")) +
                               " --prompt 'Once upon a time' -n 40 --temperature 0 --top-k 0");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("longer than the 16 the model was trained on"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("generation stopped"), std::string::npos) << r.err;
  const auto at = r.err.find("generated ");
  ASSERT_NE(at, std::string::npos) << r.err;
  EXPECT_GT(std::stoi(r.err.substr(at + 10)), 16) << r.err;  // past the recorded context (or EOS)
}

// The parameter table: rows in order over one buffer, file keys, per-layer split.
TEST(ParamTable, RowsOverOneBuffer) {
  const Adapter a = Adapter::create(model().config, 10, 3, GateMode::Tanh, 1);
  const ParamTable& t = a.params.table();
  ASSERT_EQ(t.tensors().size(), 2u);
  EXPECT_EQ(t.tensors()[0].name, "adapter_query");
  EXPECT_EQ(t.tensors()[0].file_key, "adapter_query.weight");
  EXPECT_EQ(t.tensors()[1].offset, t.tensors()[0].size);
  EXPECT_EQ(t.size(), static_cast<size_t>(a.parameter_count()));
  EXPECT_EQ(t.tensors()[1].file_key_of(0), "layers.2.attention.gate");
  EXPECT_EQ(a.query().data() + a.query().size(), a.gate().data());
  EXPECT_THROW((void)t.get("visual_proj.fc1"), Error);
  ParamTable dup;
  dup.add("x", {2});
  EXPECT_THROW(dup.add("x", {3}), Error);
}

}  // namespace
}  // namespace la
