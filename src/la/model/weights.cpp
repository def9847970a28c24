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

namespace {
template <class Weights, class F>
void for_each_packable(Weights& w, F f) {  // the matrices pack_bf16_panels() packs
  for (auto& l : w.layers)
    for (auto* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3}) f(*m);
  f(w.output);
}
bool wants_panels(const WeightMatrix& w) { return w.type == DType::BF16 && !w.bf16_panels && gemm_bf16_available(); }
size_t panel_bytes(const WeightMatrix& w) {  // both layouts: 32-column panels of k-pairs
  const auto padded = [](int64_t n, int64_t k) { return static_cast<size_t>((n + 31) / 32 * 32 * ((k + 1) / 2)); };
  return (padded(w.rows, w.cols) + padded(w.cols, w.rows)) * sizeof(uint32_t);
}
}  // namespace

size_t ModelWeights::bf16_panel_bytes() const {
  size_t n = 0;
  for_each_packable(*this, [&](const WeightMatrix& w) { n += wants_panels(w) ? panel_bytes(w) : 0; });
  return n;
}

size_t ModelWeights::pack_bf16_panels() {
  size_t added = 0;
  for_each_packable(*this, [&](WeightMatrix& w) {
    if (!wants_panels(w)) return;
    panels.push_back(la::pack_bf16_panels(w));
    w.bf16_panels = &panels.back();
    added += (panels.back().nt.size() + panels.back().nn.size()) * sizeof(uint32_t);
  });
  return added;
}

}  // namespace la
