// AdamW with PyTorch semantics and the paper's learning-rate schedule (SPEC §3).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace la {

struct AdamWOptions {
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.02f;
};

// One parameter tensor's moments. PyTorch's update, in its order:
//   p -= lr * wd * p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
struct AdamWState {
  std::vector<float> m, v;
  void resize(size_t n) {
    m.assign(n, 0.0f);
    v.assign(n, 0.0f);
  }
};

// step: 1-based count of updates including this one.
void adamw_update(float* param, const float* grad, AdamWState& st, int64_t n, float lr, int64_t step,
                  const AdamWOptions& o);

enum class Schedule { Cosine, Constant };

struct ScheduleOptions {
  Schedule kind = Schedule::Cosine;
  float lr = 0;  // peak learning rate
  float min_lr = 0;
  double warmup_epochs = 2;  // used when warmup_steps < 0
  int64_t warmup_steps = -1;
  double epochs = 5;
  int64_t steps_per_epoch = 1;
};

// Learning rate before optimizer step `step` (0-based), as the official code adjusts it per
// iteration from the fractional epoch e = step / steps_per_epoch:
//   e < warmup:  lr * e / warmup                    (linear warm-up from 0)
//   otherwise:   min_lr + (lr - min_lr) * 0.5 * (1 + cos(pi * (e - warmup) / (epochs - warmup)))
// --warmup-steps counts the warm-up in steps instead; --schedule constant keeps lr after it.
float learning_rate(const ScheduleOptions& s, int64_t step);

}  // namespace la
