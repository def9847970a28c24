// Training-time driver of the LLaMA block (model/block.h): forward with stored activations and
// the backward, in one of two modes.
//  - Adapter (SPEC §2): the base is frozen and only the adapter gets gradients: backward computes
//    activation gradients through the frozen matrices (dX = dY·W, never dW) from the loss down to
//    the lowest adapted layer and stops there. Layers below it run forward only and store nothing.
//  - Full (SPEC §12): every weight gets its gradient (model/model_params.h's table): every layer
//    stores its activations (or, with recompute, its input) and the backward runs to the
//    embedding.
//
// A micro-batch is packed: each example contributes len-1 rows (inputs tokens[0..n-2], targets
// tokens[1..n-1]), sequences laid end to end, so no padding is ever computed. Attention runs per
// sequence.
//
// Memory is planned once in the constructor (llm.c style): one arena carved into named tensors,
// nothing allocated per step.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "la/kernels/ops.h"
#include "la/model/adapter.h"
#include "la/model/batch.h"
#include "la/model/block.h"
#include "la/model/weights.h"

namespace la {

struct PackedBatch {
  std::vector<int> inputs;           // [R]
  std::vector<int> targets;          // [R]; -1 = not supervised
  std::vector<int32_t> positions;    // [R]; position within its sequence
  std::vector<int64_t> seq_offsets;  // [S+1]
  // [S]: each sequence's image features (the multi-scale CLIP features, SPEC §8) or null. They
  // must stay alive while the batch is used.
  std::vector<const float*> images;
  int64_t supervised = 0;

  void clear();
  // Appends a sequence of tokens whose targets at positions t with t+1 < prompt_len are masked,
  // with the features of its image (or none).
  void add(const std::vector<int>& tokens, int64_t prompt_len, const float* image = nullptr);
  bool has_images() const;
  int64_t rows() const { return static_cast<int64_t>(inputs.size()); }
  int64_t sequences() const { return static_cast<int64_t>(seq_offsets.size()) - 1; }
  int64_t max_seq_len() const;
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
  // The full-training graph: gradients of every weight of `w` (which must be F32: a model_view).
  struct Full {};
  TrainGraph(Full, const ModelWeights& w, int64_t max_rows, int64_t max_seq, bool recompute);

  // Forward + masked cross-entropy; when `grads` is set, also the backward, accumulating
  // loss_scale * dLoss/dparam into grads (loss_scale = 1 / supervised tokens of the whole step).
  // `grads` is laid out by the adapter's parameter table (adapter.params.zeros_like()), or for the
  // full graph by model_param_table (and `adapter` is empty).
  LossResult run(const PackedBatch& b, const Adapter& adapter, ParamSet* grads, float loss_scale);

  // Forward + loss without an adapter (or with one), no backward: for eval of the base model.
  LossResult evaluate(const PackedBatch& b, const Adapter* adapter);

  // The logits of every row of the batch ([rows, vocab] into `out`), with or without an adapter:
  // the training driver's view of the same function inference computes.
  void logits(const PackedBatch& b, const Adapter* adapter, float* out);

  bool full() const { return full_; }
  size_t arena_bytes() const { return arena_.size() * sizeof(float); }
  std::string memory_plan() const;  // the table of named tensors and their sizes

 private:
  TrainGraph(const ModelWeights& w, const Adapter& adapter, int64_t max_rows, int64_t max_seq, bool recompute,
             bool full);
  void forward(const PackedBatch& b, const Adapter* adapter, bool store);
  void backward(const PackedBatch& b, const Adapter& adapter, ParamSet& grads);
  LossResult loss_and_grad(const PackedBatch& b, bool want_grad, float loss_scale, ParamSet* full_grads);
  void backward_full(const PackedBatch& b, ParamSet& grads);
  // Stored layer l's activations for its backward (with recompute: rebuilt from its input).
  const BlockActs& layer_acts(int64_t l);
  void check_adapter(const Adapter* adapter, const char* what) const;

  const ModelWeights& w_;
  const ModelConfig& c_;
  int64_t max_rows_, max_seq_, first_adapted_, n_adapted_, plen_;
  bool recompute_, full_;
  int64_t first_stored_, n_stored_;  // the layers whose activations the backward needs
  RopeTable rope_;
  BlockContext ctx_;
  std::unique_ptr<AdapterPrompts> prompts_;  // the adapter's current prompts, projected per run
  // Multi-modal adapters: per sequence of the current micro-batch with an image, its prompts with
  // the image row (null otherwise), and fc1's output [W] for the backward.
  std::vector<std::unique_ptr<AdapterPrompts>> image_prompts_;
  std::vector<float> image_pre_;
  void project_images(const PackedBatch& b, const Adapter& adapter);
  Batch batch_;  // the packed micro-batch as the block sees it

  std::vector<float> arena_;
  std::vector<std::pair<std::string, size_t>> plan_;
  std::vector<BlockActs> acts_;  // [n_stored] (recompute: only x_in set per layer)
  BlockActs work_{};             // one layer's buffers for recompute
  BlockScratch scratch_{};
  BlockGradScratch gscratch_{};
  float *x_ = nullptr, *x_final_ = nullptr, *rstd_final_ = nullptr, *logits_ = nullptr, *dx_ = nullptr;
  float *dprompt_k_ = nullptr, *dprompt_v_ = nullptr, *dgamma_ = nullptr;
  float* xr_ = nullptr;            // recompute: the layer input being rebuilt
  int64_t logit_rows_ = 0;         // rows of logits computed at a time
  std::vector<int64_t> sup_rows_;  // supervised rows of the current micro-batch
};

}  // namespace la
