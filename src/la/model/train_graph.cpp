#include "la/model/train_graph.h"

#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "la/core/error.h"
#include "la/kernels/matmul.h"
#include "la/kernels/quant_dot.h"
#include "la/kernels/rowwise.h"
#include "la/kernels/vec.h"

namespace la {

void PackedBatch::clear() {
  inputs.clear();
  targets.clear();
  positions.clear();
  seq_offsets.assign(1, 0);
  supervised = 0;
}

void PackedBatch::add(const std::vector<int>& tokens, int64_t prompt_len) {
  if (seq_offsets.empty()) seq_offsets.push_back(0);
  const auto n = static_cast<int64_t>(tokens.size());
  if (n < 2) return;  // nothing to predict
  for (int64_t t = 0; t + 1 < n; ++t) {
    inputs.push_back(tokens[static_cast<size_t>(t)]);
    const bool sup = t + 1 >= prompt_len;
    targets.push_back(sup ? tokens[static_cast<size_t>(t + 1)] : -1);
    supervised += sup ? 1 : 0;
    positions.push_back(static_cast<int32_t>(t));
  }
  seq_offsets.push_back(rows());
}

int64_t PackedBatch::max_seq_len() const {
  int64_t m = 0;
  for (size_t s = 0; s + 1 < seq_offsets.size(); ++s) m = std::max(m, seq_offsets[s + 1] - seq_offsets[s]);
  return m;
}

void AdapterGrads::zero() {
  std::fill(query.begin(), query.end(), 0.0f);
  std::fill(gate.begin(), gate.end(), 0.0f);
}

double AdapterGrads::norm() const {
  double s = 0;
  for (float g : query) s += static_cast<double>(g) * g;
  for (float g : gate) s += static_cast<double>(g) * g;
  return std::sqrt(s);
}

TrainGraph::TrainGraph(const ModelWeights& w, const Adapter& adapter, int64_t max_rows, int64_t max_seq,
                       bool recompute)
    : w_(w),
      c_(w.config),
      max_rows_(max_rows),
      max_seq_(max_seq),
      first_adapted_(c_.n_layers - adapter.n_layers),
      n_adapted_(adapter.n_layers),
      plen_(adapter.len),
      recompute_(recompute) {
  if (max_rows_ <= 0 || max_seq_ <= 0) fail("training graph needs at least one row");
  if (max_seq_ > c_.max_seq_len)
    fail("sequence length {} exceeds the model's context length {}", max_seq_, c_.max_seq_len);
  dims_ = {c_.n_heads, c_.n_kv_heads, c_.head_dim(), c_.rope_style == RopeStyle::Half};
  rope_ = RopeTable(max_seq_, c_.head_dim(), c_.rope_theta);
  const int64_t R = max_rows_, D = c_.dim, KV = c_.kv_dim(), F = c_.hidden_dim, H = c_.n_heads, V = c_.vocab_size;
  const int64_t L = n_adapted_, K = plen_;
  logit_rows_ = std::min<int64_t>(R, 512);
  sup_rows_.reserve(static_cast<size_t>(R));

  // The memory plan: every buffer the step needs, named, carved from one allocation.
  std::vector<std::pair<std::string, float**>> slots;
  std::vector<size_t> sizes;
  auto plan = [&](const std::string& name, float** p, int64_t n) {
    slots.emplace_back(name, p);
    sizes.push_back(static_cast<size_t>(n));
  };
  acts_.assign(static_cast<size_t>(L), LayerActs{});
  auto plan_layer = [&](const std::string& pre, LayerActs& a, bool full) {
    plan(pre + "x_in", &a.x_in, R * D);
    if (!full) return;
    plan(pre + "rstd_att", &a.rstd_att, R);
    plan(pre + "q", &a.q, R * D);
    plan(pre + "k", &a.k, R * KV);
    plan(pre + "v", &a.v, R * KV);
    plan(pre + "lse_tok", &a.lse_tok, H * R);
    plan(pre + "lse_prompt", &a.lse_prompt, H * R);
    plan(pre + "h", &a.h, R * D);
    plan(pre + "rstd_ffn", &a.rstd_ffn, R);
    plan(pre + "a", &a.a, R * F);
    plan(pre + "b", &a.b, R * F);
  };
  for (int64_t i = 0; i < L; ++i) plan_layer(fmt::format("layer{}.", first_adapted_ + i), acts_[static_cast<size_t>(i)], !recompute_);
  if (recompute_) {
    plan_layer("recompute.", work_, true);
    plan("recompute.x", &xr_, R * D);
  }
  plan("x", &x_, R * D);
  plan("xb", &xb_, R * D);
  plan("q", &q_, R * D);
  plan("k", &k_, R * KV);
  plan("v", &v_, R * KV);
  plan("att", &att_, R * D);
  plan("hb", &hb_, R * F);
  plan("hb2", &hb2_, R * F);
  plan("x_final", &x_final_, R * D);
  plan("rstd_final", &rstd_final_, R);
  plan("logits", &logits_, logit_rows_ * V);
  if (L > 0) {
    plan("dx", &dx_, R * D);
    plan("dh", &dh_, R * D);
    plan("dxn", &dxn_, R * D);
    plan("datt", &datt_, R * D);
    plan("dq", &dq_, R * D);
    plan("dk", &dk_, R * KV);
    plan("dv", &dv_, R * KV);
    plan("da", &da_, R * F);
    plan("db", &db_, R * F);
    plan("prompt_k", &prompt_k_, L * K * KV);
    plan("prompt_v", &prompt_v_, L * K * KV);
    plan("gamma", &gamma_, L * H);
    plan("dprompt_k", &dprompt_k_, K * KV);
    plan("dprompt_v", &dprompt_v_, K * KV);
    plan("dgamma", &dgamma_, H);
    plan("dprompt_k.seq", &dpk_seq_, K * KV);
    plan("dprompt_v.seq", &dpv_seq_, K * KV);
    plan("dgamma.seq", &dgamma_seq_, H);
  }
  size_t total = 0;
  for (size_t s : sizes) total += (s + 15) & ~size_t{15};  // 64-byte aligned slices
  arena_.assign(total, 0.0f);
  size_t off = 0;
  for (size_t i = 0; i < slots.size(); ++i) {
    *slots[i].second = arena_.data() + off;
    plan_.emplace_back(slots[i].first, sizes[i] * sizeof(float));
    off += (sizes[i] + 15) & ~size_t{15};
  }
}

std::string TrainGraph::memory_plan() const {
  std::string s;
  for (const auto& [name, bytes] : plan_) s += fmt::format("{:<24} {:>12} bytes\n", name, bytes);
  s += fmt::format("{:<24} {:>12} bytes\n", "total", arena_bytes());
  return s;
}

void TrainGraph::prepare_prompts(const Adapter* a) {
  if (!a || a->n_layers == 0) return;
  const int64_t K = plen_, KV = c_.kv_dim(), H = c_.n_heads;
  for (int64_t i = 0; i < n_adapted_; ++i) {
    const int64_t l = first_adapted_ + i;
    const LayerWeights& lw = w_.layers[static_cast<size_t>(l)];
    matmul_nt(prompt_k_ + i * K * KV, a->prompt(l), lw.wk, K);
    matmul_nt(prompt_v_ + i * K * KV, a->prompt(l), lw.wv, K);
    for (int64_t h = 0; h < H; ++h) gamma_[i * H + h] = a->gamma(l, h);
  }
}

void TrainGraph::layer_forward(int64_t l, const PackedBatch& b, float* x, const LayerActs* keep,
                               const PromptKV* prompt) {
  const LayerWeights& lw = w_.layers[static_cast<size_t>(l)];
  const int64_t R = b.rows(), D = c_.dim, KV = c_.kv_dim(), F = c_.hidden_dim, H = c_.n_heads;
  if (keep && keep->x_in != x) copy(keep->x_in, x, R * D);
  float* q = keep ? keep->q : q_;
  float* k = keep ? keep->k : k_;
  float* v = keep ? keep->v : v_;
  rmsnorm_forward(xb_, keep ? keep->rstd_att : nullptr, x, lw.rms_att, R, D, c_.norm_eps);
  matmul_nt(q, xb_, lw.wq, R);
  matmul_nt(k, xb_, lw.wk, R);
  matmul_nt(v, xb_, lw.wv, R);
  rope_apply(q, R, c_.n_heads, b.positions.data(), rope_, c_.rope_style, false);
  rope_apply(k, R, c_.n_kv_heads, b.positions.data(), rope_, c_.rope_style, false);
  for (int64_t s = 0; s < b.sequences(); ++s) {
    const int64_t o = b.seq_offsets[static_cast<size_t>(s)], T = b.seq_offsets[static_cast<size_t>(s) + 1] - o;
    attention_forward(att_ + o * D, keep ? keep->lse_tok + H * o : nullptr, keep ? keep->lse_prompt + H * o : nullptr,
                      q + o * D, k + o * KV, v + o * KV, T, 0, dims_, prompt);
  }
  matmul_nt(xb_, att_, lw.wo, R);
  add_to(x, xb_, R * D);
  if (keep) copy(keep->h, x, R * D);
  rmsnorm_forward(xb_, keep ? keep->rstd_ffn : nullptr, x, lw.rms_ffn, R, D, c_.norm_eps);
  float* a = keep ? keep->a : hb_;
  float* bb = keep ? keep->b : hb2_;
  matmul_nt(a, xb_, lw.w1, R);
  matmul_nt(bb, xb_, lw.w3, R);
  swiglu_forward(hb_, a, bb, R * F);
  matmul_nt(xb_, hb_, lw.w2, R);
  add_to(x, xb_, R * D);
}

LossResult TrainGraph::forward(const PackedBatch& b, const Adapter* adapter, bool store) {
  const int64_t R = b.rows(), D = c_.dim, H = c_.n_heads;
  if (R > max_rows_) fail("micro-batch of {} rows exceeds the planned {}", R, max_rows_);
  if (b.max_seq_len() > max_seq_) fail("sequence of {} tokens exceeds the planned {}", b.max_seq_len(), max_seq_);
  for (int t : b.inputs)
    if (t < 0 || t >= c_.vocab_size) fail("token id {} is out of range for vocabulary size {}", t, c_.vocab_size);
  const bool with_adapter = adapter && adapter->n_layers > 0;
  if (with_adapter) prepare_prompts(adapter);
  for (int64_t r = 0; r < R; ++r) dequantize_row(w_.tok_embeddings, b.inputs[static_cast<size_t>(r)], x_ + r * D);
  for (int64_t l = 0; l < c_.n_layers; ++l) {
    PromptKV prompt;
    const bool adapted = with_adapter && l >= first_adapted_;
    if (adapted) {
      const int64_t i = l - first_adapted_;
      prompt = {prompt_k_ + i * plen_ * c_.kv_dim(), prompt_v_ + i * plen_ * c_.kv_dim(), gamma_ + i * H, plen_};
    }
    const LayerActs* keep = nullptr;
    if (store && adapted) {
      LayerActs& a = acts_[static_cast<size_t>(l - first_adapted_)];
      if (recompute_)
        copy(a.x_in, x_, R * D);
      else
        keep = &a;
    }
    layer_forward(l, b, x_, keep, adapted ? &prompt : nullptr);
  }
  return {};
}

LossResult TrainGraph::loss_and_grad(const PackedBatch& b, bool want_grad, float loss_scale) {
  // Only supervised rows need logits: gather them (x_final_ holds their normalised states).
  const int64_t D = c_.dim, V = c_.vocab_size, R = b.rows();
  std::vector<int64_t>& rows = sup_rows_;
  rows.clear();
  for (int64_t r = 0; r < R; ++r)
    if (b.targets[static_cast<size_t>(r)] >= 0) rows.push_back(r);
  const auto S = static_cast<int64_t>(rows.size());
  // xb_ <- gathered final hidden states, x_final_ <- RMSNorm of them.
  for (int64_t i = 0; i < S; ++i)
    std::memcpy(xb_ + i * D, x_ + rows[static_cast<size_t>(i)] * D, static_cast<size_t>(D) * sizeof(float));
  rmsnorm_forward(x_final_, rstd_final_, xb_, w_.rms_final, S, D, c_.norm_eps);
  LossResult res;
  res.tokens = S;
  double loss = 0;
  const RowwiseKernels& xent = rowwise_kernels();
  for (int64_t c0 = 0; c0 < S; c0 += logit_rows_) {
    const int64_t n = std::min(logit_rows_, S - c0);
    matmul_nt(logits_, x_final_ + c0 * D, w_.output, n);
#pragma omp parallel for reduction(+ : loss) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      float* lg = logits_ + i * V;
      const int target = b.targets[static_cast<size_t>(rows[static_cast<size_t>(c0 + i)])];
      // fast_exp at the CPU's full width, summed in double (rowwise.h); dloss/dlogit = softmax -
      // onehot, scaled by 1 / supervised tokens of the step.
      loss += xent.cross_entropy(lg, V, target, loss_scale, want_grad);
    }
    if (want_grad) matmul_nn(dxn_ + c0 * D, logits_, w_.output, n, false);
  }
  res.loss_sum = loss;
  if (want_grad) {
    // Back through the final RMSNorm, scattered to the packed rows (masked rows get zero).
    std::memset(dh_, 0, static_cast<size_t>(S * D) * sizeof(float));
    rmsnorm_backward(dh_, dxn_, xb_, w_.rms_final, rstd_final_, S, D);
    std::memset(dx_, 0, static_cast<size_t>(R * D) * sizeof(float));
    for (int64_t i = 0; i < S; ++i)
      std::memcpy(dx_ + rows[static_cast<size_t>(i)] * D, dh_ + i * D, static_cast<size_t>(D) * sizeof(float));
  }
  return res;
}

