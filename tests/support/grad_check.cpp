#include "support/grad_check.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

namespace la::test {

PackedBatch make_batch(int64_t vocab, std::mt19937& rng) {
  PackedBatch b;
  b.clear();
  std::uniform_int_distribution<int> tok(3, static_cast<int>(vocab) - 1);
  for (auto [len, prompt] : {std::pair{9, 4}, std::pair{14, 6}, std::pair{5, 1}}) {
    std::vector<int> t(static_cast<size_t>(len));
    t[0] = 1;
    for (int i = 1; i < len; ++i) t[static_cast<size_t>(i)] = tok(rng);
    b.add(t, prompt);
  }
  return b;
}

double central_difference(std::span<float> p, size_t i, float eps, const std::function<double()>& loss) {
  const float orig = p[i];
  p[i] = orig + eps;
  const double plus = loss();
  p[i] = orig - eps;
  const double minus = loss();
  p[i] = orig;
  return (plus - minus) / (2.0 * eps);
}

void expect_adapter_grads_match_fd(TrainGraph& g, const PackedBatch& b, Adapter& a, std::mt19937& rng) {
  ParamSet grads = a.params.zeros_like();
  const LossResult r = g.run(b, a, &grads, 1.0f / static_cast<float>(b.supervised));
  ASSERT_EQ(r.tokens, b.supervised);
  auto mean_loss = [&] {
    const LossResult l = g.run(b, a, nullptr, 0.0f);
    return l.loss_sum / static_cast<double>(l.tokens);
  };
  const float eps = 2e-2f;
  auto check = [&](std::span<float> param, std::span<const float> grad, size_t i) {
    const double fd = central_difference(param, i, eps, mean_loss);
    EXPECT_NEAR(grad[i], fd, 3e-4 + 3e-2 * std::fabs(fd)) << "index " << i;
    return std::fabs(fd);
  };
  double gate_mag = 0;
  for (size_t i = 0; i < a.gate().size(); ++i) gate_mag += check(a.gate(), grads["gate"], i);
  EXPECT_GT(gate_mag, 1e-3) << "gate gradients are all ~0: the check would be vacuous";
  std::uniform_int_distribution<size_t> pick(0, a.query().size() - 1);
  double q_mag = 0;
  for (int n = 0; n < 40; ++n) q_mag += check(a.query(), grads["adapter_query"], pick(rng));
  EXPECT_GT(q_mag, 1e-3) << "query gradients are all ~0: the check would be vacuous";
  std::printf("  sum |fd|: gates %.4f, 40 query entries %.4f\n", gate_mag, q_mag);
  // Every other trainable row (a multi-modal adapter's visual projection): 20 random entries each.
  for (const ParamTensor& t : a.params.table().tensors()) {
    if (t.name == "gate" || t.name == "adapter_query") continue;
    std::uniform_int_distribution<size_t> any(0, t.size - 1);
    double mag = 0;
    for (int n = 0; n < 20; ++n) mag += check(a.params.slice(t), grads.slice(t), any(rng));
    EXPECT_GT(mag, 1e-4) << t.name << " gradients are all ~0: the check would be vacuous";
    std::printf("  sum |fd|: 20 %s entries %.4f\n", t.name.c_str(), mag);
  }
  double lowest = 0;
  for (int64_t j = 0; j < a.len * a.dim; ++j) lowest += std::fabs(grads["adapter_query"][static_cast<size_t>(j)]);
  EXPECT_GT(lowest, 0.0) << "the lowest adapted layer's prompt got no gradient";
}

}  // namespace la::test
