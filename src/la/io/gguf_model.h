// LLaMA models in GGUF files: reading (zero-copy, any supported tensor type) and writing.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "la/model/weights.h"
#include "la/tokenizer/bpe_tokenizer.h"

namespace la {

std::unique_ptr<ModelWeights> load_gguf(const std::string& path);

// Writes `m` (matrices in their stored types) as GGUF v3 with the llama.* metadata and, when
// given, the vocabulary as tokenizer.ggml.*, and general.file_type (llama.cpp's llama_ftype of
// the type most matrices are in). GGUF keeps q/k in the Meta (interleaved-RoPE) layout:
// rotate-half (Hugging Face) rows are moved back on the way. Atomic.
void save_gguf(const ModelWeights& m, const BpeVocab* vocab, const std::string& path, const std::string& name);

// `convert`: the same file with every matrix stored as `type` (norms stay f32; a matrix whose
// rows do not fill whole `type` blocks as `fallback`, an error without one) -- the bytes of
// save_gguf(*convert_weights(m, type, false, fallback), ...). Each matrix is converted only when
// the file is written, one at a time, so beyond `m` (usually a mapping of its file) it holds one
// converted matrix, never the whole converted model.
void convert_to_gguf(const ModelWeights& m, DType type, std::optional<DType> fallback, const BpeVocab* vocab,
                     const std::string& path, const std::string& name);

}  // namespace la
