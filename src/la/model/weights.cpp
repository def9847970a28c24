#include "la/model/weights.h"

#include <map>
#include <unordered_map>
#include <unordered_set>

#include "la/core/mapped_file.h"
#include "la/kernels/convert.h"
#include "la/kernels/quant_dot.h"

namespace la {

namespace {
template <class Layer, class Matrix>
std::array<Matrix*, kLayerMatrixCount> matrices_of(Layer& l) {
  std::array<Matrix*, kLayerMatrixCount> m{};
  size_t n = 0;
  for (const LayerTensor& t : kLayerTensors)
    if (t.is_matrix()) m[n++] = &(l.*t.matrix);
  return m;
}
}  // namespace

std::array<WeightMatrix*, kLayerMatrixCount> layer_matrices(LayerWeights& l) {
  return matrices_of<LayerWeights, WeightMatrix>(l);
}
std::array<const WeightMatrix*, kLayerMatrixCount> layer_matrices(const LayerWeights& l) {
  return matrices_of<const LayerWeights, const WeightMatrix>(l);
}

int64_t layer_numel(const ModelConfig& c) {
  int64_t n = 0;
  for (const LayerTensor& t : kLayerTensors) n += t.numel(c);
  return n;
}

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
    for (const WeightMatrix* w : layer_matrices(l)) add(*w);
  const size_t norms = static_cast<size_t>(config.dim) * (kLayerNormCount * config.n_layers + 1) * 4;
  m["F32"] += norms;
  return {m.begin(), m.end()};
}

namespace {
template <class Weights, class F>
void for_each_packable(Weights& w, F f) {  // the matrices the pack_* functions lay out again
  for (auto& l : w.layers)
    for (auto* m : layer_matrices(l)) f(*m);
  f(w.output);
}
size_t panel_bytes(const WeightMatrix& w) {  // both layouts: 32-column panels of k-pairs
  const auto padded = [](int64_t n, int64_t k) { return static_cast<size_t>((n + 31) / 32 * 32 * ((k + 1) / 2)); };
  return (padded(w.rows, w.cols) + padded(w.cols, w.rows)) * sizeof(uint32_t);
}
}  // namespace

const Bf16Panels* ModelWeights::bf16_panels_for(const WeightMatrix& m) const {
  if (panels.empty()) return nullptr;
  const auto it = panels.find(m.data);
  if (it == panels.end() || it->second.rows != m.rows || it->second.cols != m.cols) return nullptr;
  return &it->second;
}

size_t ModelWeights::bf16_panel_bytes() const {
  size_t n = 0;
  std::unordered_set<const void*> counted;  // a matrix twice (tied storage) is packed once
  for_each_packable(*this, [&](const WeightMatrix& w) {
    if (w.type == DType::BF16 && gemm_bf16_available() && !panels.count(w.data) && counted.insert(w.data).second)
      n += panel_bytes(w);
  });
  return n;
}

size_t ModelWeights::pack_interleaved() {
  size_t added = 0;
  std::unordered_map<const void*, const void*> done;  // tied storage is packed once
  for_each_packable(*this, [&](WeightMatrix& w) {
    if (w.packed || !x8_packable(w)) return;
    if (const auto it = done.find(w.data); it != done.end()) {
      w.packed = it->second;
      return;
    }
    std::vector<uint8_t>& p = packed_bytes.emplace_back(x8_bytes(w));
    pack_x8(w, p.data());
    w.packed = done[w.data] = p.data();
    added += p.size();
    for (const auto& f : files) f->drop_pages(w.data, w.bytes());
  });
  return added;
}

size_t ModelWeights::pack_bf16_panels() {
  size_t added = 0;
  for_each_packable(*this, [&](const WeightMatrix& w) {
    if (w.type != DType::BF16 || !gemm_bf16_available() || panels.count(w.data)) return;
    const Bf16Panels& p = panels.emplace(w.data, la::pack_bf16_panels(w)).first->second;
    added += (p.nt.size() + p.nn.size()) * sizeof(uint32_t);
  });
  return added;
}

}  // namespace la
