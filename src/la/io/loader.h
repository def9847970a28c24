// Loads a base model from any supported file, detecting the format by content:
//   - a directory with config.json + model.safetensors (or model.safetensors.index.json shards)
//   - a directory with params.json + consolidated.NN.pth (Meta; several: model-parallel shards)
//   - a llama2.c checkpoint: legacy 7-int header, or the 256-byte "ak42" version-1 header
// Weights are mapped, not copied, when the stored type is used as is.
#pragma once
#include <memory>
#include <string>

#include "la/model/weights.h"
#include "la/tokenizer/bpe_tokenizer.h"

namespace la {

std::unique_ptr<ModelWeights> load_model(const std::string& path);

// Writes a whole model, by the extension of `path`: ".gguf" (matrices in their stored types, and
// `vocab` as the tokenizer when given) or ".bin" (llama2.c, f32; its tokenizer is a file of its
// own). Anything else is an error. Atomic.
void save_model(const ModelWeights& m, const BpeVocab* vocab, const std::string& path);

std::unique_ptr<ModelWeights> load_llama2c(const std::string& path);
std::unique_ptr<ModelWeights> load_hf_directory(const std::string& dir);
std::unique_ptr<ModelWeights> load_meta_directory(const std::string& dir);
// A directory with params.json and no config.json: Meta's layout (load_meta_directory).
bool is_meta_directory(const std::string& dir);

// Hugging Face stores q_proj/k_proj rows permuted for the rotate-half RoPE convention:
// HF row (h*hd + c*hd/2 + i) = Meta row (h*hd + 2i + c). These move rows between the two
// layouts (row length `cols`, `n_heads` heads of `head_dim` rows each).
void permute_meta_to_hf(const float* src, float* dst, int64_t n_heads, int64_t head_dim, int64_t cols);
void permute_hf_to_meta(const float* src, float* dst, int64_t n_heads, int64_t head_dim, int64_t cols);
// The same one row at a time, for any stored type: the HF row that becomes Meta row `r`.
int64_t hf_row_of_meta_row(int64_t r, int64_t head_dim);

}  // namespace la
