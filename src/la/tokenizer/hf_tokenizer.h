// Hugging Face `tokenizer.json` (the `tokenizers` library's file) for byte-level BPE models:
// Llama-3, GPT-2, Qwen2-style vocabularies.
#pragma once
#include <string>
#include <string_view>

#include "la/tokenizer/bpe_tokenizer.h"

namespace la {

// Reads a tokenizer.json: model BPE (vocab, merges as "a b" strings or [a, b] pairs,
// ignore_merges), added_tokens (special -> Control, others -> UserDefined), the pre-tokenizer
// (ByteLevel, Split with behaviour Isolated, Digits, or a Sequence of them), and BOS from the
// post-processor's template. EOS comes from `tokenizer_config.json` beside `path` when there is
// one, else from the usual end-of-text pieces. What we do not implement (a normaliser, another
// model type, byte fallback, a prefix space) is a one-line la::Error naming `path`: a silent
// difference would give wrong ids.
BpeVocab read_hf_tokenizer_json(std::string_view json_text, const std::string& path);

}  // namespace la
