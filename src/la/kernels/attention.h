// Causal multi-head attention with grouped-query heads and the LLaMA-Adapter prompt branch:
//   out_h = softmax(q Kt^T/sqrt(d) + causal) Vt + gamma_h * softmax(q Kp^T/sqrt(d)) Vp
// Two separate softmaxes; the prompt columns have no mask and no RoPE. Query head h reads
// key/value head h / (H / H_kv). The full score matrix is never stored: the forward saves one
// log-sum-exp per (head, row) and the backward recomputes probabilities from it.
#pragma once
#include <cstdint>

namespace la {

struct AttentionDims {
  int64_t n_heads = 0, n_kv_heads = 0, head_dim = 0;
  // q/k rows in the rotate-half layout (RopeStyle::Half): scores are summed pair by pair so that
  // both layouts of the same model give identical results.
  bool rope_half = false;
  int64_t q_dim() const { return n_heads * head_dim; }
  int64_t kv_dim() const { return n_kv_heads * head_dim; }
};

// One layer's adaption prompt, already projected: keys/values [len, kv_dim], gamma [n_heads]
// (the gate after its activation: tanh(g) or g).
struct PromptKV {
  const float* keys = nullptr;
  const float* values = nullptr;
  const float* gamma = nullptr;
  int64_t len = 0;
};

// T query rows at positions pos0 .. pos0+T-1 over key/value rows [0, pos0+T) (a KV cache or one
// training sequence). q, out: [T, q_dim]; k, v: [pos0+T, kv_dim]. lse_tok / lse_prompt
// ([n_heads, T]) are written when non-null. `prompt` may be null (layer without adapter).
void attention_forward(float* out, float* lse_tok, float* lse_prompt, const float* q, const float* k, const float* v,
                       int64_t T, int64_t pos0, const AttentionDims& d, const PromptKV* prompt);

// Backward of attention_forward with pos0 = 0 (training). Overwrites dq [T, q_dim] (may be null:
// no query gradient needed at the lowest adapted layer), dk/dv [T, kv_dim] (may be null
// together with dq), and when `prompt` is set: dprompt_k/dprompt_v [len, kv_dim] and
// dgamma [n_heads] (gradient w.r.t. gamma, before the gate activation).
void attention_backward(float* dq, float* dk, float* dv, float* dprompt_k, float* dprompt_v, float* dgamma,
                        const float* dout, const float* q, const float* k, const float* v, const float* lse_tok,
                        const float* lse_prompt, int64_t T, const AttentionDims& d, const PromptKV* prompt);

// The fast kernels are built for several instruction sets; the one for the instruction set in
// force (core/runtime.h: the best by CPUID unless LA_ISA says otherwise; avx512vnni uses avx512)
// runs the rows the blocked path does not take. Its name: "generic", "avx2" or "avx512".
const char* attention_kernels_name();

// Plain reference: explicit score matrices, double accumulation. Same contract as above.
void attention_forward_ref(float* out, const float* q, const float* k, const float* v, int64_t T, int64_t pos0,
                           const AttentionDims& d, const PromptKV* prompt);

}  // namespace la
