#include "la/model/model_params.h"

#include <cstring>

#include "la/core/error.h"
#include "la/kernels/convert.h"

namespace la {

namespace {
std::string layer_row(const LayerTensor& t) {
  return std::string("layers.") + t.name;
}
}  // namespace

ParamTable model_param_table(const ModelConfig& c) {
  ParamTable t;
  t.add("tok_embeddings", {c.vocab_size, c.dim});
  for (const LayerTensor& lt : kLayerTensors) {
    if (lt.is_matrix())
      t.add(layer_row(lt), {c.n_layers, lt.rows(c), lt.cols(c)});
    else
      t.add(layer_row(lt), {c.n_layers, c.dim});
  }
  t.add("rms_final", {c.dim});
  if (!c.tied_classifier) t.add("output", {c.vocab_size, c.dim});
  return t;
}

size_t layer_tensor_offset(const ParamTable& table, const LayerTensor& t, const ModelConfig& c, int64_t l) {
  return table.get(layer_row(t)).offset + static_cast<size_t>(l) * static_cast<size_t>(t.numel(c));
}

ParamSet model_params(const ModelWeights& w) {
  const ModelConfig& c = w.config;
  ParamSet p(model_param_table(c));
  auto matrix = [&](const WeightMatrix& m, float* dst) {
    for (int64_t r = 0; r < m.rows; ++r) dequantize_row(m, r, dst + r * m.cols);
  };
  matrix(w.tok_embeddings, p["tok_embeddings"].data());
  for (int64_t l = 0; l < c.n_layers; ++l)
    for (const LayerTensor& t : kLayerTensors) {
      float* dst = p.values().data() + layer_tensor_offset(p.table(), t, c, l);
      const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
      if (t.is_matrix())
        matrix(lw.*t.matrix, dst);
      else
        std::memcpy(dst, lw.*t.norm, static_cast<size_t>(c.dim) * sizeof(float));
    }
  std::memcpy(p["rms_final"].data(), w.rms_final, static_cast<size_t>(c.dim) * sizeof(float));
  if (!c.tied_classifier) matrix(w.output, p["output"].data());
  return p;
}

std::unique_ptr<ModelWeights> model_view(const ModelConfig& c, const ParamSet& p) {
  if (!(p.table() == model_param_table(c))) fail("model parameters are not laid out for {}", c.shape_string());
  auto m = std::make_unique<ModelWeights>();
  m->config = c;
  m->format = "parameters";
  const float* base = p.values().data();
  auto matrix = [](const float* data, int64_t rows, int64_t cols) {
    return WeightMatrix{DType::F32, data, rows, cols};
  };
  m->tok_embeddings = matrix(p["tok_embeddings"].data(), c.vocab_size, c.dim);
  m->layers.resize(static_cast<size_t>(c.n_layers));
  for (int64_t l = 0; l < c.n_layers; ++l)
    for (const LayerTensor& t : kLayerTensors) {
      const float* data = base + layer_tensor_offset(p.table(), t, c, l);
      LayerWeights& lw = m->layers[static_cast<size_t>(l)];
      if (t.is_matrix())
        lw.*t.matrix = matrix(data, t.rows(c), t.cols(c));
      else
        lw.*t.norm = data;
    }
  m->rms_final = p["rms_final"].data();
  m->output = c.tied_classifier ? m->tok_embeddings : matrix(p["output"].data(), c.vocab_size, c.dim);
  return m;
}

}  // namespace la
