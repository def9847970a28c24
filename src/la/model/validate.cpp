#include "la/model/validate.h"

#include "la/core/error.h"
#include "la/kernels/convert.h"

namespace la {

namespace {

void check(const ModelWeights& w, const std::string& name, DType t, const void* data, int64_t n) {
  if (!data || n <= 0) return;
  if (const int64_t i = first_non_finite(t, data, n); i >= 0)
    fail("{}: tensor {} holds NaN or infinite values (element {}{})", w.path, name, i,
         dtype_is_quantized(t) ? ", a block scale" : "");
}

}  // namespace

void check_finite_weights(const ModelWeights& w) {
  const ModelConfig& c = w.config;
  check(w, "tok_embeddings", w.tok_embeddings.type, w.tok_embeddings.data, w.tok_embeddings.numel());
  if (w.output.data != w.tok_embeddings.data) check(w, "output", w.output.type, w.output.data, w.output.numel());
  check(w, "rms_final", DType::F32, w.rms_final, c.dim);
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const LayerWeights& lw = w.layers[l];
    for (const LayerTensor& t : kLayerTensors) {
      const std::string name = fmt::format("layers.{}.{}", l, t.name);
      if (t.is_matrix()) {
        const WeightMatrix& m = lw.*(t.matrix);
        check(w, name, m.type, m.data, m.numel());
      } else {
        check(w, name, DType::F32, lw.*(t.norm), c.dim);
      }
    }
  }
}

}  // namespace la
