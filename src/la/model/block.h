// The LLaMA decoder block and the adapter's prompt projection: the one implementation that
// inference (model/inference.h: KV caches, prefill and decode) and training
// (model/train_graph.h: stored activations, backward) both drive. Per layer (SPEC §1, §2):
//   xb = RMSNorm_att(x); q,k,v = xb W^T; RoPE(q,k); att = Attention(q, K/V of its sequence, prompt)
//   h = x + att Wo^T;    n = RMSNorm_ffn(h); out = h + W2 (silu(W1 n) * W3 n)
// The batch (model/batch.h) may hold several sequences, each with its own positions, keys/values
// and adapter prompts.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "la/kernels/attention.h"
#include "la/kernels/ops.h"
#include "la/model/adapter.h"
#include "la/model/batch.h"
#include "la/model/weights.h"

namespace la {

// One adapter's prompts projected through a model's frozen Wk/Wv (no norm, no RoPE) and its
// gates' gammas: Kp = P Wk^T, Vp = P Wv^T per adapted layer. Computed once per adapter at
// inference and shared by reference by every sequence that uses it; training projects the
// current prompts into it once per micro-batch (project()).
class AdapterPrompts {
 public:
  AdapterPrompts(const ModelWeights& w, int64_t len, int64_t n_layers);  // storage only
  AdapterPrompts(const ModelWeights& w, const Adapter& a);               // storage + project(a)
  // One sequence's prompts with an image (SPEC §8): the prompts of `base` plus, in every adapted
  // layer, the image row I_p ([dim]) projected once through Wk/Wv and added to each of the K rows
  // (the projections are linear: (P + 1 I_p) W^T = P W^T + 1 (I_p W^T)); the gammas are base's,
  // shared (so `base` must outlive this).
  AdapterPrompts(const AdapterPrompts& base, const float* image_row);
  void project(const Adapter& a);
  // The layer's prompt, or null for a layer below the adapted ones.
  const PromptKV* layer(int64_t l) const {
    return l >= first_layer_ && l - first_layer_ < n_layers_ ? &views_[static_cast<size_t>(l - first_layer_)] : nullptr;
  }
  int64_t first_layer() const { return first_layer_; }
  int64_t len() const { return len_; }
  size_t bytes() const { return (keys_.size() + values_.size() + gamma_.size()) * sizeof(float); }

 private:
  const ModelWeights& w_;
  int64_t len_, n_layers_, first_layer_;
  std::vector<float> keys_, values_, gamma_;  // [L][K][kv_dim], [L][K][kv_dim], [L][H]
  std::vector<PromptKV> views_;
};

// Kp = P Wk^T and Vp = P Wv^T of one layer's prompt P [K, dim].
void prompt_project(const ModelWeights& w, int64_t layer, const float* prompt, int64_t K, float* kp, float* vp);
// Its backward: dP += dKp Wk + dVp Wv (dP [K, dim]).
void prompt_project_backward(const ModelWeights& w, int64_t layer, const float* dkp, const float* dvp, int64_t K,
                             float* dprompt);

// What the block's forward keeps for its backward (training), one layer's worth, [rows, ...].
// `att` (the attention output, Wo's input) only where weight gradients are wanted.
struct BlockActs {
  float *x_in = nullptr, *rstd_att = nullptr, *q = nullptr, *k = nullptr, *v = nullptr, *lse_tok = nullptr,
        *lse_prompt = nullptr, *h = nullptr, *rstd_ffn = nullptr, *a = nullptr, *b = nullptr, *att = nullptr;
};

// One layer's weight gradients (full training, SPEC §12), in kLayerTensors order: each points at
// the gradient of that tensor ([dim] for a norm, [rows, cols] for a matrix), accumulated into.
using LayerGrads = std::array<float*, kLayerTensors.size()>;

// Work buffers for a batch of up to R rows: xb, att [R, dim]; q [R, dim]; k, v [R, kv_dim];
// hb, hb2 [R, hidden].
struct BlockScratch {
  float *xb = nullptr, *q = nullptr, *k = nullptr, *v = nullptr, *att = nullptr, *hb = nullptr, *hb2 = nullptr;
};

// Gradient buffers of the backward: [R, dim] dh, dxn, datt, dq; [R, kv_dim] dk, dv; [R, hidden]
// da, db; per-sequence prompt gradients [K, kv_dim] x2 and [H].
struct BlockGradScratch {
  float *dh = nullptr, *dxn = nullptr, *datt = nullptr, *dq = nullptr, *dk = nullptr, *dv = nullptr, *da = nullptr,
        *db = nullptr, *dpk_seq = nullptr, *dpv_seq = nullptr, *dgamma_seq = nullptr;
};

struct BlockContext {
  const ModelWeights& w;
  const RopeTable& rope;
  AttentionDims dims;
  BlockContext(const ModelWeights& weights, const RopeTable& table);
};

// x [rows, dim] <- the block's output for layer `l`. With `keep` (training) the activations the
// backward needs are stored there (keep->x_in may be x itself). Sequences with a cache get their
// new keys/values appended at pos0 (the cache's position is not advanced here).
void block_forward(const BlockContext& ctx, int64_t l, const Batch& b, float* x, const BlockActs* keep,
                   const BlockScratch& s);

// Backward of block_forward for layer `l` (sequences without caches, pos0 = 0). dx [rows, dim]
// holds dLoss/d(out) on entry and dLoss/d(x_in) on return, unless `stop` (the lowest layer that
// needs gradients: nothing below needs dx, so the query/key/value path is skipped). Prompt
// gradients of the sequences' (single) prompt are summed over sequences into dprompt_k/dprompt_v
// [K, kv_dim] and dgamma [H] (gradient w.r.t. gamma) when the layer is adapted. Sequences may
// hold different prompts of the same adapter (images: AdapterPrompts(base, image_row), which share
// its gammas). With `dprompt_row_seq` ([sequences][2][kv_dim]) each sequence's prompt-key and
// prompt-value gradients summed over its K rows are written there too (what an image row added
// to every prompt row receives; zeros for a sequence without prompts). With `wg` the layer's
// weight gradients are added there too (acts.att must have been kept; not with `stop`).
void block_backward(const BlockContext& ctx, int64_t l, const Batch& b, float* dx, const BlockActs& acts,
                    const BlockScratch& s, const BlockGradScratch& g, bool stop, float* dprompt_k, float* dprompt_v,
                    float* dgamma, const LayerGrads* wg = nullptr, float* dprompt_row_seq = nullptr);

}  // namespace la
