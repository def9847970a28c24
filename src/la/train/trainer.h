// The fine-tuning loop (SPEC §3): micro-batches accumulated into optimizer steps, loss averaged
// over every supervised token of the step, AdamW, the paper's schedule, checkpoints, metrics,
// held-out evaluation. Also dataset evaluation (the `eval` command).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "la/data/dataset.h"
#include "la/model/adapter.h"
#include "la/model/train_graph.h"
#include "la/model/weights.h"
#include "la/tokenizer/bpe_tokenizer.h"
#include "la/train/optimizer.h"

namespace la {

struct FinetuneOptions {
  // Full-parameter training (SPEC §12): every weight of the base is trained and `out` gets the
  // whole model (.gguf, with `vocab`'s tokenizer, or llama2.c .bin); the adapter options are
  // unused. Otherwise (the default) the base is frozen and `out` gets the adapter.
  bool full = false;
  const BpeVocab* vocab = nullptr;
  std::string out;           // final adapter (.safetensors) or, with `full`, model
  std::string checkpoint;    // where --save-every writes (default: out + ".ckpt")
  std::string init_adapter;  // start from these weights (K, L, gate mode from the file)
  std::string resume;        // training checkpoint to continue
  std::string metrics;       // JSONL, one object per optimizer step
  int64_t adapter_len = 10;
  int64_t adapter_layers = -1;  // default: min(30, n_layers)
  GateMode gate_mode = GateMode::Tanh;
  // Multi-modal (SPEC §8): a new adapter gets this visual projection (fc2 zero); an
  // --init-adapter without one gets it added; one with another shape is an error.
  VisualSpec visual;
  int64_t epochs = 5;
  int64_t batch_size = 32;
  int64_t micro_batch_size = 8;
  float lr = -1;  // absolute; <0: blr * batch / 256
  float blr = 9e-3f;
  float min_lr = 0;
  double warmup_epochs = 2;
  int64_t warmup_steps = -1;
  Schedule schedule = Schedule::Cosine;
  int64_t steps = -1;  // stop after this many optimizer steps (counted from 0, across resumes)
  float weight_decay = 0.02f;
  float grad_clip = 0;
  uint64_t seed = 0;
  bool shuffle = true;
  int64_t save_every = 0;
  int64_t eval_every = 0;
  bool recompute = false;
};

struct StepMetrics {
  int64_t step = 0;  // 1-based, after the update
  double epoch = 0;
  float lr = 0;
  double loss = 0;
  double grad_norm = 0;
  int64_t tokens = 0;      // tokens processed in this step (all positions)
  int64_t supervised = 0;  // supervised targets in this step
  double tokens_per_s = 0;
  double elapsed_s = 0;
  double val_loss = -1;  // < 0: not evaluated at this step
};

struct FinetuneResult {
  Adapter adapter;
  ParamSet model;            // full training: every weight, laid out by model_param_table
  bool interrupted = false;  // stopped early by should_stop; `checkpoint` resumes it
  std::string checkpoint;
  int64_t steps_done = 0;
  double first_loss = 0, last_loss = 0;
  std::vector<StepMetrics> history;
};

// What the loop reports as it goes: `log` gets human-readable lines (the plan, evaluations);
// `on_step` the metrics of each optimizer step with the step count of the whole run (the CLI
// draws its progress from these).
struct TrainerCallbacks {
  std::function<void(const std::string&)> log;
  std::function<void(const StepMetrics&, int64_t total_steps)> on_step;
  // Read at every step boundary: true stops the run there, after writing a checkpoint
  // (FinetuneResult::interrupted; the final adapter is not written).
  std::function<bool()> should_stop;
};

// Runs the whole fine-tune.
FinetuneResult finetune(const ModelWeights& w, const TokenizedDataset& train, const TokenizedDataset* val,
                        const FinetuneOptions& o, const TrainerCallbacks& cb);

struct EvalResult {
  double loss = 0;  // mean masked cross-entropy over all supervised tokens
  int64_t tokens = 0;
  int64_t examples = 0;
};

// Masked cross-entropy over a whole dataset (micro-batches of similar length, no shuffling).
EvalResult evaluate_dataset(const ModelWeights& w, const TokenizedDataset& data, const Adapter* adapter,
                            int64_t micro_batch_size);
EvalResult evaluate_dataset(TrainGraph& graph, const TokenizedDataset& data, const Adapter* adapter,
                            int64_t micro_batch_size);

}  // namespace la
