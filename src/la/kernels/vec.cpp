#include "la/kernels/vec.h"

namespace la {

// fp-contract=off: with contraction GCC fused a*x+y into an FMA in some code paths of a loop and
// not in others (e.g. axpy's 8-wide remainder used mul+add, its scalar alias-check fallback FMA),
// so the same inputs rounded differently depending on where the buffers sat in memory. Without
// it every path, and every clone, rounds the product and the sum separately: identical bits
// wherever the data lives and on every CPU.
#define LA_MULTIVERSION \
  __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default"), optimize("fp-contract=off")))

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
