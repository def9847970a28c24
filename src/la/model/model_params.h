// Every weight of a base model as rows of a parameter table (model/params.h), for full-parameter
// training (SPEC §12): the optimizer, the gradient norm, clipping and checkpoints iterate these
// rows as they do an adapter's. Rows, in file order:
//   "tok_embeddings"  [vocab, dim]
//   "layers.<t>"      [n_layers, ...] for each t of kLayerTensors (rms_att [L, dim], wq [L, dim,
//                     dim], ...): layer l's tensor is slice l
//   "rms_final"       [dim]
//   "output"          [vocab, dim]     (absent when the classifier is tied to the embedding)
// A ModelWeights view over such a buffer (model_view) is what the training graph reads, so an
// update of the buffer is an update of the model.
#pragma once
#include <memory>

#include "la/model/params.h"
#include "la/model/weights.h"

namespace la {

ParamTable model_param_table(const ModelConfig& c);
// The weights of `w` as f32 values laid out by model_param_table(w.config) (quantised and
// half-precision matrices are converted).
ParamSet model_params(const ModelWeights& w);
// A model whose every tensor points into `p` (laid out by model_param_table(c)): F32 matrices,
// the output head the embedding's storage when tied. `p` must outlive it and not be resized.
std::unique_ptr<ModelWeights> model_view(const ModelConfig& c, const ParamSet& p);

// Where layer `l`'s tensor `t` (kLayerTensors) lies in a buffer laid out by model_param_table.
size_t layer_tensor_offset(const ParamTable& table, const LayerTensor& t, const ModelConfig& c, int64_t l);

}  // namespace la
