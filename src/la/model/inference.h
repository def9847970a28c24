// Inference over a frozen base model (optionally with an adapter): a KV cache, batched prefill
// in chunks, one-token decode. Data flow per layer (SPEC §1, §2):
//   xb = RMSNorm_att(x); q,k,v = xb W^T; RoPE(q,k); att = Attention(q, cache, prompt); x += att Wo^T
//   xb = RMSNorm_ffn(x); x += W2 (silu(W1 xb) * W3 xb)
// then the final RMSNorm and the classifier.
#pragma once
#include <cstdint>
#include <vector>

#include "la/kernels/attention.h"
#include "la/kernels/ops.h"
#include "la/model/adapter.h"
#include "la/model/weights.h"

namespace la {

class InferenceModel {
 public:
  // `context` is the KV-cache length (at most the model's max_seq_len unless forced larger);
  // `chunk` the most tokens one prefill step computes at once. All memory is allocated here.
  InferenceModel(const ModelWeights& w, int64_t context, int64_t chunk = 256);

  // Attaches an adapter (or detaches with nullptr). The prompt keys/values of every adapted
  // layer are computed here, once: decoding then costs almost nothing more.
  void set_adapter(const Adapter* adapter);

  // Feeds tokens at positions pos() .. pos()+n-1 and returns the logits of the last one
  // ([vocab]; valid until the next call). Throws when the context would overflow.
  const float* forward(const int* tokens, int64_t n);
  void reset() { pos_ = 0; }
  int64_t pos() const { return pos_; }
  int64_t context() const { return context_; }
  const ModelWeights& weights() const { return w_; }
  // Bytes of the KV cache and scratch buffers.
  size_t state_bytes() const;

 private:
  void forward_chunk(const int* tokens, int64_t n);

  const ModelWeights& w_;
  const ModelConfig& c_;
  int64_t context_, chunk_;
  int64_t pos_ = 0;
  AttentionDims dims_;
  RopeTable rope_;
  std::vector<float> k_cache_, v_cache_;  // [layers, context, kv_dim]
  std::vector<float> x_, xb_, q_, att_, hb_, hb2_, logits_;
  std::vector<int32_t> positions_;
  // Adapter: projected prompt keys/values per adapted layer and the gates' gammas.
  const Adapter* adapter_ = nullptr;
  std::vector<std::vector<float>> prompt_k_, prompt_v_, gamma_;
};

}  // namespace la
