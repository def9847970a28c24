// Element-wise and row-wise loops of the model that are worth vectorising at the CPU's full width
// (the library itself is built for baseline x86-64): SwiGLU forward/backward over a span, and the
// cross-entropy of one row of logits. Built per instruction set from kernels/isa/rowwise_impl.inc
// (plain loops the compiler vectorises; fast_exp for the exponentials) and chosen by CPUID, like
// gemv and quant_dot; the callers do the threading.
#pragma once
#include <cstdint>
#include <vector>

namespace la {

struct RowwiseKernels {
  const char* name;  // "generic", "avx2", "avx512"
  // out = silu(a) * b over n values.
  void (*swiglu_forward)(float* out, const float* a, const float* b, int64_t n);
  // da = dout * b * silu'(a), db = dout * silu(a).
  void (*swiglu_backward)(float* da, float* db, const float* dout, const float* a, const float* b, int64_t n);
  // -log softmax(logits)[target] of one row of V logits (log-sum-exp summed in double). With
  // `grad`, the row is overwritten by scale * (softmax - onehot(target)).
  double (*cross_entropy)(float* logits, int64_t V, int64_t target, float scale, bool grad);
};

std::vector<const RowwiseKernels*> rowwise_variants();
const RowwiseKernels& rowwise_kernels();  // best by CPUID; LA_ISA forces one

}  // namespace la
