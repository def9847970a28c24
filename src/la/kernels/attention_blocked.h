// The causal token branch of attention (attention.h) for many query rows at once, as small
// matrix products per head (the blocked GEMM of gemm.h, or OpenBLAS): per kv head, per query head of its
// group, per block of up to 128 query rows,
//   S = Q K^T,  P = softmax(scale·S + causal mask),  O = P V                       (forward)
//   S, P again from the saved log-sum-exps,  dP = dO V^T,  dS = P∘(dP - rowsum(P∘dP))·scale,
//   dQ = dS K,  dK += dS^T Q,  dV += P^T dO                                         (backward)
// instead of one (query, key) pair at a time. The masked upper triangle of each block is
// computed and zeroed (at most one block of waste per row block). Q and K columns are copied
// into pair order (the interleaved RoPE layout) first, so the Hugging Face rotate-half layout
// gives bit-identical scores. The adapter's prompt branch goes the same way (its len keys are
// few, but one product per block of rows replaces len dot products per row and head). Used by
// attention.cpp when T is large; the products go to OpenBLAS where our GEMM is not built for the
// CPU (gemm_available(): the generic build).
#pragma once
#include <cstdint>

#include "la/kernels/attention.h"

namespace la {

// Whether the blocked token branch is used for T query rows.
bool attention_blocked_applies(int64_t T);

// Writes out[T, q_dim] (token branch only) and lse_tok[n_heads, T] (when non-null).
void attention_tokens_forward_blocked(float* out, float* lse_tok, const float* q, const float* k, const float* v,
                                      int64_t T, int64_t pos0, const AttentionDims& d);

// Writes dq[T, q_dim] (token branch only), dk, dv [T, kv_dim]; pos0 = 0; lse_tok from the forward.
void attention_tokens_backward_blocked(float* dq, float* dk, float* dv, const float* dout, const float* q,
                                       const float* k, const float* v, const float* lse_tok, int64_t T,
                                       const AttentionDims& d);

// Adds gamma_h · softmax(scale · Q Kp^T) Vp to out[T, q_dim] (nothing for heads with gamma 0) and
// writes lse_prompt[n_heads, T] (when non-null).
void attention_prompt_forward_blocked(float* out, float* lse_prompt, const float* q, int64_t T, const AttentionDims& d,
                                      const PromptKV& prompt);

// The prompt branch's backward: adds to dq[T, q_dim] (when non-null; the token branch's gradient
// is already there), overwrites dprompt_k/dprompt_v [len, kv_dim] and dgamma [n_heads].
void attention_prompt_backward_blocked(float* dq, float* dprompt_k, float* dprompt_v, float* dgamma, const float* dout,
                                       const float* q, const float* lse_prompt, int64_t T, const AttentionDims& d,
                                       const PromptKV& prompt);

}  // namespace la
