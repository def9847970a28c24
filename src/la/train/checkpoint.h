// Resumable training state (SPEC §5): the adapter, AdamW moments, the step, and what fixes the
// data order (seed, shuffle, batch size, example count: the order of every epoch is a pure
// function of these, see epoch_order). There is no other RNG state in training. One safetensors
// file, written atomically.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "la/model/adapter.h"
#include "la/train/optimizer.h"

namespace la {

struct TrainState {
  bool full = false;  // full training: `model` is trained, `adapter` unused
  Adapter adapter;
  ParamSet model;      // every weight of the model (model/model_params.h), full training only
  AdamWState moments;  // m and v: flat twins of the trained parameters (laid out by their table)
  int64_t step = 0;    // optimizer steps completed
  uint64_t seed = 0;
  bool shuffle = true;
  int64_t batch_size = 0;
  int64_t examples = 0;
  double last_loss = 0;
  // What else must match for a resume to continue the same run: the training data (a hash of
  // its tokens) and the hyper-parameters that shape the updates, each as text
  // ("lr" -> "0.01"). Checked name by name on resume; stored as checkpoint.setting.<name>.
  std::map<std::string, std::string> settings;
};

// The trained parameters: the model's (full) or the adapter's.
inline ParamSet& trained(TrainState& s) {
  return s.full ? s.model : s.adapter.params;
}
inline const ParamSet& trained(const TrainState& s) {
  return s.full ? s.model : s.adapter.params;
}

// A full-training checkpoint stores each row of the model table as model.<row>; loading one
// needs that table (`model_table`, from the model's config) and fails without it.
void save_checkpoint(const TrainState& s, const std::string& path);
TrainState load_checkpoint(const std::string& path, const ParamTable* model_table = nullptr);

}  // namespace la
