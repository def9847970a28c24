#include "la/model/weights.h"

#include <map>

namespace la {

const float* ModelWeights::own_f32(DType t, const void* src, int64_t n) {
  owned.emplace_back(static_cast<size_t>(n));
  convert_to_f32(t, src, owned.back().data(), n);
  return owned.back().data();
}

std::vector<std::pair<std::string, size_t>> ModelWeights::bytes_by_type() const {
  std::map<std::string, size_t> m;
  auto add = [&](const WeightMatrix& w) { m[dtype_name(w.type)] += w.bytes(); };
  add(tok_embeddings);
  if (output.data != tok_embeddings.data) add(output);
  for (const auto& l : layers)
    for (const WeightMatrix* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3}) add(*w);
  const size_t norms = static_cast<size_t>(config.dim) * (2 * config.n_layers + 1) * 4;
  m["F32"] += norms;
  return {m.begin(), m.end()};
}

}  // namespace la
