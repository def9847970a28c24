#include "la/kernels/vec.h"

#include <cstring>

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

namespace {
constexpr int64_t kThreadedFrom = 1 << 16;  // elements; below this a thread team costs more than it saves
constexpr int64_t kChunk = 1 << 14;         // 64 KiB of floats per piece
}  // namespace

void add_to(float* y, const float* x, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kThreadedFrom)
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void copy(float* dst, const float* src, int64_t n) {
  const int64_t pieces = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (n >= kThreadedFrom)
  for (int64_t p = 0; p < pieces; ++p) {
    const int64_t lo = p * kChunk, len = n - lo < kChunk ? n - lo : kChunk;
    std::memcpy(dst + lo, src + lo, static_cast<size_t>(len) * sizeof(float));
  }
}

}  // namespace la
