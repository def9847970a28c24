// One forward pass over a batch of sequences. Rows of different sequences sit end to end; each
// sequence has its own positions, its own keys/values (a KV cache at inference, its own rows of
// the batch in training) and its own adapter prompts (or none), so rows of one batch may attend
// to different adapters while every weight matrix is read once for all of them.
#pragma once
#include <cstdint>
#include <vector>

#include "la/model/config.h"

namespace la {

class AdapterPrompts;  // model/block.h

// One sequence's keys and values for every layer, [layers, context, kv_dim] each (inference).
class KVCache {
 public:
  KVCache(const ModelConfig& c, int64_t context);
  float* keys(int64_t layer) { return k_.data() + static_cast<size_t>(layer * context_ * kv_dim_); }
  float* values(int64_t layer) { return v_.data() + static_cast<size_t>(layer * context_ * kv_dim_); }
  int64_t context() const { return context_; }
  int64_t pos() const { return pos_; }  // tokens stored so far
  void set_pos(int64_t p) { pos_ = p; }
  void reset() { pos_ = 0; }
  size_t bytes() const { return (k_.size() + v_.size()) * sizeof(float); }

 private:
  int64_t context_, kv_dim_, pos_ = 0;
  std::vector<float> k_, v_;
};

struct BatchSeq {
  int64_t row0 = 0, rows = 0;               // its rows of the batch
  int64_t pos0 = 0;                         // position of its first row; keys/values 0..pos0-1 are in `cache`
  KVCache* cache = nullptr;                 // null: its keys/values are its own rows of the batch (pos0 = 0)
  const AdapterPrompts* prompts = nullptr;  // null: the base model alone
};

struct Batch {
  const int32_t* positions = nullptr;  // [rows]: each row's position within its sequence
  int64_t rows = 0;
  std::vector<BatchSeq> seqs;
  // How the rows go through the weight matrices: consecutive groups of these many rows, one
  // product each (empty: one product over all rows). A product's kernel depends on its row
  // count (gemv up to kGemvMaxRows rows, a GEMM above), and with it the summation order; a server
  // groups its decode rows (each row's value then does not depend on which rows share the pass)
  // apart from each prompt's rows, so a request's logits are the same bits whatever else shares
  // the step (SPEC §9: batch-invariant greedy output).
  std::vector<int64_t> product_rows;
};

}  // namespace la
