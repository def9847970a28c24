#include "la/model/config.h"

#include <cmath>

#include "la/core/error.h"
#include "la/model/weights.h"

namespace la {

int64_t ModelConfig::parameter_count() const {
  return vocab_size * dim * (tied_classifier ? 1 : 2) + n_layers * layer_numel(*this) + dim;
}

std::string ModelConfig::shape_string() const {
  return fmt::format("dim={} hidden={} layers={} heads={} kv_heads={} vocab={}", dim, hidden_dim, n_layers, n_heads,
                     n_kv_heads, vocab_size);
}

void ModelConfig::validate(const std::string& source) const {
  auto bad = [&](const char* what) { fail("{}: invalid model config ({}): {}", source, what, shape_string()); };
  constexpr int64_t kMax = int64_t{1} << 24;
  if (dim <= 0 || dim > kMax) bad("dim");
  if (hidden_dim <= 0 || hidden_dim > kMax) bad("hidden_dim");
  if (n_layers <= 0 || n_layers > 4096) bad("n_layers");
  if (n_heads <= 0 || n_heads > dim || dim % n_heads != 0) bad("n_heads must divide dim");
  if (n_kv_heads <= 0 || n_kv_heads > n_heads || n_heads % n_kv_heads != 0) bad("n_kv_heads must divide n_heads");
  if (head_dim() % 2 != 0) bad("head_dim must be even for RoPE");
  if (vocab_size <= 0 || vocab_size > kMax) bad("vocab_size");
  if (max_seq_len <= 0 || max_seq_len > kMax) bad("max_seq_len");
  // RMSNorm's epsilon is a small positive number (1e-5, 1e-6); one of 1 or more (or NaN, or
  // infinite) would wash out every activation.
  if (!(norm_eps > 0.0f && norm_eps < 1.0f)) bad("rms_norm_eps must be above 0 and below 1");
  if (!(rope_theta > 0.0f) || !std::isfinite(rope_theta)) bad("rope_theta must be a positive finite number");
}

}  // namespace la
