#include "la/io/tensor_names.h"

#include <fmt/format.h>

#include "la/core/error.h"

namespace la {

std::string TensorNames::layer_tensor(int64_t i, const LayerTensor& t) const {
  for (size_t k = 0; k < kLayerTensors.size(); ++k)
    if (&kLayerTensors[k] == &t) return fmt::format("{}{}.{}", layer_prefix, i, layer[k]);
  fail("internal error: layer tensor '{}' is not an entry of kLayerTensors", t.name);
}

std::vector<Llama2cSection> llama2c_order(bool version1) {
  std::vector<Llama2cSection> order;
  auto layer_tensors = [&](bool norms, bool matrices) {
    for (const LayerTensor& t : kLayerTensors)
      if (t.is_matrix() ? matrices : norms) order.push_back({Llama2cSection::Layer, &t});
  };
  if (version1) {
    layer_tensors(true, false);
    order.push_back({Llama2cSection::FinalNorm});
    order.push_back({Llama2cSection::TokenEmbeddings});
    layer_tensors(false, true);
  } else {
    order.push_back({Llama2cSection::TokenEmbeddings});
    layer_tensors(true, true);
    order.push_back({Llama2cSection::FinalNorm});
    order.push_back({Llama2cSection::RopeTables});
  }
  order.push_back({Llama2cSection::Output});
  return order;
}

}  // namespace la