void TrainGraph::backward(const PackedBatch& b, const Adapter& adapter, AdapterGrads& grads) {
  const int64_t R = b.rows(), D = c_.dim, KV = c_.kv_dim(), F = c_.hidden_dim, H = c_.n_heads, K = plen_;
  for (int64_t l = c_.n_layers - 1; l >= first_adapted_; --l) {
    const int64_t i = l - first_adapted_;
    const LayerWeights& lw = w_.layers[static_cast<size_t>(l)];
    const PromptKV prompt{prompt_k_ + i * K * KV, prompt_v_ + i * K * KV, gamma_ + i * H, K};
    const LayerActs* acts = &acts_[static_cast<size_t>(i)];
    if (recompute_) {
      // Activation checkpointing: rebuild this layer's activations from its saved input.
      copy(work_.x_in, acts->x_in, R * D);
      copy(xr_, acts->x_in, R * D);
      layer_forward(l, b, xr_, &work_, &prompt);
      acts = &work_;
    }
    // FFN: out = h + W2 (silu(W1 n) * W3 n), n = RMSNorm(h). dx_ = dLoss/d out.
    matmul_nn(hb_, dx_, lw.w2, R, false);
    swiglu_backward(da_, db_, hb_, acts->a, acts->b, R * F);
    matmul_nn(dxn_, da_, lw.w1, R, false);
    matmul_nn(dxn_, db_, lw.w3, R, true);
    copy(dh_, dx_, R * D);
    rmsnorm_backward(dh_, dxn_, acts->h, lw.rms_ffn, acts->rstd_ffn, R, D);
    // Attention: h = x_in + Wo att.
    matmul_nn(datt_, dh_, lw.wo, R, false);
    const bool lowest = l == first_adapted_;  // no gradient needed below this layer's prompt
    std::memset(dprompt_k_, 0, static_cast<size_t>(K * KV) * sizeof(float));
    std::memset(dprompt_v_, 0, static_cast<size_t>(K * KV) * sizeof(float));
    std::memset(dgamma_, 0, static_cast<size_t>(H) * sizeof(float));
    for (int64_t s = 0; s < b.sequences(); ++s) {
      const int64_t o = b.seq_offsets[static_cast<size_t>(s)], T = b.seq_offsets[static_cast<size_t>(s) + 1] - o;
      attention_backward(lowest ? nullptr : dq_ + o * D, lowest ? nullptr : dk_ + o * KV,
                         lowest ? nullptr : dv_ + o * KV, dpk_seq_, dpv_seq_, dgamma_seq_, datt_ + o * D,
                         acts->q + o * D, acts->k + o * KV, acts->v + o * KV, acts->lse_tok + H * o,
                         acts->lse_prompt + H * o, T, dims_, &prompt);
      for (int64_t j = 0; j < K * KV; ++j) {
        dprompt_k_[j] += dpk_seq_[j];
        dprompt_v_[j] += dpv_seq_[j];
      }
      for (int64_t h = 0; h < H; ++h) dgamma_[h] += dgamma_seq_[h];
    }
    // Kp = P Wk^T, Vp = P Wv^T  =>  dP = dKp Wk + dVp Wv.
    float* gq = grads.query.data() + i * K * D;
    matmul_nn(gq, dprompt_k_, lw.wk, K, true);
    matmul_nn(gq, dprompt_v_, lw.wv, K, true);
    for (int64_t h = 0; h < H; ++h) grads.gate[static_cast<size_t>(i * H + h)] += dgamma_[h] * adapter.gamma_grad_scale(l, h);
    if (lowest) break;
    rope_apply(dq_, R, c_.n_heads, b.positions.data(), rope_, c_.rope_style, true);
    rope_apply(dk_, R, c_.n_kv_heads, b.positions.data(), rope_, c_.rope_style, true);
    matmul_nn(dxn_, dq_, lw.wq, R, false);
    matmul_nn(dxn_, dk_, lw.wk, R, true);
    matmul_nn(dxn_, dv_, lw.wv, R, true);
    copy(dx_, dh_, R * D);
    rmsnorm_backward(dx_, dxn_, acts->x_in, lw.rms_att, acts->rstd_att, R, D);
  }
}

