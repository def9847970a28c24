// LLaMA models in GGUF files: reading (zero-copy, any supported tensor type) and writing.
#pragma once
#include <memory>
#include <string>

#include "la/model/weights.h"
#include "la/tokenizer/bpe_tokenizer.h"

namespace la {

std::unique_ptr<ModelWeights> load_gguf(const std::string& path);

// Writes `m` (matrices in their stored types, Meta/interleaved q/k layout) as GGUF v3 with the
// llama.* metadata and, when given, the vocabulary as tokenizer.ggml.*. Atomic.
void save_gguf(const ModelWeights& m, const BpeVocab* vocab, const std::string& path, const std::string& name);

}  // namespace la
