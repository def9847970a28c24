// The causal token branch of attention (attention.h) for many query rows at once, as small
// matrix products per head through the blocked GEMM (gemm.h): per kv head, per query head of its
// group, per block of up to 128 query rows,
//   S = Q K^T,  P = softmax(scale·S + causal mask),  O = P V                       (forward)
//   S, P again from the saved log-sum-exps,  dP = dO V^T,  dS = P∘(dP - rowsum(P∘dP))·scale,
//   dQ = dS K,  dK += dS^T Q,  dV += P^T dO                                         (backward)
// instead of one (query, key) pair at a time. The masked upper triangle of each block is
// computed and zeroed (at most one block of waste per row block). Q and K columns are copied
// into pair order (the interleaved RoPE layout) first, so the Hugging Face rotate-half layout
// gives bit-identical scores. Used by attention.cpp when gemm_available() and T is large; the
// adapter's prompt branch stays in the per-ISA kernels.
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

}  // namespace la
