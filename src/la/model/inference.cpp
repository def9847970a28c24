#include "la/model/inference.h"

#include <cstring>

#include "la/core/error.h"
#include "la/kernels/matmul.h"

namespace la {

InferenceModel::InferenceModel(const ModelWeights& w, int64_t context, int64_t chunk)
    : w_(w), c_(w.config), context_(context), chunk_(chunk) {
  if (context_ <= 0) context_ = c_.max_seq_len;
  if (chunk_ <= 0) chunk_ = 1;
  dims_ = {c_.n_heads, c_.n_kv_heads, c_.head_dim(), c_.rope_style == RopeStyle::Half};
  rope_ = RopeTable(context_, c_.head_dim(), c_.rope_theta);
  const auto L = static_cast<size_t>(c_.n_layers), T = static_cast<size_t>(context_),
             n = static_cast<size_t>(chunk_);
  k_cache_.resize(L * T * static_cast<size_t>(c_.kv_dim()));
  v_cache_.resize(k_cache_.size());
  x_.resize(n * static_cast<size_t>(c_.dim));
  xb_.resize(x_.size());
  q_.resize(x_.size());
  att_.resize(x_.size());
  hb_.resize(n * static_cast<size_t>(c_.hidden_dim));
  hb2_.resize(hb_.size());
  logits_.resize(static_cast<size_t>(c_.vocab_size));
  positions_.resize(n);
}

size_t InferenceModel::state_bytes() const {
  size_t b = (k_cache_.size() + v_cache_.size() + x_.size() * 4 + hb_.size() * 2 + logits_.size()) * sizeof(float);
  for (const auto& v : prompt_k_) b += v.size() * 2 * sizeof(float);
  return b;
}

void InferenceModel::set_adapter(const Adapter* a) {
  adapter_ = a;
  prompt_k_.clear();
  prompt_v_.clear();
  gamma_.clear();
  if (!a) return;
  a->check_compatible(c_, "adapter");
  for (int64_t l = a->first_layer(); l < c_.n_layers; ++l) {
    const LayerWeights& lw = w_.layers[static_cast<size_t>(l)];
    // Kp = P Wk^T, Vp = P Wv^T: no norm, no RoPE.
    std::vector<float> kp(static_cast<size_t>(a->len * c_.kv_dim())), vp(kp.size());
    matmul_nt(kp.data(), a->prompt(l), lw.wk, a->len);
    matmul_nt(vp.data(), a->prompt(l), lw.wv, a->len);
    std::vector<float> g(static_cast<size_t>(c_.n_heads));
    for (int64_t h = 0; h < c_.n_heads; ++h) g[static_cast<size_t>(h)] = a->gamma(l, h);
    prompt_k_.push_back(std::move(kp));
    prompt_v_.push_back(std::move(vp));
    gamma_.push_back(std::move(g));
  }
}

const float* InferenceModel::forward(const int* tokens, int64_t n) {
  if (n <= 0) fail("forward: no tokens");
  if (pos_ + n > context_)
    fail("sequence of {} tokens exceeds the context length {}", pos_ + n, context_);
  for (int64_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= c_.vocab_size)
      fail("token id {} is out of range for vocabulary size {}", tokens[i], c_.vocab_size);
  for (int64_t off = 0; off < n; off += chunk_) forward_chunk(tokens + off, std::min(chunk_, n - off));
  return logits_.data();
}

void InferenceModel::forward_chunk(const int* tokens, int64_t n) {
  const int64_t D = c_.dim, KV = c_.kv_dim(), F = c_.hidden_dim, T = context_;
  float* x = x_.data();
  for (int64_t i = 0; i < n; ++i) {
    dequantize_row(w_.tok_embeddings, tokens[i], x + i * D);
    positions_[static_cast<size_t>(i)] = static_cast<int32_t>(pos_ + i);
  }
  for (int64_t l = 0; l < c_.n_layers; ++l) {
    const LayerWeights& lw = w_.layers[static_cast<size_t>(l)];
    float* kc = k_cache_.data() + (l * T) * KV;
    float* vc = v_cache_.data() + (l * T) * KV;
    rmsnorm_forward(xb_.data(), nullptr, x, lw.rms_att, n, D, c_.norm_eps);
    matmul_nt(q_.data(), xb_.data(), lw.wq, n);
    matmul_nt(kc + pos_ * KV, xb_.data(), lw.wk, n);
    matmul_nt(vc + pos_ * KV, xb_.data(), lw.wv, n);
    rope_apply(q_.data(), n, c_.n_heads, positions_.data(), rope_, c_.rope_style, false);
    rope_apply(kc + pos_ * KV, n, c_.n_kv_heads, positions_.data(), rope_, c_.rope_style, false);
    PromptKV prompt;
    const bool adapted = adapter_ && adapter_->adapts(l);
    if (adapted) {
      const auto i = static_cast<size_t>(l - adapter_->first_layer());
      prompt = {prompt_k_[i].data(), prompt_v_[i].data(), gamma_[i].data(), adapter_->len};
    }
    attention_forward(att_.data(), nullptr, nullptr, q_.data(), kc, vc, n, pos_, dims_, adapted ? &prompt : nullptr);
    matmul_nt(xb_.data(), att_.data(), lw.wo, n);
    for (int64_t i = 0; i < n * D; ++i) x[i] += xb_[static_cast<size_t>(i)];
    rmsnorm_forward(xb_.data(), nullptr, x, lw.rms_ffn, n, D, c_.norm_eps);
    matmul_nt(hb_.data(), xb_.data(), lw.w1, n);
    matmul_nt(hb2_.data(), xb_.data(), lw.w3, n);
    swiglu_forward(hb_.data(), hb_.data(), hb2_.data(), n * F);
    matmul_nt(xb_.data(), hb_.data(), lw.w2, n);
    for (int64_t i = 0; i < n * D; ++i) x[i] += xb_[static_cast<size_t>(i)];
  }
  pos_ += n;
  // Only the last row's logits are needed for generation.
  rmsnorm_forward(xb_.data(), nullptr, x + (n - 1) * D, w_.rms_final, 1, D, c_.norm_eps);
  matmul_nt(logits_.data(), xb_.data(), w_.output, 1);
}

}  // namespace la