LossResult TrainGraph::run(const PackedBatch& b, const Adapter& adapter, AdapterGrads* grads, float loss_scale) {
  // Small products on quantised weights may quantise their activations (fast decode); here the
  // forward must be exactly the function the backward differentiates.
  ExactActivations exact;
  if (adapter.n_layers != n_adapted_ || adapter.len != plen_)
    fail("adapter ({}) does not match the training graph (K={} L={})", adapter.shape_string(), plen_, n_adapted_);
  if (b.rows() == 0) return {};
  forward(b, &adapter, grads != nullptr);
  LossResult r = loss_and_grad(b, grads != nullptr && n_adapted_ > 0, loss_scale);
  if (grads && n_adapted_ > 0 && r.tokens > 0) backward(b, adapter, *grads);
  return r;
}

LossResult TrainGraph::evaluate(const PackedBatch& b, const Adapter* adapter) {
  ExactActivations exact;  // the same numbers as the training loss
  if (adapter && adapter->n_layers > 0 && (adapter->n_layers != n_adapted_ || adapter->len != plen_))
    fail("adapter ({}) does not match the evaluation graph (K={} L={})", adapter->shape_string(), plen_, n_adapted_);
  if (b.rows() == 0) return {};
  forward(b, adapter, false);
  return loss_and_grad(b, false, 0.0f);
}

}  // namespace la
