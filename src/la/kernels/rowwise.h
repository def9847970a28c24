// Element-wise and row-wise loops of the model that are worth vectorising at the CPU's full width
// (the library itself is built for baseline x86-64): SwiGLU forward/backward over a span, the
// cross-entropy of one row of logits, the score rows of blocked attention, and CLIP's LayerNorm and QuickGELU. Built
// per instruction set from kernels/isa/rowwise_impl.inc (plain loops the compiler vectorises; fast_exp for the
// exponentials) and chosen by CPUID, like gemv and quant_dot; the callers do the threading.
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
  // Attention score row s[0, n): s = softmax(scale * s) in place (scaled in place first, then
  // exp(s - max) over the sum); zeros in s[n, len) (the causal mask); returns the log-sum-exp of
  // the scaled scores.
  float (*softmax)(float* s, int64_t n, int64_t len, float scale);
  // Its backward from the forward's log-sum-exp, s holding the raw scores q·k again and ds the
  // gradient of the probabilities: s = p = exp(scale * s - lse), ds = p * (ds - sum(p * ds)) *
  // scale over [0, n); zeros in both over [n, len).
  void (*softmax_backward)(float* s, float* ds, int64_t n, int64_t len, float scale, float lse);
  // LayerNorm of one row (CLIP): out = (x - mean) * rsqrt(var + eps) * w + b, mean and the biased
  // variance over the n values (two passes, float sums).
  void (*layernorm)(float* out, const float* x, const float* w, const float* b, int64_t n, float eps);
  // QuickGELU in place over n values: x * sigmoid(1.702 x).
  void (*quick_gelu)(float* x, int64_t n);
};

std::vector<const RowwiseKernels*> rowwise_variants();
const RowwiseKernels& rowwise_kernels();  // the one for the instruction set in force (core/runtime.h)

}  // namespace la
