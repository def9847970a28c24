#include "la/model/block.h"

#include <cstring>
#include <initializer_list>
#include <utility>

#include "la/core/error.h"
#include "la/kernels/matmul.h"
#include "la/kernels/vec.h"

namespace la {

KVCache::KVCache(const ModelConfig& c, int64_t context) : context_(context), kv_dim_(c.kv_dim()) {
  if (context_ <= 0) fail("KV cache: the context must hold at least one token");
  const auto n = static_cast<size_t>(c.n_layers) * static_cast<size_t>(context_) * static_cast<size_t>(kv_dim_);
  k_.resize(n);
  v_.resize(n);
}

AdapterPrompts::AdapterPrompts(const ModelWeights& w, int64_t len, int64_t n_layers)
    : w_(w), len_(len), n_layers_(n_layers), first_layer_(w.config.n_layers - n_layers) {
  const ModelConfig& c = w.config;
  const auto L = static_cast<size_t>(n_layers), KV = static_cast<size_t>(len * c.kv_dim());
  keys_.resize(L * KV);
  values_.resize(L * KV);
  gamma_.resize(L * static_cast<size_t>(c.n_heads));
  for (size_t i = 0; i < L; ++i)
    views_.push_back(
        {keys_.data() + i * KV, values_.data() + i * KV, gamma_.data() + i * static_cast<size_t>(c.n_heads), len});
}

AdapterPrompts::AdapterPrompts(const ModelWeights& w, const Adapter& a) : AdapterPrompts(w, a.len, a.n_layers) {
  a.check_compatible(w.config, "adapter");
  project(a);
}

AdapterPrompts::AdapterPrompts(const AdapterPrompts& base, const float* image_row)
    : AdapterPrompts(base.w_, base.len_, base.n_layers_) {
  const int64_t KV = w_.config.kv_dim();
  std::vector<float> kimg(static_cast<size_t>(KV)), vimg(static_cast<size_t>(KV));
  for (int64_t i = 0; i < n_layers_; ++i) {
    prompt_project(w_, first_layer_ + i, image_row, 1, kimg.data(), vimg.data());
    const PromptKV& b = base.views_[static_cast<size_t>(i)];
    PromptKV& p = views_[static_cast<size_t>(i)];
    auto* keys = const_cast<float*>(p.keys);
    auto* values = const_cast<float*>(p.values);
    for (int64_t k = 0; k < len_; ++k)
      for (int64_t j = 0; j < KV; ++j) {
        keys[k * KV + j] = b.keys[k * KV + j] + kimg[static_cast<size_t>(j)];
        values[k * KV + j] = b.values[k * KV + j] + vimg[static_cast<size_t>(j)];
      }
    p.gamma = b.gamma;
  }
  gamma_.clear();
}

void AdapterPrompts::project(const Adapter& a) {
  if (a.len != len_ || a.n_layers != n_layers_)
    fail("adapter ({}) does not match the prompts planned for K={} L={}", a.shape_string(), len_, n_layers_);
  const int64_t H = w_.config.n_heads;
  for (int64_t i = 0; i < n_layers_; ++i) {
    const int64_t l = first_layer_ + i;
    const PromptKV& p = views_[static_cast<size_t>(i)];
    prompt_project(w_, l, a.prompt(l), len_, const_cast<float*>(p.keys), const_cast<float*>(p.values));
    for (int64_t h = 0; h < H; ++h) gamma_[static_cast<size_t>(i * H + h)] = a.gamma(l, h);
  }
}

void prompt_project(const ModelWeights& w, int64_t layer, const float* prompt, int64_t K, float* kp, float* vp) {
  const LayerWeights& lw = w.layers[static_cast<size_t>(layer)];
  matmul_nt(kp, prompt, lw.wk, K, w.bf16_panels_for(lw.wk));
  matmul_nt(vp, prompt, lw.wv, K, w.bf16_panels_for(lw.wv));
}

void prompt_project_backward(const ModelWeights& w, int64_t layer, const float* dkp, const float* dvp, int64_t K,
                             float* dprompt) {
  const LayerWeights& lw = w.layers[static_cast<size_t>(layer)];
  matmul_nn(dprompt, dkp, lw.wk, K, true, w.bf16_panels_for(lw.wk));
  matmul_nn(dprompt, dvp, lw.wv, K, true, w.bf16_panels_for(lw.wv));
}

BlockContext::BlockContext(const ModelWeights& weights, const RopeTable& table) : w(weights), rope(table) {
  const ModelConfig& c = weights.config;
  dims = {c.n_heads, c.n_kv_heads, c.head_dim(), c.rope_style == RopeStyle::Half};
}

namespace {

// outs[i] [rows, W_i.rows] = in [rows, W_i.cols] · W_i^T for the n weights sharing `in`, in the
// batch's product groups (matmul_nt_shared: one quantisation of `in` and one parallel loop).
void linear(const Batch& b, const float* in, std::initializer_list<std::pair<float*, const WeightMatrix*>> products,
            const ModelWeights& w) {
  if (products.size() > static_cast<size_t>(kMaxSharedProducts))
    fail("linear: more products than matmul_nt_shared takes");
  SharedProduct p[kMaxSharedProducts];
  int64_t n = 0;
  for (const auto& [out, W] : products) p[n++] = {out, W, w.bf16_panels_for(*W)};
  if (b.product_rows.empty()) return matmul_nt_shared(in, b.rows, p, n);
  int64_t r0 = 0;
  for (const int64_t rows : b.product_rows) {
    SharedProduct g[kMaxSharedProducts];
    for (int64_t i = 0; i < n; ++i) g[i] = {p[i].out + r0 * p[i].w->rows, p[i].w, p[i].panels};
    matmul_nt_shared(in + r0 * p[0].w->cols, rows, g, n);
    r0 += rows;
  }
  if (r0 != b.rows) fail("batch: product groups cover {} of {} rows", r0, b.rows);
}

}  // namespace

void block_forward(const BlockContext& ctx, int64_t l, const Batch& b, float* x, const BlockActs* keep,
                   const BlockScratch& s) {
  const ModelWeights& w = ctx.w;
  const ModelConfig& c = w.config;
  const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
  const int64_t R = b.rows, D = c.dim, KV = c.kv_dim(), F = c.hidden_dim, H = c.n_heads;
  if (keep && keep->x_in != x) copy(keep->x_in, x, R * D);
  float* q = keep ? keep->q : s.q;
  float* k = keep ? keep->k : s.k;
  float* v = keep ? keep->v : s.v;
  rmsnorm_forward(s.xb, keep ? keep->rstd_att : nullptr, x, lw.rms_att, R, D, c.norm_eps);
  linear(b, s.xb, {{q, &lw.wq}, {k, &lw.wk}, {v, &lw.wv}}, w);
  rope_apply(q, R, c.n_heads, b.positions, ctx.rope, c.rope_style, false);
  rope_apply(k, R, c.n_kv_heads, b.positions, ctx.rope, c.rope_style, false);
  float* att = keep && keep->att ? keep->att : s.att;
  for (const BatchSeq& sq : b.seqs) {
    const int64_t o = sq.row0, T = sq.rows;
    const float* keys = k + o * KV;
    const float* values = v + o * KV;
    if (sq.cache) {
      // This sequence's new keys/values join its cache; it attends over all of them.
      float* kc = sq.cache->keys(l);
      float* vc = sq.cache->values(l);
      std::memcpy(kc + sq.pos0 * KV, keys, static_cast<size_t>(T * KV) * sizeof(float));
      std::memcpy(vc + sq.pos0 * KV, values, static_cast<size_t>(T * KV) * sizeof(float));
      keys = kc;
      values = vc;
    }
    const PromptKV* prompt = sq.prompts ? sq.prompts->layer(l) : nullptr;
    attention_forward(att + o * D, keep ? keep->lse_tok + H * o : nullptr, keep ? keep->lse_prompt + H * o : nullptr,
                      q + o * D, keys, values, T, sq.pos0, ctx.dims, prompt);
  }
  linear(b, att, {{s.xb, &lw.wo}}, w);
  add_to(x, s.xb, R * D);
  if (keep) copy(keep->h, x, R * D);
  rmsnorm_forward(s.xb, keep ? keep->rstd_ffn : nullptr, x, lw.rms_ffn, R, D, c.norm_eps);
  float* a = keep ? keep->a : s.hb;
  float* bb = keep ? keep->b : s.hb2;
  linear(b, s.xb, {{a, &lw.w1}, {bb, &lw.w3}}, w);
  swiglu_forward(s.hb, a, bb, R * F);
  linear(b, s.hb, {{s.xb, &lw.w2}}, w);
  add_to(x, s.xb, R * D);
}

void block_backward(const BlockContext& ctx, int64_t l, const Batch& b, float* dx, const BlockActs& acts,
                    const BlockScratch& s, const BlockGradScratch& g, bool stop, float* dprompt_k, float* dprompt_v,
                    float* dgamma, const LayerGrads* wg, float* dprompt_row_seq) {
  const ModelWeights& w = ctx.w;
  const ModelConfig& c = w.config;
  const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
  const int64_t R = b.rows, D = c.dim, KV = c.kv_dim(), F = c.hidden_dim, H = c.n_heads;
  if (wg && (stop || !acts.att))
    fail("block backward: weight gradients need the whole backward and the attention output");
  // Weight gradients dW += dY^T X need each product's input: the normed inputs and the SwiGLU
  // output are recomputed from what the forward kept (the same functions, the same bits).
  auto dweight = [&](const char* name, const float* dy, const float* x, int64_t n_out, int64_t n_in) {
    matmul_tn((*wg)[layer_tensor_index(name)], dy, x, R, n_out, n_in);
  };
  // FFN: out = h + W2 (silu(W1 n) * W3 n), n = RMSNorm(h). dx = dLoss/d out.
  if (wg) {
    swiglu_forward(s.hb2, acts.a, acts.b, R * F);
    dweight("w2", dx, s.hb2, D, F);
  }
  matmul_nn(s.hb, dx, lw.w2, R, false, w.bf16_panels_for(lw.w2));
  swiglu_backward(g.da, g.db, s.hb, acts.a, acts.b, R * F);
  if (wg) {
    rmsnorm_forward(s.xb, nullptr, acts.h, lw.rms_ffn, R, D, c.norm_eps);
    dweight("w1", g.da, s.xb, F, D);
    dweight("w3", g.db, s.xb, F, D);
  }
  matmul_nn(g.dxn, g.da, lw.w1, R, false, w.bf16_panels_for(lw.w1));
  matmul_nn(g.dxn, g.db, lw.w3, R, true, w.bf16_panels_for(lw.w3));
  if (wg) rmsnorm_weight_grad((*wg)[layer_tensor_index("rms_ffn")], g.dxn, acts.h, acts.rstd_ffn, R, D);
  copy(g.dh, dx, R * D);
  rmsnorm_backward(g.dh, g.dxn, acts.h, lw.rms_ffn, acts.rstd_ffn, R, D);
  // Attention: h = x_in + Wo att.
  if (wg) dweight("wo", g.dh, acts.att, D, D);
  matmul_nn(g.datt, g.dh, lw.wo, R, false, w.bf16_panels_for(lw.wo));
  const PromptKV* any_prompt = nullptr;
  for (const BatchSeq& sq : b.seqs)
    if (sq.prompts && sq.prompts->layer(l)) any_prompt = sq.prompts->layer(l);
  if (any_prompt) {
    const int64_t K = any_prompt->len;
    std::memset(dprompt_k, 0, static_cast<size_t>(K * KV) * sizeof(float));
    std::memset(dprompt_v, 0, static_cast<size_t>(K * KV) * sizeof(float));
    std::memset(dgamma, 0, static_cast<size_t>(H) * sizeof(float));
  }
  for (size_t si = 0; si < b.seqs.size(); ++si) {
    const BatchSeq& sq = b.seqs[si];
    if (sq.cache || sq.pos0 != 0) fail("block backward: sequences must hold their own keys and values");
    const int64_t o = sq.row0, T = sq.rows;
    const PromptKV* prompt = sq.prompts ? sq.prompts->layer(l) : nullptr;
    if (prompt && (prompt->gamma != any_prompt->gamma || prompt->len != any_prompt->len))
      fail("block backward: one batch trains one adapter");
    float* row_sum = dprompt_row_seq ? dprompt_row_seq + 2 * KV * static_cast<int64_t>(si) : nullptr;
    if (row_sum) std::memset(row_sum, 0, static_cast<size_t>(2 * KV) * sizeof(float));
    attention_backward(stop ? nullptr : g.dq + o * D, stop ? nullptr : g.dk + o * KV, stop ? nullptr : g.dv + o * KV,
                       g.dpk_seq, g.dpv_seq, g.dgamma_seq, g.datt + o * D, acts.q + o * D, acts.k + o * KV,
                       acts.v + o * KV, acts.lse_tok + H * o, acts.lse_prompt + H * o, T, ctx.dims, prompt);
    if (!prompt) continue;
    const int64_t K = prompt->len;
    for (int64_t j = 0; j < K * KV; ++j) {
      dprompt_k[j] += g.dpk_seq[j];
      dprompt_v[j] += g.dpv_seq[j];
    }
    if (row_sum)
      for (int64_t k = 0; k < K; ++k)
        for (int64_t j = 0; j < KV; ++j) {
          row_sum[j] += g.dpk_seq[k * KV + j];
          row_sum[KV + j] += g.dpv_seq[k * KV + j];
        }
    for (int64_t h = 0; h < H; ++h) dgamma[h] += g.dgamma_seq[h];
  }
  if (stop) return;
  rope_apply(g.dq, R, c.n_heads, b.positions, ctx.rope, c.rope_style, true);
  rope_apply(g.dk, R, c.n_kv_heads, b.positions, ctx.rope, c.rope_style, true);
  if (wg) {
    rmsnorm_forward(s.xb, nullptr, acts.x_in, lw.rms_att, R, D, c.norm_eps);
    dweight("wq", g.dq, s.xb, D, D);
    dweight("wk", g.dk, s.xb, KV, D);
    dweight("wv", g.dv, s.xb, KV, D);
  }
  matmul_nn(g.dxn, g.dq, lw.wq, R, false, w.bf16_panels_for(lw.wq));
  matmul_nn(g.dxn, g.dk, lw.wk, R, true, w.bf16_panels_for(lw.wk));
  matmul_nn(g.dxn, g.dv, lw.wv, R, true, w.bf16_panels_for(lw.wv));
  if (wg) rmsnorm_weight_grad((*wg)[layer_tensor_index("rms_att")], g.dxn, acts.x_in, acts.rstd_att, R, D);
  copy(dx, g.dh, R * D);
  rmsnorm_backward(dx, g.dxn, acts.x_in, lw.rms_att, acts.rstd_att, R, D);
}

}  // namespace la
