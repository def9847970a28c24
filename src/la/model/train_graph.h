// Training-time forward and backward of the frozen base model with an adapter. Only the
// adapter gets gradients (SPEC §2): backward computes activation gradients through the frozen
// matrices (dX = dY·W, never dW) from the loss down to the lowest adapted layer and stops there.
// Layers below it run forward only and store nothing.
//
// A micro-batch is packed: each example contributes len-1 rows (inputs tokens[0..n-2], targets
// tokens[1..n-1]), sequences laid end to end, so no padding is ever computed. Attention runs per
// sequence.
//
// Memory is planned once in the constructor (llm.c style): one arena carved into named tensors,
// nothing allocated per step.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "la/kernels/attention.h"
#include "la/kernels/ops.h"
#include "la/model/adapter.h"
#include "la/model/weights.h"

namespace la {

struct PackedBatch {
  std::vector<int> inputs;           // [R]
  std::vector<int> targets;          // [R]; -1 = not supervised
  std::vector<int32_t> positions;    // [R]; position within its sequence
  std::vector<int64_t> seq_offsets;  // [S+1]
  int64_t supervised = 0;

  void clear();
  // Appends a sequence of tokens whose targets at positions t with t+1 < prompt_len are masked.
  void add(const std::vector<int>& tokens, int64_t prompt_len);
  int64_t rows() const { return static_cast<int64_t>(inputs.size()); }
  int64_t sequences() const { return static_cast<int64_t>(seq_offsets.size()) - 1; }
  int64_t max_seq_len() const;
};

struct AdapterGrads {
  std::vector<float> query;  // like Adapter::query
  std::vector<float> gate;   // like Adapter::gate
  void zero();
  double norm() const;  // global L2 norm
};

struct LossResult {
  double loss_sum = 0;  // sum of per-token cross-entropies over supervised targets
  int64_t tokens = 0;   // supervised targets
};

class TrainGraph {
 public:
  // max_rows: most packed rows of a micro-batch; max_seq: longest sequence. `adapter` gives the
  // shape (K, L) the graph is planned for. recompute: store only each adapted layer's input and
  // recompute the rest during the backward (activation checkpointing).
  TrainGraph(const ModelWeights& w, const Adapter& adapter, int64_t max_rows, int64_t max_seq, bool recompute);

  // Forward + masked cross-entropy; when `grads` is set, also the backward, accumulating
  // loss_scale * dLoss/dparam into grads (loss_scale = 1 / supervised tokens of the whole step).
  LossResult run(const PackedBatch& b, const Adapter& adapter, AdapterGrads* grads, float loss_scale);

  // Forward + loss without an adapter (or with one), no backward: for eval of the base model.
  LossResult evaluate(const PackedBatch& b, const Adapter* adapter);

  size_t arena_bytes() const { return arena_.size() * sizeof(float); }
  std::string memory_plan() const;  // the table of named tensors and their sizes

 private:
  struct LayerActs {  // stored per adapted layer
    float *x_in, *rstd_att, *q, *k, *v, *lse_tok, *lse_prompt, *h, *rstd_ffn, *a, *b;
  };
  LossResult forward(const PackedBatch& b, const Adapter* adapter, bool store);
  void layer_forward(int64_t l, const PackedBatch& b, float* x, const LayerActs* keep, const PromptKV* prompt);
  void backward(const PackedBatch& b, const Adapter& adapter, AdapterGrads& grads);
  void prepare_prompts(const Adapter* adapter);
  LossResult loss_and_grad(const PackedBatch& b, bool want_grad, float loss_scale);

  const ModelWeights& w_;
  const ModelConfig& c_;
  int64_t max_rows_, max_seq_, first_adapted_, n_adapted_, plen_;
  bool recompute_;
  AttentionDims dims_;
  RopeTable rope_;

  std::vector<float> arena_;
  std::vector<std::pair<std::string, size_t>> plan_;
  std::vector<LayerActs> acts_;   // [n_adapted] (recompute: only x_in set per layer)
  LayerActs work_{};              // one layer's buffers for recompute
  float *x_ = nullptr, *xb_ = nullptr, *q_ = nullptr, *k_ = nullptr, *v_ = nullptr, *att_ = nullptr;
  float *hb_ = nullptr, *hb2_ = nullptr, *x_final_ = nullptr, *rstd_final_ = nullptr, *logits_ = nullptr;
  float *dx_ = nullptr, *dh_ = nullptr, *dxn_ = nullptr, *datt_ = nullptr, *dq_ = nullptr, *dk_ = nullptr,
        *dv_ = nullptr, *da_ = nullptr, *db_ = nullptr;
  float *prompt_k_ = nullptr, *prompt_v_ = nullptr, *gamma_ = nullptr;  // [L][K][kv_dim], [L][H]
  float *dprompt_k_ = nullptr, *dprompt_v_ = nullptr, *dgamma_ = nullptr, *dpk_seq_ = nullptr, *dpv_seq_ = nullptr,
        *dgamma_seq_ = nullptr;
  float* xr_ = nullptr;     // recompute: the layer input being rebuilt
  int64_t logit_rows_ = 0;  // rows of logits computed at a time
  std::vector<int64_t> sup_rows_;  // supervised rows of the current micro-batch
};

}  // namespace la
