#include "la/io/convert.h"

#include <cstring>
#include <string>
#include <vector>

#include "la/core/error.h"
#include "la/kernels/quant.h"

namespace la {

namespace {

// `bytes` of storage owned by `m`: ModelWeights keeps f32 vectors, so round up to whole floats
// (vector<float> storage is aligned for every block type, whose fields are at most 2 bytes).
void* own_bytes(ModelWeights& m, size_t bytes) {
  m.owned.emplace_back((bytes + sizeof(float) - 1) / sizeof(float), 0.0f);
  return m.owned.back().data();
}

// `type` is a converted_type(): the rows fill whole blocks.
WeightMatrix convert_matrix(ModelWeights& m, const WeightMatrix& w, DType type) {
  WeightMatrix out{type, nullptr, w.rows, w.cols};
  void* dst = own_bytes(m, out.bytes());
  convert_matrix_to(w, type, dst);
  out.data = dst;
  return out;
}

}  // namespace

DType converted_type(const WeightMatrix& w, DType type, std::optional<DType> fallback, const std::string& name,
                     const std::string& source) {
  const int64_t bs = dtype_block_size(type);
  if (w.cols % bs == 0) return type;
  if (fallback) return converted_type(w, *fallback, std::nullopt, name, source);  // as llama.cpp's quantize does
  fail("{}: cannot store {} [{} x {}] as {}: its rows of {} values are not a multiple of the {}-value block", source,
       name, w.rows, w.cols, dtype_name(type), w.cols, bs);
}

void convert_matrix_to(const WeightMatrix& w, DType type, void* dst,
                       const std::function<int64_t(int64_t)>& source_row) {
  auto* out = static_cast<uint8_t*>(dst);
  const size_t row_bytes = dtype_row_bytes(type, w.cols);
  if (w.type == type && !source_row) {
    if (w.bytes() > 0) std::memcpy(out, w.data, w.bytes());
    return;
  }
  if (w.type == type) {
    for (int64_t r = 0; r < w.rows; ++r)
      std::memcpy(out + static_cast<size_t>(r) * row_bytes, w.row_ptr(source_row(r)), row_bytes);
    return;
  }
#pragma omp parallel
  {
    std::vector<float> row(static_cast<size_t>(w.cols));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < w.rows; ++r) {
      dequantize_row(w, source_row ? source_row(r) : r, row.data());
      quantize(type, row.data(), out + static_cast<size_t>(r) * row_bytes, w.cols);
    }
  }
}

std::unique_ptr<ModelWeights> convert_weights(const ModelWeights& src, DType type, bool keep_embeddings_f32,
                                              std::optional<DType> fallback) {
  auto m = std::make_unique<ModelWeights>();
  m->config = src.config;
  m->path = src.path;
  m->format = src.format;  // where it came from (the CLI keys the GGUF vocabulary on it)
  const std::string source = src.path.empty() ? std::string("model") : src.path;
  const int64_t D = src.config.dim;
  auto norm = [&](const float* v) -> const float* { return v ? m->own_f32(DType::F32, v, D) : nullptr; };
  auto conv = [&](const WeightMatrix& w, DType t, const std::string& name) {
    return convert_matrix(*m, w, converted_type(w, t, fallback, name, source));
  };

  const DType emb_type = keep_embeddings_f32 ? DType::F32 : type;
  m->tok_embeddings = conv(src.tok_embeddings, emb_type, "tok_embeddings");
  m->layers.resize(src.layers.size());
  for (size_t i = 0; i < src.layers.size(); ++i) {
    const LayerWeights& s = src.layers[i];
    LayerWeights& d = m->layers[i];
    for (const LayerTensor& t : kLayerTensors) {
      if (t.is_matrix())
        d.*t.matrix = conv(s.*t.matrix, type, fmt::format("layers.{}.{}", i, t.name));
      else
        d.*t.norm = norm(s.*t.norm);
    }
  }
  m->rms_final = norm(src.rms_final);
  const bool tied = src.output.data == src.tok_embeddings.data;
  m->output = tied ? m->tok_embeddings : conv(src.output, type, "output");
  return m;
}

std::unique_ptr<ModelWeights> dequantized_copy(const ModelWeights& src) {
  return convert_weights(src, DType::F32);
}

}  // namespace la
