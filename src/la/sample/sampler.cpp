#include "la/sample/sampler.h"

#include <algorithm>
#include <cmath>

namespace la {

int argmax(const float* x, int64_t n) {
  int best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = static_cast<int>(i);
  return best;
}

Sampler::Sampler(const SamplerOptions& o) : o_(o), state_(o.seed ? o.seed : 0x853c49e6748fea9bull) {}

float Sampler::next_uniform() {
  state_ ^= state_ >> 12;
  state_ ^= state_ << 25;
  state_ ^= state_ >> 27;
  return static_cast<float>((state_ * 0x2545F4914F6CDD1Dull) >> 40) / 16777216.0f;
}

int Sampler::sample(const float* logits, int64_t vocab) {
  if (o_.temperature <= 0.0f) return argmax(logits, vocab);
  // Softmax with temperature over all tokens.
  cand_.resize(static_cast<size_t>(vocab));
  float m = logits[0];
  for (int64_t i = 1; i < vocab; ++i) m = std::max(m, logits[i]);
  double z = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    const float p = std::exp((logits[i] - m) / o_.temperature);
    cand_[static_cast<size_t>(i)] = {p, static_cast<int>(i)};
    z += p;
  }
  // Sort by probability (descending, ties by id for determinism) when top-k / top-p cut.
  size_t keep = cand_.size();
  const bool cut = (o_.top_k > 0 && o_.top_k < vocab) || (o_.top_p > 0.0f && o_.top_p < 1.0f);
  if (cut) {
    auto by_prob = [](const auto& a, const auto& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    };
    if (o_.top_k > 0 && o_.top_k < vocab) {
      keep = static_cast<size_t>(o_.top_k);
      std::partial_sort(cand_.begin(), cand_.begin() + static_cast<long>(keep), cand_.end(), by_prob);
    } else {
      std::sort(cand_.begin(), cand_.end(), by_prob);
    }
    double mass = 0;
    for (size_t i = 0; i < keep; ++i) mass += cand_[i].first;
    if (o_.top_p > 0.0f && o_.top_p < 1.0f) {
      // Smallest prefix whose mass (renormalised over the kept set) reaches p.
      double acc = 0;
      for (size_t i = 0; i < keep; ++i) {
        acc += cand_[i].first;
        if (acc >= o_.top_p * mass) {
          keep = i + 1;
          break;
        }
      }
    }
    z = 0;
    for (size_t i = 0; i < keep; ++i) z += cand_[i].first;
  }
  const double r = static_cast<double>(next_uniform()) * z;
  double acc = 0;
  for (size_t i = 0; i < keep; ++i) {
    acc += cand_[i].first;
    if (r < acc) return cand_[i].second;
  }
  return cand_[keep - 1].second;
}

}  // namespace la
