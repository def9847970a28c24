// Shape of a LLaMA-family model, whatever file it came from.
#pragma once
#include <cstdint>
#include <string>

#include "la/kernels/ops.h"

namespace la {

struct ModelConfig {
  int64_t dim = 0;         // model width
  int64_t hidden_dim = 0;  // FFN width
  int64_t n_layers = 0;
  int64_t n_heads = 0;     // query heads
  int64_t n_kv_heads = 0;  // key/value heads (grouped-query attention when < n_heads)
  int64_t vocab_size = 0;
  int64_t max_seq_len = 0;  // context length the model was trained for
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeStyle rope_style = RopeStyle::Interleaved;
  bool tied_classifier = true;  // output projection shares the embedding matrix

  int64_t head_dim() const { return dim / n_heads; }
  int64_t kv_dim() const { return n_kv_heads * head_dim(); }
  int64_t parameter_count() const;
  // "dim=64 hidden=172 layers=5 heads=8 kv_heads=4 vocab=512"
  std::string shape_string() const;
  // Throws la::Error naming `source` when the numbers cannot describe a LLaMA model.
  void validate(const std::string& source) const;
};

}  // namespace la
