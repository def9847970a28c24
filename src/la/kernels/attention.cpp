#include "la/kernels/attention.h"

#include <cmath>
#include <vector>

#include "la/core/runtime.h"
#include "la/kernels/attention_blocked.h"

namespace la {

// The per-ISA builds of src/la/kernels/isa/attention_impl.inc.
#define LA_DECLARE_ATTENTION(isa)                                                                                    \
  namespace isa {                                                                                                    \
  void attention_forward(float*, float*, float*, const float*, const float*, const float*, int64_t, int64_t,         \
                         const AttentionDims&, const PromptKV*);                                                     \
  void attention_backward(float*, float*, float*, float*, float*, float*, const float*, const float*, const float*,  \
                          const float*, const float*, const float*, int64_t, const AttentionDims&, const PromptKV*); \
  }
LA_DECLARE_ATTENTION(generic)
LA_DECLARE_ATTENTION(avx2)
LA_DECLARE_ATTENTION(avx512)

namespace {

struct AttentionKernels {
  const char* name;
  decltype(&generic::attention_forward) forward;
  decltype(&generic::attention_backward) backward;
};

const AttentionKernels kGeneric{"generic", generic::attention_forward, generic::attention_backward};
const AttentionKernels kAvx2{"avx2", avx2::attention_forward, avx2::attention_backward};
const AttentionKernels kAvx512{"avx512", avx512::attention_forward, avx512::attention_backward};

// The instruction set in force (core/runtime.h); avx512vnni is AVX-512 with VNNI allowed, so the
// avx512 build.
const AttentionKernels& kernels() {
  return *isa_pick(&kGeneric, &kAvx2, &kAvx512);
}

}  // namespace

const char* attention_kernels_name() {
  return kernels().name;
}

float* attention_scratch(int slot, int64_t n) {
  thread_local std::vector<float> buffers[3];
  std::vector<float>& b = buffers[slot];
  if (b.size() < static_cast<size_t>(n)) b.resize(static_cast<size_t>(n));
  return b.data();
}

// Many query rows: the token branch, then the prompt branch, as blocked matrix products (same
// order of additions as the per-ISA kernels: tokens first, then gamma · prompt, nothing at all
// where gamma is 0).
void attention_forward(float* out, float* lse_tok, float* lse_prompt, const float* q, const float* k, const float* v,
                       int64_t T, int64_t pos0, const AttentionDims& d, const PromptKV* prompt) {
  if (!attention_blocked_applies(T)) return kernels().forward(out, lse_tok, lse_prompt, q, k, v, T, pos0, d, prompt);
  attention_tokens_forward_blocked(out, lse_tok, q, k, v, T, pos0, d);
  if (prompt && prompt->len > 0) attention_prompt_forward_blocked(out, lse_prompt, q, T, d, *prompt);
}

void attention_backward(float* dq, float* dk, float* dv, float* dprompt_k, float* dprompt_v, float* dgamma,
                        const float* dout, const float* q, const float* k, const float* v, const float* lse_tok,
                        const float* lse_prompt, int64_t T, const AttentionDims& d, const PromptKV* prompt) {
  if (!attention_blocked_applies(T))
    return kernels().backward(dq, dk, dv, dprompt_k, dprompt_v, dgamma, dout, q, k, v, lse_tok, lse_prompt, T, d,
                              prompt);
  if (dq) attention_tokens_backward_blocked(dq, dk, dv, dout, q, k, v, lse_tok, T, d);
  if (prompt && prompt->len > 0)
    attention_prompt_backward_blocked(dq, dprompt_k, dprompt_v, dgamma, dout, q, lse_prompt, T, d, *prompt);
}

void attention_forward_ref(float* out, const float* q, const float* k, const float* v, int64_t T, int64_t pos0,
                           const AttentionDims& d, const PromptKV* prompt) {
  const int64_t H = d.n_heads, hd = d.head_dim, qdim = d.q_dim(), kvdim = d.kv_dim();
  const int64_t group = H / d.n_kv_heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  auto branch = [&](const float* qt, const float* keys, const float* vals, int64_t n, int64_t g, double* res) {
    std::vector<double> s(static_cast<size_t>(n));
    double m = -INFINITY;
    for (int64_t j = 0; j < n; ++j) {
      double a = 0;
      for (int64_t i = 0; i < hd; ++i) a += static_cast<double>(qt[i]) * keys[j * kvdim + g * hd + i];
      s[j] = a * scale;
      m = std::max(m, s[j]);
    }
    double z = 0;
    for (auto& x : s) z += (x = std::exp(x - m));
    for (int64_t i = 0; i < hd; ++i) {
      double a = 0;
      for (int64_t j = 0; j < n; ++j) a += s[j] / z * vals[j * kvdim + g * hd + i];
      res[i] = a;
    }
  };
  std::vector<double> a(static_cast<size_t>(hd)), b(static_cast<size_t>(hd));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / group;
      const float* qt = q + t * qdim + h * hd;
      branch(qt, k, v, pos0 + t + 1, g, a.data());
      if (prompt && prompt->len > 0) {
        branch(qt, prompt->keys, prompt->values, prompt->len, g, b.data());
        for (int64_t i = 0; i < hd; ++i) a[i] += prompt->gamma[h] * b[i];
      }
      for (int64_t i = 0; i < hd; ++i) out[t * qdim + h * hd + i] = static_cast<float>(a[i]);
    }
}

}  // namespace la
