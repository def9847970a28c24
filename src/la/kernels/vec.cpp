#include "la/kernels/vec.h"

namespace la {

#define LA_MULTIVERSION __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default")))

// 16 independent partial sums let the compiler vectorise without -ffast-math re-association.
LA_MULTIVERSION float dot(const float* a, const float* b, int64_t n) {
  float acc[16] = {0};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += a[i + j] * b[i + j];
  float s = 0;
  for (; i < n; ++i) s += a[i] * b[i];
  for (int j = 0; j < 16; ++j) s += acc[j];
  return s;
}

LA_MULTIVERSION void axpy(float* y, float a, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

LA_MULTIVERSION void scale(float* y, float a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] *= a;
}

}  // namespace la
