// Inference over a frozen base model: the LLaMA block (model/block.h) driven over KV caches.
// One forward pass takes a batch of sequences, each with its own KV cache, positions and adapter
// prompts (or none), so one step can prefill some sequences and decode others with any mix of
// adapters while each weight matrix is read once. A single-sequence front (forward / set_adapter)
// serves `generate`, the demo and `bench`.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "la/kernels/ops.h"
#include "la/model/adapter.h"
#include "la/model/batch.h"
#include "la/model/block.h"
#include "la/model/weights.h"

namespace la {

// One sequence's part of a batched step: `n` tokens appended to `cache` at its position, read
// with `prompts` (null: the base model). Logits of its last row go to `logits` ([vocab]), or of
// every row when `every_row` ([n, vocab]); null: none.
struct SeqStep {
  KVCache* cache = nullptr;
  const AdapterPrompts* prompts = nullptr;
  const int* tokens = nullptr;
  int64_t n = 0;
  float* logits = nullptr;
  bool every_row = false;
};

class InferenceModel {
 public:
  // `context` is the single-sequence KV cache's length and the longest position any cache may
  // reach (<= 0: the model's max_seq_len); `max_rows` the most rows one batched step computes
  // (the single-sequence front splits longer prompts into steps of this size). All memory is
  // allocated here.
  InferenceModel(const ModelWeights& w, int64_t context, int64_t max_rows = 256);

  // A batched step over several sequences (their rows laid end to end in the given order). Each
  // cache advances by its n. Throws when a cache would overflow or the rows exceed max_rows.
  void step(std::vector<SeqStep>& seqs);

  // Single sequence: attaches an adapter (projecting its prompts once) or detaches (nullptr).
  // The adapter must outlive its use here.
  void set_adapter(const Adapter* adapter);
  // Single sequence, multi-modal adapter (SPEC §8): the image's multi-scale CLIP features
  // ([M*E]; projected at once: I_p and one row per adapted layer through Wk/Wv), or nullptr for
  // none. Set after set_adapter, which clears it.
  void set_image(const float* features);
  // Feeds tokens at positions pos() .. pos()+n-1 and returns the logits of the last one
  // ([vocab]; valid until the next call). Throws when the context would overflow.
  const float* forward(const int* tokens, int64_t n);
  void reset() { cache_.reset(); }
  int64_t pos() const { return cache_.pos(); }
  int64_t context() const { return context_; }
  int64_t max_rows() const { return max_rows_; }
  const ModelWeights& weights() const { return w_; }
  // Bytes of the single-sequence KV cache, prompts and scratch buffers.
  size_t state_bytes() const;

 private:
  const ModelWeights& w_;
  const ModelConfig& c_;
  int64_t context_, max_rows_;
  RopeTable rope_;
  BlockContext ctx_;
  std::vector<float> x_, xb_, q_, k_, v_, att_, hb_, hb2_, logits_;
  std::vector<float> head_;  // [kGemvMaxRows, vocab]: a group of decode rows' logits
  std::vector<int32_t> positions_;
  Batch batch_;
  // The single-sequence front's state.
  KVCache cache_;
  const Adapter* adapter_ = nullptr;
  std::unique_ptr<AdapterPrompts> prompts_;
  std::unique_ptr<AdapterPrompts> image_prompts_;  // prompts_ with the image row (set_image)
};

}  // namespace la
