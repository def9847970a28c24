// Adapter gradients with frozen weights stored as BF16 and Q8_0: the backward runs through the
// typed matmul_nn path, so check it (a) against the same computation on the f32 copy of the very
// same weights (dequantized_copy: identical values, only the kernels differ) and (b) against
// central finite differences of the loss on the converted model itself (the approach of
// test_adapter_grad.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include "la/io/convert.h"
#include "la/io/loader.h"
#include "la/io/shapes.h"
#include "la/kernels/quant.h"
#include "la/model/train_graph.h"
#include "support/grad_check.h"
#include "support/test_support.h"

namespace la {
namespace {

using test::make_batch;

// The stories260K shape with hidden 192 (172 is not a multiple of Q8_0's 32-value blocks).
// random_model draws N(0, 0.02) weights; with those the adapter gradients come out ~10x smaller
// (sum of |fd| over the gates ~0.06 instead of ~0.5), close to the finite-difference tolerance's
// 3e-4 floor per entry. Scaling the matrices x6 (std 0.12) makes attention and the FFN do real
// work and the check discriminating. Norm vectors (length dim) stay 1.
std::unique_ptr<ModelWeights> lively_random_model() {
  ModelConfig c;
  c.dim = 64;
  c.hidden_dim = 192;
  c.n_layers = 5;
  c.n_heads = 8;
  c.n_kv_heads = 4;
  c.vocab_size = 512;
  c.max_seq_len = 128;
  c.tied_classifier = true;
  auto m = random_model(c, 2024);
  for (auto& v : m->owned)
    if (static_cast<int64_t>(v.size()) > c.dim)
      for (float& x : v) x *= 6.0f;
  return m;
}

struct Case {
  const char* model;  // "random" or a llama2c file under shared data
  DType type;
  GateMode mode;
  int64_t layers;
  bool recompute;
};

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  std::string m = info.param.model;
  m = m.substr(0, m.find('.'));
  return m + "_" + dtype_name(info.param.type) + "_" + gate_mode_name(info.param.mode) + "_L" +
         std::to_string(info.param.layers) + (info.param.recompute ? "_recompute" : "");
}

class QuantGradTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    const Case p = GetParam();
    if (std::string(p.model) == "random") {
      base_ = lively_random_model();
    } else {
      const std::string rel = std::string("llama2c/") + p.model;
      if (!test::shared_file_exists(rel)) GTEST_SKIP() << "shared data not present: " << rel;
      base_ = load_model(test::shared_data() + "/" + rel);
    }
    w_ = convert_weights(*base_, p.type);
    ref_ = dequantized_copy(*w_);
    ASSERT_EQ(w_->layers[0].w2.type, p.type);
    ASSERT_EQ(ref_->layers[0].w2.type, DType::F32);
  }
  std::unique_ptr<ModelWeights> base_, w_, ref_;
};

Adapter make_adapter(const ModelConfig& c, const Case& p, std::mt19937& rng) {
  Adapter a = Adapter::create(c, 3, p.layers, p.mode, 7);
  std::normal_distribution<float> nd(0.0f, 0.6f);
  for (float& g : a.gate()) g = nd(rng);
  for (float& q : a.query()) q *= 0.5f;
  return a;
}

TEST_P(QuantGradTest, SameAsOnTheDequantisedCopy) {
  const Case p = GetParam();
  std::mt19937 rng(1234);
  Adapter a = make_adapter(w_->config, p, rng);
  PackedBatch b = make_batch(w_->config.vocab_size, rng);
  TrainGraph gq(*w_, a, b.rows(), 32, p.recompute), gf(*ref_, a, b.rows(), 32, p.recompute);
  ParamSet dq = a.params.zeros_like(), df = dq;
  const float scale = 1.0f / static_cast<float>(b.supervised);
  LossResult rq = gq.run(b, a, &dq, scale), rf = gf.run(b, a, &df, scale);
  ASSERT_EQ(rq.tokens, rf.tokens);
  EXPECT_NEAR(rq.loss_sum, rf.loss_sum, 1e-5 * std::fabs(rf.loss_sum));
  // Element-wise against the largest gradient of its kind: the two runs differ only in
  // summation order (typed row blocks vs one BLAS call), i.e. ~1e-7 relative.
  auto compare = [](std::span<const float> x, std::span<const float> y, const char* what) {
    double gmax = 0, worst = 0;
    for (float v : y) gmax = std::max(gmax, static_cast<double>(std::fabs(v)));
    ASSERT_GT(gmax, 1e-6) << what << " gradients are ~0: the comparison would be vacuous";
    for (size_t i = 0; i < x.size(); ++i) {
      const double d = std::fabs(static_cast<double>(x[i]) - y[i]);
      worst = std::max(worst, d / gmax);
      ASSERT_LE(d, 1e-5 * gmax + 1e-5 * std::fabs(y[i])) << what << " index " << i << ": " << x[i] << " vs " << y[i];
    }
    std::printf("  %s: max |diff| / max |grad| = %.2e\n", what, worst);
  };
  compare(dq["gate"], df["gate"], "gate");
  compare(dq["adapter_query"], df["adapter_query"], "query");
}

TEST_P(QuantGradTest, MatchesCentralFiniteDifferences) {
  const Case p = GetParam();
  std::mt19937 rng(1234);
  Adapter a = make_adapter(w_->config, p, rng);
  PackedBatch b = make_batch(w_->config.vocab_size, rng);
  TrainGraph g(*w_, a, b.rows(), 32, p.recompute);

  test::expect_adapter_grads_match_fd(g, b, a, rng);
}

INSTANTIATE_TEST_SUITE_P(Types, QuantGradTest,
                         ::testing::Values(Case{"random", DType::Q8_0, GateMode::Tanh, 5, false},
                                           Case{"random", DType::Q8_0, GateMode::Identity, 3, true},
                                           Case{"random", DType::BF16, GateMode::Tanh, 4, false},
                                           Case{"stories260K.bin", DType::BF16, GateMode::Tanh, 5, false},
                                           Case{"stories260K.bin", DType::BF16, GateMode::Identity, 2, true}),
                         case_name);

}  // namespace
}  // namespace la
