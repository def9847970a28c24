// Full-parameter training (SPEC §12): the gradient of every parameter tensor of the model
// (embedding, tied or separate classifier, every norm and projection) against central finite
// differences of the loss, on small random models with grouped-query and plain heads, both RoPE
// layouts, with and without recompute; recompute gives the same bits; and the full graph's
// forward is exactly the frozen model's.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

#include "la/core/error.h"
#include "la/io/shapes.h"
#include "la/model/model_params.h"
#include "la/model/train_graph.h"
#include "support/grad_check.h"

namespace la {
namespace {

struct FullCase {
  const char* name;
  int64_t n_heads, n_kv_heads;
  bool tied, recompute;
  RopeStyle rope;
};

ModelConfig small_config(const FullCase& p) {
  ModelConfig c;
  c.dim = 32;
  c.hidden_dim = 64;
  c.n_layers = 2;
  c.n_heads = p.n_heads;
  c.n_kv_heads = p.n_kv_heads;
  c.vocab_size = 40;
  c.max_seq_len = 32;
  c.tied_classifier = p.tied;
  c.rope_style = p.rope;
  return c;
}

// The model's parameters, spread wider than random_model's N(0, 0.02) so every path carries a
// gradient well above float rounding, and norm weights away from 1.
ParamSet spread_params(const ModelConfig& c, std::mt19937& rng) {
  ParamSet p = model_params(*random_model(c, 3));
  for (float& v : p.values()) v *= 8.0f;
  std::uniform_real_distribution<float> u(0.6f, 1.4f);
  for (const char* norm : {"layers.rms_att", "layers.rms_ffn", "rms_final"})
    for (float& v : p[norm]) v = u(rng);
  return p;
}

class FullGradTest : public ::testing::TestWithParam<FullCase> {};

TEST_P(FullGradTest, EveryTensorMatchesCentralFiniteDifferences) {
  const FullCase p = GetParam();
  const ModelConfig c = small_config(p);
  std::mt19937 rng(77);
  ParamSet params = spread_params(c, rng);
  auto w = model_view(c, params);
  const PackedBatch b = test::make_batch(c.vocab_size, rng);
  TrainGraph g(TrainGraph::Full{}, *w, b.rows(), 32, p.recompute);
  ParamSet grads = params.zeros_like();
  const LossResult r = g.run(b, Adapter{}, &grads, 1.0f / static_cast<float>(b.supervised));
  ASSERT_EQ(r.tokens, b.supervised);
  auto mean_loss = [&] {
    const LossResult l = g.run(b, Adapter{}, nullptr, 0.0f);
    return l.loss_sum / static_cast<double>(l.tokens);
  };
  const float eps = 1e-2f;
  for (const ParamTensor& t : params.table().tensors()) {
    std::span<float> v = params.slice(t);
    std::span<const float> gr = grads.slice(t);
    std::vector<size_t> idx;
    if (t.name == "tok_embeddings") {
      // Entries of the rows the batch's tokens read (the others get exactly zero, checked below)
      for (int k = 0; k < 12; ++k) {
        const int tok = b.inputs[static_cast<size_t>(k * 3) % b.inputs.size()];
        idx.push_back(static_cast<size_t>(tok) * static_cast<size_t>(c.dim) + static_cast<size_t>(k % c.dim));
      }
    } else {
      std::uniform_int_distribution<size_t> pick(0, t.size - 1);
      for (int k = 0; k < 12; ++k) idx.push_back(pick(rng));
    }
    double mag = 0;
    for (size_t i : idx) {
      const double fd = test::central_difference(v, i, eps, mean_loss);
      EXPECT_NEAR(gr[i], fd, 2e-4 + 3e-2 * std::fabs(fd)) << t.name << "[" << i << "]";
      mag += std::fabs(fd);
    }
    EXPECT_GT(mag, 1e-3) << t.name << ": gradients all ~0, the check would be vacuous";
    std::printf("  %-16s sum |fd| over %zu entries %.4f\n", t.name.c_str(), idx.size(), mag);
  }
  // Embedding rows no input token reads get no gradient (untied), or only the classifier's (tied).
  if (!p.tied) {
    std::vector<bool> used(static_cast<size_t>(c.vocab_size), false);
    for (int tok : b.inputs) used[static_cast<size_t>(tok)] = true;
    std::span<const float> ge = grads["tok_embeddings"];
    for (int64_t tok = 0; tok < c.vocab_size; ++tok) {
      if (used[static_cast<size_t>(tok)]) continue;
      for (int64_t j = 0; j < c.dim; ++j) ASSERT_EQ(ge[static_cast<size_t>(tok * c.dim + j)], 0.0f) << tok;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, FullGradTest,
                         ::testing::Values(FullCase{"TiedGrouped", 4, 2, true, false, RopeStyle::Interleaved},
                                           FullCase{"UntiedPlain", 4, 4, false, false, RopeStyle::Interleaved},
                                           FullCase{"TiedGroupedRecompute", 4, 2, true, true, RopeStyle::Interleaved},
                                           FullCase{"UntiedPlainRecompute", 4, 4, false, true, RopeStyle::Half},
                                           FullCase{"UntiedGroupedHalf", 8, 2, false, false, RopeStyle::Half}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(FullGrad, RecomputeGivesTheSameGradients) {
  const ModelConfig c = small_config({"", 4, 2, false, false, RopeStyle::Interleaved});
  std::mt19937 rng(5);
  ParamSet params = spread_params(c, rng);
  auto w = model_view(c, params);
  const PackedBatch b = test::make_batch(c.vocab_size, rng);
  TrainGraph stored(TrainGraph::Full{}, *w, b.rows(), 32, false), recompute(TrainGraph::Full{}, *w, b.rows(), 32, true);
  ParamSet g1 = params.zeros_like(), g2 = params.zeros_like();
  const LossResult r1 = stored.run(b, Adapter{}, &g1, 0.1f), r2 = recompute.run(b, Adapter{}, &g2, 0.1f);
  EXPECT_EQ(r1.loss_sum, r2.loss_sum);
  EXPECT_EQ(g1.values(), g2.values());
  EXPECT_LT(recompute.arena_bytes(), stored.arena_bytes());
}

TEST(FullGrad, ForwardIsTheFrozenModelsBitForBit) {
  const ModelConfig c = small_config({"", 4, 2, true, false, RopeStyle::Interleaved});
  auto frozen = random_model(c, 3);
  ParamSet params = model_params(*frozen);
  auto view = model_view(c, params);
  std::mt19937 rng(9);
  const PackedBatch b = test::make_batch(c.vocab_size, rng);
  TrainGraph base(*frozen, Adapter{}, b.rows(), 32, false), full(TrainGraph::Full{}, *view, b.rows(), 32, false);
  const LossResult a = base.evaluate(b, nullptr);
  ParamSet grads = params.zeros_like();
  const LossResult f = full.run(b, Adapter{}, &grads, 1.0f);
  EXPECT_EQ(std::memcmp(&a.loss_sum, &f.loss_sum, sizeof(double)), 0) << a.loss_sum << " vs " << f.loss_sum;
}

TEST(FullGrad, RefusesQuantisedWeightsAndAnAdapter) {
  const ModelConfig c = small_config({"", 4, 2, true, false, RopeStyle::Interleaved});
  auto q8 = random_model(c, 3, DType::Q8_0);
  EXPECT_THROW(TrainGraph(TrainGraph::Full{}, *q8, 16, 16, false), Error);
  ParamSet params = model_params(*q8);
  auto view = model_view(c, params);
  TrainGraph g(TrainGraph::Full{}, *view, 16, 16, false);
  ParamSet grads = params.zeros_like();
  std::mt19937 rng(1);
  const PackedBatch b = test::make_batch(c.vocab_size, rng);
  Adapter a = Adapter::create(c, 2, 1, GateMode::Tanh, 1);
  EXPECT_THROW(g.run(b, a, &grads, 1.0f), Error);
  ParamSet wrong = a.params.zeros_like();
  EXPECT_THROW(g.run(b, Adapter{}, &wrong, 1.0f), Error);
}

}  // namespace
}  // namespace la
