// Picks the next token from logits: greedy (temperature 0), or temperature + top-k + top-p with
// its own seeded RNG, so the same seed gives the same text on every run.
#pragma once
#include <cstdint>
#include <vector>

namespace la {

struct SamplerOptions {
  float temperature = 0.1f;  // paper's generation settings (SPEC §4)
  float top_p = 0.75f;       // 1 disables
  int top_k = 0;             // 0 disables
  uint64_t seed = 42;
};

class Sampler {
 public:
  explicit Sampler(const SamplerOptions& o);
  int sample(const float* logits, int64_t vocab);
  // Uniform float in [0, 1) from the sampler's RNG (xorshift64*).
  float next_uniform();

 private:
  SamplerOptions o_;
  uint64_t state_;
  std::vector<std::pair<float, int>> cand_;
};

int argmax(const float* x, int64_t n);

}  // namespace la
