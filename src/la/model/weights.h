// The frozen base model: every matrix a view into its file (mmap) in the stored type, small
// vectors (norm weights) as f32. Inference and training read the same object.
#pragma once
#include <array>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "la/core/mapped_file.h"
#include "la/kernels/gemm.h"
#include "la/model/config.h"
#include "la/tensor/dtype.h"

namespace la {

struct LayerWeights {
  const float* rms_att = nullptr;  // [dim]
  const float* rms_ffn = nullptr;  // [dim]
  WeightMatrix wq, wk, wv, wo;     // [dim,dim] [kv_dim,dim] [kv_dim,dim] [dim,dim]
  WeightMatrix w1, w2, w3;         // [hidden,dim] [dim,hidden] [hidden,dim]
};

// A model width a layer tensor's shape is given in.
enum class LayerDim : uint8_t { Model, KV, Hidden };  // dim, kv_dim(), hidden_dim
inline int64_t layer_dim(LayerDim d, const ModelConfig& c) {
  return d == LayerDim::Model ? c.dim : d == LayerDim::KV ? c.kv_dim() : c.hidden_dim;
}

// One tensor of a layer: a norm vector [dim] (`norm` set) or a matrix [rows, cols] (`matrix`
// set). kLayerTensors below is the one list of them; loaders, writers and loops over the
// matrices read it instead of naming the members.
struct LayerTensor {
  const char* name;  // ours: the member's name ("wq"), in messages as "layers.{i}.wq"
  const float* LayerWeights::*norm = nullptr;
  WeightMatrix LayerWeights::*matrix = nullptr;
  LayerDim out = LayerDim::Model, in = LayerDim::Model;  // a matrix's rows, cols
  bool roped = false;  // its rows are RoPE'd (q, k): Hugging Face stores them permuted (loader.h)

  constexpr LayerTensor(const char* n, const float* LayerWeights::*v) : name(n), norm(v) {}
  constexpr LayerTensor(const char* n, WeightMatrix LayerWeights::*m, LayerDim rows, LayerDim cols, bool rope = false)
      : name(n), matrix(m), out(rows), in(cols), roped(rope) {}

  constexpr bool is_matrix() const { return matrix != nullptr; }
  int64_t rows(const ModelConfig& c) const { return is_matrix() ? layer_dim(out, c) : c.dim; }
  int64_t cols(const ModelConfig& c) const { return is_matrix() ? layer_dim(in, c) : 1; }
  int64_t numel(const ModelConfig& c) const { return rows(c) * cols(c); }
};

// The tensors of a layer in the order of the block (pre-norm attention, then the SwiGLU FFN):
//   rms_att, q = wq·x, k = wk·x, v = wv·x, x += wo·att, rms_ffn, x += w2(silu(w1·x) * w3·x).
// llama2.c and GGUF files store them in this order too (io/tensor_names.h).
inline constexpr std::array<LayerTensor, 9> kLayerTensors = {{
    {"rms_att", &LayerWeights::rms_att},
    {"wq", &LayerWeights::wq, LayerDim::Model, LayerDim::Model, true},
    {"wk", &LayerWeights::wk, LayerDim::KV, LayerDim::Model, true},
    {"wv", &LayerWeights::wv, LayerDim::KV, LayerDim::Model},
    {"wo", &LayerWeights::wo, LayerDim::Model, LayerDim::Model},
    {"rms_ffn", &LayerWeights::rms_ffn},
    {"w1", &LayerWeights::w1, LayerDim::Hidden, LayerDim::Model},
    {"w2", &LayerWeights::w2, LayerDim::Model, LayerDim::Hidden},
    {"w3", &LayerWeights::w3, LayerDim::Hidden, LayerDim::Model},
}};
// The index of a tensor in kLayerTensors by its name (a compile-time error for a wrong name).
constexpr size_t layer_tensor_index(std::string_view name) {
  for (size_t i = 0; i < kLayerTensors.size(); ++i)
    if (std::string_view(kLayerTensors[i].name) == name) return i;
  throw "no such layer tensor";
}
inline constexpr size_t kLayerMatrixCount = [] {
  size_t n = 0;
  for (const LayerTensor& t : kLayerTensors) n += t.is_matrix();
  return n;
}();
inline constexpr size_t kLayerNormCount = kLayerTensors.size() - kLayerMatrixCount;
static_assert(sizeof(LayerWeights) == kLayerNormCount * sizeof(const float*) + kLayerMatrixCount * sizeof(WeightMatrix),
              "a LayerWeights member is missing from kLayerTensors");

// The layer's matrices in kLayerTensors order: for (WeightMatrix* w : layer_matrices(l)) ...
std::array<WeightMatrix*, kLayerMatrixCount> layer_matrices(LayerWeights& l);
std::array<const WeightMatrix*, kLayerMatrixCount> layer_matrices(const LayerWeights& l);
// Values stored per layer (norms and matrices).
int64_t layer_numel(const ModelConfig& c);

struct ModelWeights {
  ModelConfig config;
  WeightMatrix tok_embeddings;  // [vocab, dim]
  std::vector<LayerWeights> layers;
  const float* rms_final = nullptr;  // [dim]
  WeightMatrix output;               // [vocab, dim]; same storage as tok_embeddings when tied

  std::string path;    // where it was loaded from
  std::string format;  // "llama2c", "llama2c-v1", "hf-safetensors", ...

  // Keeps mappings alive and owns vectors converted to f32.
  std::vector<std::shared_ptr<MappedFile>> files;
  std::deque<std::vector<float>> owned;
  // Matrices assembled at load in their stored type (a sharded Meta checkpoint's pieces joined),
  // which then live here instead of in a mapping.
  std::deque<std::vector<uint8_t>> assembled;
  // Pre-packed forms of the BF16 matrices by their data, see pack_bf16_panels().
  std::unordered_map<const void*, Bf16Panels> panels;

  // An f32 copy of `n` stored elements, kept alive by this object.
  const float* own_f32(DType t, const void* src, int64_t n);
  // Bytes of matrix storage by type (for `info`): e.g. {"F32": 1056512}.
  std::vector<std::pair<std::string, size_t>> bytes_by_type() const;
  // Lays every BF16 layer matrix and the output head out once more as the bf16 GEMM's panels
  // (gemm.h's Bf16Panels) and keeps them here: for training with bf16 arithmetic, whose every
  // step would otherwise repack the frozen base. Twice those matrices' bytes of memory; a no-op
  // without AVX512-BF16 or BF16 matrices. Returns the bytes added; bf16_panel_bytes() says
  // beforehand what it would add.
  size_t pack_bf16_panels();
  size_t bf16_panel_bytes() const;
  // Lays every Q4_0 and Q4_K layer matrix and the output head (rows a multiple of 8) out once
  // more, interleaved by 8 rows (kernels/quant_dot.h's x8 layouts), and points their
  // WeightMatrix::packed at it: for inference, whose kernels then sum 8 weight rows at a time. The stored copy stays
  // readable (the exact products of training and eval read it), but the pages of a mapped file are dropped from memory
  // once repacked, so the process holds the weights about once. Returns the bytes added; a no-op on a second call.
  size_t pack_interleaved();
  std::deque<std::vector<uint8_t>> packed_bytes;  // pack_interleaved's copies
  // The panels packed from m (looked up by m.data; the same rows and cols), nullptr when none:
  // the last argument of matmul_nt / matmul_nn, e.g. matmul_nt(y, x, lw.wq, M, bf16_panels_for(lw.wq)).
  const Bf16Panels* bf16_panels_for(const WeightMatrix& m) const;
};

}  // namespace la
