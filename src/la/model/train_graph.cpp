#include "la/model/train_graph.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>

#include "la/core/error.h"
#include "la/kernels/convert.h"
#include "la/kernels/matmul.h"
#include "la/kernels/quant_dot.h"
#include "la/kernels/rowwise.h"
#include "la/kernels/vec.h"
#include "la/model/model_params.h"
#include "la/model/visual_proj.h"

namespace la {

void PackedBatch::clear() {
  inputs.clear();
  targets.clear();
  positions.clear();
  seq_offsets.assign(1, 0);
  images.clear();
  supervised = 0;
}

bool PackedBatch::has_images() const {
  for (const float* f : images)
    if (f) return true;
  return false;
}

void PackedBatch::add(const std::vector<int>& tokens, int64_t prompt_len, const float* image) {
  if (seq_offsets.empty()) seq_offsets.push_back(0);
  const auto n = static_cast<int64_t>(tokens.size());
  if (n < 2) return;  // nothing to predict
  images.resize(static_cast<size_t>(sequences()), nullptr);
  images.push_back(image);
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

TrainGraph::TrainGraph(const ModelWeights& w, const Adapter& adapter, int64_t max_rows, int64_t max_seq, bool recompute)
    : TrainGraph(w, adapter, max_rows, max_seq, recompute, false) {}

TrainGraph::TrainGraph(Full, const ModelWeights& w, int64_t max_rows, int64_t max_seq, bool recompute)
    : TrainGraph(w, Adapter{}, max_rows, max_seq, recompute, true) {}

TrainGraph::TrainGraph(const ModelWeights& w, const Adapter& adapter, int64_t max_rows, int64_t max_seq, bool recompute,
                       bool full)
    : w_(w),
      c_(w.config),
      max_rows_(max_rows),
      max_seq_(max_seq),
      first_adapted_(c_.n_layers - adapter.n_layers),
      n_adapted_(adapter.n_layers),
      plen_(adapter.len),
      recompute_(recompute),
      full_(full),
      first_stored_(full ? 0 : first_adapted_),
      n_stored_(full ? c_.n_layers : n_adapted_),
      rope_(std::max<int64_t>(max_seq, 1), c_.head_dim(), c_.rope_theta),
      ctx_(w, rope_) {
  if (max_rows_ <= 0 || max_seq_ <= 0) fail("training graph needs at least one row");
  if (max_seq_ > c_.max_seq_len)
    fail("sequence length {} exceeds the model's context length {}", max_seq_, c_.max_seq_len);
  if (full_) {
    if (n_adapted_ > 0) fail("full training takes no adapter");
    auto f32 = [](const WeightMatrix& m) { return m.type == DType::F32; };
    bool all_f32 = f32(w.tok_embeddings) && f32(w.output);
    for (const LayerWeights& l : w.layers)
      for (const WeightMatrix* m : layer_matrices(l)) all_f32 = all_f32 && f32(*m);
    if (!all_f32) fail("full training needs F32 weights (train a model_view of the parameters)");
  }
  if (n_adapted_ > 0) prompts_ = std::make_unique<AdapterPrompts>(w, plen_, n_adapted_);
  const int64_t R = max_rows_, D = c_.dim, KV = c_.kv_dim(), F = c_.hidden_dim, H = c_.n_heads, V = c_.vocab_size;
  const int64_t L = n_stored_, K = plen_;
  logit_rows_ = std::min<int64_t>(R, 512);
  sup_rows_.reserve(static_cast<size_t>(R));

  // The memory plan: every buffer the step needs, named, carved from one allocation.
  std::vector<std::pair<std::string, float**>> slots;
  std::vector<size_t> sizes;
  auto plan = [&](const std::string& name, float** p, int64_t n) {
    slots.emplace_back(name, p);
    sizes.push_back(static_cast<size_t>(n));
  };
  acts_.assign(static_cast<size_t>(L), BlockActs{});
  auto plan_layer = [&](const std::string& pre, BlockActs& a, bool full) {
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
    if (full_) plan(pre + "att", &a.att, R * D);
  };
  for (int64_t i = 0; i < L; ++i)
    plan_layer(fmt::format("layer{}.", first_stored_ + i), acts_[static_cast<size_t>(i)], !recompute_);
  if (recompute_) {
    plan_layer("recompute.", work_, true);
    plan("recompute.x", &xr_, R * D);
  }
  plan("x", &x_, R * D);
  plan("xb", &scratch_.xb, R * D);
  plan("q", &scratch_.q, R * D);
  plan("k", &scratch_.k, R * KV);
  plan("v", &scratch_.v, R * KV);
  plan("att", &scratch_.att, R * D);
  plan("hb", &scratch_.hb, R * F);
  plan("hb2", &scratch_.hb2, R * F);
  plan("x_final", &x_final_, R * D);
  plan("rstd_final", &rstd_final_, R);
  plan("logits", &logits_, logit_rows_ * V);
  if (L > 0) {
    plan("dx", &dx_, R * D);
    plan("dh", &gscratch_.dh, R * D);
    plan("dxn", &gscratch_.dxn, R * D);
    plan("datt", &gscratch_.datt, R * D);
    plan("dq", &gscratch_.dq, R * D);
    plan("dk", &gscratch_.dk, R * KV);
    plan("dv", &gscratch_.dv, R * KV);
    plan("da", &gscratch_.da, R * F);
    plan("db", &gscratch_.db, R * F);
    if (!full_) {
      plan("dprompt_k", &dprompt_k_, K * KV);
      plan("dprompt_v", &dprompt_v_, K * KV);
      plan("dgamma", &dgamma_, H);
      plan("dprompt_k.seq", &gscratch_.dpk_seq, K * KV);
      plan("dprompt_v.seq", &gscratch_.dpv_seq, K * KV);
      plan("dgamma.seq", &gscratch_.dgamma_seq, H);
    }
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
  if (prompts_)
    s += fmt::format("{:<24} {:>12} bytes (projected prompt keys/values, gammas)\n", "prompts", prompts_->bytes());
  return s;
}

void TrainGraph::forward(const PackedBatch& b, const Adapter* adapter, bool store) {
  const int64_t R = b.rows(), D = c_.dim;
  if (R > max_rows_) fail("micro-batch of {} rows exceeds the planned {}", R, max_rows_);
  if (b.max_seq_len() > max_seq_) fail("sequence of {} tokens exceeds the planned {}", b.max_seq_len(), max_seq_);
  for (int t : b.inputs)
    if (t < 0 || t >= c_.vocab_size) fail("token id {} is out of range for vocabulary size {}", t, c_.vocab_size);
  const bool with_adapter = adapter && adapter->n_layers > 0;
  if (with_adapter) prompts_->project(*adapter);
  image_prompts_.clear();
  image_prompts_.resize(static_cast<size_t>(b.sequences()));
  if (with_adapter && b.has_images()) project_images(b, *adapter);
  // The packed micro-batch as the block sees it: each sequence its own rows, keys and values.
  batch_.positions = b.positions.data();
  batch_.rows = R;
  batch_.seqs.clear();
  for (int64_t s = 0; s < b.sequences(); ++s) {
    const int64_t o = b.seq_offsets[static_cast<size_t>(s)];
    const AdapterPrompts* image = image_prompts_[static_cast<size_t>(s)].get();
    const AdapterPrompts* p = !with_adapter ? nullptr : image ? image : prompts_.get();
    batch_.seqs.push_back({o, b.seq_offsets[static_cast<size_t>(s) + 1] - o, 0, nullptr, p});
  }
  for (int64_t r = 0; r < R; ++r) dequantize_row(w_.tok_embeddings, b.inputs[static_cast<size_t>(r)], x_ + r * D);
  for (int64_t l = 0; l < c_.n_layers; ++l) {
    const BlockActs* keep = nullptr;
    if (store && n_stored_ > 0 && (with_adapter || full_) && l >= first_stored_) {
      BlockActs& a = acts_[static_cast<size_t>(l - first_stored_)];
      if (recompute_)
        copy(a.x_in, x_, R * D);
      else
        keep = &a;
    }
    block_forward(ctx_, l, batch_, x_, keep, scratch_);
  }
}

void TrainGraph::project_images(const PackedBatch& b, const Adapter& adapter) {
  if (!adapter.visual.enabled()) fail("the data has images but the adapter is not multi-modal (train one with --clip)");
  const auto S = static_cast<size_t>(b.sequences());
  const int64_t D = c_.dim, W = adapter.visual.width;
  std::vector<float> ip(static_cast<size_t>(D));
  image_pre_.assign(S * static_cast<size_t>(W), 0.0f);
  for (size_t s = 0; s < S; ++s) {
    if (s >= b.images.size() || !b.images[s]) continue;
    visual_proj_forward(adapter, b.images[s], ip.data(), image_pre_.data() + s * static_cast<size_t>(W));
    image_prompts_[s] = std::make_unique<AdapterPrompts>(*prompts_, ip.data());
  }
}

LossResult TrainGraph::loss_and_grad(const PackedBatch& b, bool want_grad, float loss_scale, ParamSet* full_grads) {
  // Only supervised rows need logits: gather them (x_final_ holds their normalised states).
  const int64_t D = c_.dim, V = c_.vocab_size, R = b.rows();
  std::vector<int64_t>& rows = sup_rows_;
  rows.clear();
  for (int64_t r = 0; r < R; ++r)
    if (b.targets[static_cast<size_t>(r)] >= 0) rows.push_back(r);
  const auto S = static_cast<int64_t>(rows.size());
  // xb <- gathered final hidden states, x_final_ <- RMSNorm of them.
  float* xb = scratch_.xb;
  for (int64_t i = 0; i < S; ++i)
    std::memcpy(xb + i * D, x_ + rows[static_cast<size_t>(i)] * D, static_cast<size_t>(D) * sizeof(float));
  rmsnorm_forward(x_final_, rstd_final_, xb, w_.rms_final, S, D, c_.norm_eps);
  LossResult res;
  res.tokens = S;
  double loss = 0;
  const RowwiseKernels& xent = rowwise_kernels();
  for (int64_t c0 = 0; c0 < S; c0 += logit_rows_) {
    const int64_t n = std::min(logit_rows_, S - c0);
    matmul_nt(logits_, x_final_ + c0 * D, w_.output, n, w_.bf16_panels_for(w_.output));
#pragma omp parallel for reduction(+ : loss) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      float* lg = logits_ + i * V;
      const int target = b.targets[static_cast<size_t>(rows[static_cast<size_t>(c0 + i)])];
      // fast_exp at the CPU's full width, summed in double (rowwise.h); dloss/dlogit = softmax -
      // onehot, scaled by 1 / supervised tokens of the step.
      loss += xent.cross_entropy(lg, V, target, loss_scale, want_grad);
    }
    if (want_grad) matmul_nn(gscratch_.dxn + c0 * D, logits_, w_.output, n, false, w_.bf16_panels_for(w_.output));
    // The classifier's gradient (tied: the embedding's) += dlogits^T x_final.
    if (want_grad && full_grads)
      matmul_tn(full_grads->slice(full_grads->table().get(c_.tied_classifier ? "tok_embeddings" : "output")).data(),
                logits_, x_final_ + c0 * D, n, V, D);
  }
  res.loss_sum = loss;
  if (want_grad) {
    // Back through the final RMSNorm, scattered to the packed rows (masked rows get zero).
    float* dh = gscratch_.dh;
    std::memset(dh, 0, static_cast<size_t>(S * D) * sizeof(float));
    rmsnorm_backward(dh, gscratch_.dxn, xb, w_.rms_final, rstd_final_, S, D);
    if (full_grads) rmsnorm_weight_grad((*full_grads)["rms_final"].data(), gscratch_.dxn, xb, rstd_final_, S, D);
    std::memset(dx_, 0, static_cast<size_t>(R * D) * sizeof(float));
    for (int64_t i = 0; i < S; ++i)
      std::memcpy(dx_ + rows[static_cast<size_t>(i)] * D, dh + i * D, static_cast<size_t>(D) * sizeof(float));
  }
  return res;
}

const BlockActs& TrainGraph::layer_acts(int64_t l) {
  const BlockActs& kept = acts_[static_cast<size_t>(l - first_stored_)];
  if (!recompute_) return kept;
  // Activation checkpointing: rebuild this layer's activations from its saved input.
  const int64_t n = batch_.rows * c_.dim;
  copy(work_.x_in, kept.x_in, n);
  copy(xr_, kept.x_in, n);
  block_forward(ctx_, l, batch_, xr_, &work_, scratch_);
  return work_;
}

void TrainGraph::backward(const PackedBatch& b, const Adapter& adapter, ParamSet& grads) {
  const int64_t D = c_.dim, H = c_.n_heads, K = plen_, KV = c_.kv_dim();
  std::span<float> gq = grads["adapter_query"], gg = grads["gate"];
  // Images: I_p is added to every prompt row of every adapted layer, so dI_p is the sum over
  // layers and rows of those rows' gradients, dI_p = sum_l (sum_k dKp_l) Wk + (sum_k dVp_l) Wv.
  const size_t S = b.has_images() ? image_prompts_.size() : 0;
  std::vector<float> row_sums(S * static_cast<size_t>(2 * KV)), dip(S * static_cast<size_t>(D));
  for (int64_t l = c_.n_layers - 1; l >= first_adapted_; --l) {
    const int64_t i = l - first_adapted_;
    const bool lowest = l == first_adapted_;  // no gradient needed below this layer's prompt
    block_backward(ctx_, l, batch_, dx_, layer_acts(l), scratch_, gscratch_, lowest, dprompt_k_, dprompt_v_, dgamma_,
                   nullptr, S ? row_sums.data() : nullptr);
    // Kp = P Wk^T, Vp = P Wv^T  =>  dP = dKp Wk + dVp Wv;  dg = dgamma * gamma'(g).
    prompt_project_backward(w_, l, dprompt_k_, dprompt_v_, K, gq.data() + i * K * D);
    for (int64_t h = 0; h < H; ++h) gg[static_cast<size_t>(i * H + h)] += dgamma_[h] * adapter.gamma_grad_scale(l, h);
    for (size_t s = 0; s < S; ++s)
      if (image_prompts_[s]) {
        const float* rs = row_sums.data() + s * static_cast<size_t>(2 * KV);
        prompt_project_backward(w_, l, rs, rs + KV, 1, dip.data() + s * static_cast<size_t>(D));
      }
  }
  for (size_t s = 0; s < S; ++s)
    if (image_prompts_[s])
      visual_proj_backward(adapter, b.images[s], image_pre_.data() + s * static_cast<size_t>(adapter.visual.width),
                           dip.data() + s * static_cast<size_t>(D), grads);
}

void TrainGraph::backward_full(const PackedBatch& b, ParamSet& grads) {
  const int64_t R = batch_.rows, D = c_.dim;
  for (int64_t l = c_.n_layers - 1; l >= 0; --l) {
    LayerGrads wg{};
    for (size_t t = 0; t < kLayerTensors.size(); ++t)
      wg[t] = grads.values().data() + layer_tensor_offset(grads.table(), kLayerTensors[t], c_, l);
    block_backward(ctx_, l, batch_, dx_, layer_acts(l), scratch_, gscratch_, false, nullptr, nullptr, nullptr, &wg);
  }
  // The embedding: each row's gradient back to its token's row (rows in order: deterministic).
  float* demb = grads["tok_embeddings"].data();
  for (int64_t r = 0; r < R; ++r)
    add_to(demb + static_cast<int64_t>(b.inputs[static_cast<size_t>(r)]) * D, dx_ + r * D, D);
}

void TrainGraph::check_adapter(const Adapter* adapter, const char* what) const {
  if (adapter && adapter->n_layers > 0 && (adapter->n_layers != n_adapted_ || adapter->len != plen_))
    fail("adapter ({}) does not match the {} graph (K={} L={})", adapter->shape_string(), what, plen_, n_adapted_);
}

LossResult TrainGraph::run(const PackedBatch& b, const Adapter& adapter, ParamSet* grads, float loss_scale) {
  // Small products on quantised weights may quantise their activations (fast decode); here the
  // forward must be exactly the function the backward differentiates.
  ExactActivations exact;
  if (adapter.n_layers != n_adapted_ || adapter.len != plen_)
    fail("adapter ({}) does not match the training graph (K={} L={})", adapter.shape_string(), plen_, n_adapted_);
  if (full_) {
    if (grads && !(grads->table() == model_param_table(c_)))
      fail("training graph: the gradient buffer is not laid out like the model's parameters");
    if (b.rows() == 0) return {};
    forward(b, nullptr, grads != nullptr);
    LossResult r = loss_and_grad(b, grads != nullptr, loss_scale, grads);
    if (grads && r.tokens > 0) backward_full(b, *grads);
    return r;
  }
  if (grads && !(grads->table() == adapter.params.table()))
    fail("training graph: the gradient buffer is not laid out like the adapter's parameters");
  if (b.rows() == 0) return {};
  forward(b, &adapter, grads != nullptr);
  LossResult r = loss_and_grad(b, grads != nullptr && n_adapted_ > 0, loss_scale, nullptr);
  if (grads && n_adapted_ > 0 && r.tokens > 0) backward(b, adapter, *grads);
  return r;
}

LossResult TrainGraph::evaluate(const PackedBatch& b, const Adapter* adapter) {
  ExactActivations exact;  // the same numbers as the training loss
  check_adapter(adapter, "evaluation");
  if (b.rows() == 0) return {};
  forward(b, adapter, false);
  return loss_and_grad(b, false, 0.0f, nullptr);
}

void TrainGraph::logits(const PackedBatch& b, const Adapter* adapter, float* out) {
  ExactActivations exact;
  check_adapter(adapter, "evaluation");
  if (b.rows() == 0) return;
  forward(b, adapter, false);
  const int64_t R = b.rows(), D = c_.dim, V = c_.vocab_size;
  rmsnorm_forward(x_final_, nullptr, x_, w_.rms_final, R, D, c_.norm_eps);
  for (int64_t c0 = 0; c0 < R; c0 += logit_rows_)
    matmul_nt(out + c0 * V, x_final_ + c0 * D, w_.output, std::min(logit_rows_, R - c0), w_.bf16_panels_for(w_.output));
}

}  // namespace la
