// The sampler: greedy is argmax, a seed fixes the sequence, top-k / top-p cut the distribution
// where they should, and temperature sampling follows the softmax.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "la/sample/sampler.h"

namespace la {
namespace {

std::vector<float> logits_from_probs(const std::vector<double>& p) {
  std::vector<float> l;
  for (double x : p) l.push_back(static_cast<float>(std::log(x)));
  return l;
}

TEST(Sampler, TemperatureZeroIsArgmax) {
  const std::vector<float> l = {0.1f, 3.0f, -1.0f, 2.9f};
  Sampler s(SamplerOptions{0.0f, 0.75f, 0, 1});
  for (int i = 0; i < 10; ++i) EXPECT_EQ(s.sample(l.data(), 4), 1);
}

TEST(Sampler, SameSeedSameTokensOtherSeedOtherTokens) {
  std::vector<float> l(50);
  for (size_t i = 0; i < l.size(); ++i) l[i] = std::sin(static_cast<float>(i));
  auto run = [&](uint64_t seed) {
    Sampler s(SamplerOptions{1.0f, 1.0f, 0, seed});
    std::vector<int> out;
    for (int i = 0; i < 64; ++i) out.push_back(s.sample(l.data(), 50));
    return out;
  };
  EXPECT_EQ(run(7), run(7));
  EXPECT_NE(run(7), run(8));
}

TEST(Sampler, TopKOneIsGreedyAndTopKLimitsTheSupport) {
  const auto l = logits_from_probs({0.05, 0.4, 0.3, 0.2, 0.05});
  Sampler one(SamplerOptions{1.0f, 1.0f, 1, 3});
  for (int i = 0; i < 20; ++i) EXPECT_EQ(one.sample(l.data(), 5), 1);
  Sampler two(SamplerOptions{1.0f, 1.0f, 2, 3});
  std::map<int, int> seen;
  for (int i = 0; i < 2000; ++i) ++seen[two.sample(l.data(), 5)];
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_GT(seen[1], seen[2]);  // 0.4 : 0.3 renormalised
}

TEST(Sampler, TopPKeepsTheSmallestPrefixReachingP) {
  const auto l = logits_from_probs({0.05, 0.4, 0.3, 0.2, 0.05});
  // p = 0.6: 0.4 alone is not enough, 0.4 + 0.3 reaches it -> {1, 2}.
  Sampler s(SamplerOptions{1.0f, 0.6f, 0, 5});
  std::map<int, int> seen;
  for (int i = 0; i < 2000; ++i) ++seen[s.sample(l.data(), 5)];
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_TRUE(seen.count(1) && seen.count(2));
  // A tiny p keeps only the most likely token.
  Sampler tiny(SamplerOptions{1.0f, 0.01f, 0, 5});
  for (int i = 0; i < 20; ++i) EXPECT_EQ(tiny.sample(l.data(), 5), 1);
}

TEST(Sampler, FrequenciesFollowTheSoftmax) {
  const std::vector<double> p = {0.1, 0.2, 0.3, 0.4};
  const auto l = logits_from_probs(p);
  Sampler s(SamplerOptions{1.0f, 1.0f, 0, 11});
  std::vector<int> count(4);
  const int n = 40000;
  for (int i = 0; i < n; ++i) ++count[static_cast<size_t>(s.sample(l.data(), 4))];
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(count[i] / static_cast<double>(n), p[i], 0.015) << i;
  // A low temperature sharpens toward the argmax.
  Sampler cold(SamplerOptions{0.25f, 1.0f, 0, 11});
  int top = 0;
  for (int i = 0; i < 2000; ++i) top += cold.sample(l.data(), 4) == 3;
  EXPECT_GT(top, 1000);
}

}  // namespace
}  // namespace la
