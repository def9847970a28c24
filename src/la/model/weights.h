// The frozen base model: every matrix a view into its file (mmap) in the stored type, small
// vectors (norm weights) as f32. Inference and training read the same object.
#pragma once
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "la/core/mapped_file.h"
#include "la/kernels/dtype.h"
#include "la/kernels/gemm.h"
#include "la/model/config.h"

namespace la {

struct LayerWeights {
  const float* rms_att = nullptr;  // [dim]
  const float* rms_ffn = nullptr;  // [dim]
  WeightMatrix wq, wk, wv, wo;     // [dim,dim] [kv_dim,dim] [kv_dim,dim] [dim,dim]
  WeightMatrix w1, w2, w3;         // [hidden,dim] [dim,hidden] [hidden,dim]
};

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
  std::deque<Bf16Panels> panels;  // pre-packed forms, see pack_bf16_panels()

  // An f32 copy of `n` stored elements, kept alive by this object.
  const float* own_f32(DType t, const void* src, int64_t n);
  // Bytes of matrix storage by type (for `info`): e.g. {"F32": 1056512}.
  std::vector<std::pair<std::string, size_t>> bytes_by_type() const;
  // Lays every BF16 layer matrix and the output head out once more as the bf16 GEMM's panels
  // (gemm.h's Bf16Panels) and points them there: for training with bf16 arithmetic, whose every
  // step would otherwise repack the frozen base. Twice those matrices' bytes of memory; a no-op
  // without AVX512-BF16 or BF16 matrices. Returns the bytes added; bf16_panel_bytes() says
  // beforehand what it would add.
  size_t pack_bf16_panels();
  size_t bf16_panel_bytes() const;
};

}  // namespace la
