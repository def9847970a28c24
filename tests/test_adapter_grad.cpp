// The adapter's analytic gradients against central finite differences of the loss, on the real
// stories260K (grouped-query heads) and aidreams260K (plain multi-head) models, in both gate
// modes; and the zero-init property.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "la/io/loader.h"
#include "la/model/train_graph.h"
#include "support/grad_check.h"
#include "support/test_support.h"

namespace la {
namespace {

using test::make_batch;

struct GradCase {
  const char* model;
  GateMode mode;
  int64_t layers;
  bool recompute;
};

class AdapterGradTest : public ::testing::TestWithParam<GradCase> {};

TEST_P(AdapterGradTest, MatchesCentralFiniteDifferences) {
  const GradCase p = GetParam();
  REQUIRE_SHARED_DATA(std::string("llama2c/") + p.model);
  auto w = load_model(test::shared_data() + "/llama2c/" + p.model);
  std::mt19937 rng(1234);
  Adapter a = Adapter::create(w->config, 3, p.layers, p.mode, 7);
  std::normal_distribution<float> nd(0.0f, 0.6f);
  for (float& g : a.gate()) g = nd(rng);
  for (float& q : a.query()) q *= 0.5f;
  PackedBatch b = make_batch(w->config.vocab_size, rng);
  TrainGraph g(*w, a, b.rows(), 32, p.recompute);

  test::expect_adapter_grads_match_fd(g, b, a, rng);
}

INSTANTIATE_TEST_SUITE_P(Models, AdapterGradTest,
                         ::testing::Values(GradCase{"stories260K.bin", GateMode::Tanh, 5, false},
                                           GradCase{"stories260K.bin", GateMode::Identity, 3, false},
                                           GradCase{"stories260K.bin", GateMode::Tanh, 2, true},
                                           GradCase{"aidreams260K.bin", GateMode::Tanh, 4, false},
                                           GradCase{"aidreams260K.bin", GateMode::Identity, 2, true}));

TEST(AdapterGrad, RecomputeGivesTheSameGradients) {
  REQUIRE_SHARED_DATA("llama2c/stories260K.bin");
  auto w = load_model(test::shared_data() + "/llama2c/stories260K.bin");
  std::mt19937 rng(5);
  Adapter a = Adapter::create(w->config, 4, 3, GateMode::Tanh, 3);
  for (float& g : a.gate()) g = 0.3f;
  PackedBatch b = make_batch(w->config.vocab_size, rng);
  ParamSet g1 = a.params.zeros_like(), g2 = g1;
  TrainGraph stored(*w, a, b.rows(), 32, false), recompute(*w, a, b.rows(), 32, true);
  LossResult r1 = stored.run(b, a, &g1, 0.1f), r2 = recompute.run(b, a, &g2, 0.1f);
  EXPECT_EQ(r1.loss_sum, r2.loss_sum);
  EXPECT_EQ(g1.values(), g2.values());
  EXPECT_LT(recompute.arena_bytes(), stored.arena_bytes());
}

TEST(AdapterGrad, ZeroGatesReproduceTheBaseModelBitForBit) {
  REQUIRE_SHARED_DATA("llama2c/stories260K.bin");
  auto w = load_model(test::shared_data() + "/llama2c/stories260K.bin");
  std::mt19937 rng(9);
  Adapter a = Adapter::create(w->config, 10, 5, GateMode::Tanh, 11);  // gates are 0
  PackedBatch b = make_batch(w->config.vocab_size, rng);
  TrainGraph g(*w, a, b.rows(), 32, false);
  LossResult base = g.evaluate(b, nullptr);
  LossResult with = g.evaluate(b, &a);
  EXPECT_EQ(std::memcmp(&base.loss_sum, &with.loss_sum, sizeof(double)), 0) << base.loss_sum << " vs " << with.loss_sum;
  // ...and the first step still gives the gates a gradient.
  ParamSet grads = a.params.zeros_like();
  LossResult r = g.run(b, a, &grads, 1.0f / static_cast<float>(b.supervised));
  EXPECT_EQ(std::memcmp(&base.loss_sum, &r.loss_sum, sizeof(double)), 0);
  double gate_norm = 0;
  for (float x : grads["gate"]) gate_norm += std::fabs(x);
  EXPECT_GT(gate_norm, 0.0);
  // With gamma = 0 the prompt values get no gradient through the gate product, but the gate does.
  for (float x : grads["gate"]) EXPECT_TRUE(std::isfinite(x));
}

}  // namespace
}  // namespace la
