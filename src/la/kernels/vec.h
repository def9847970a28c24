// Small vector primitives used inside kernels. Compiled for several instruction sets and
// chosen at load time by CPUID (GCC function multi-versioning), with a portable default.
#pragma once
#include <cstdint>

namespace la {

float dot(const float* a, const float* b, int64_t n);
void axpy(float* y, float a, const float* x, int64_t n);  // y += a * x
void scale(float* y, float a, int64_t n);                 // y *= a

// Whole activations (a residual add, a saved copy): memory-bound, so long ones are split between
// the threads; short ones stay on the caller's.
void add_to(float* y, const float* x, int64_t n);  // y += x
void copy(float* dst, const float* src, int64_t n);

}  // namespace la
