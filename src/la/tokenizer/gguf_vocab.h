// The vocabulary embedded in a GGUF file (tokenizer.ggml.*), as a SentencePiece-style BPE.
#pragma once
#include "la/formats/gguf.h"
#include "la/tokenizer/bpe_tokenizer.h"

namespace la {

// Reads tokenizer.ggml.model ("llama": SentencePiece-style; "gpt2": byte-level BPE with .merges
// and .pre), tokens, scores, token_type, bos/eos/unk ids. Throws la::Error naming the file when a
// field is missing, the arrays disagree in length, or the model type or pre-tokenizer is one we
// do not implement.
BpeVocab read_gguf_vocab(const GgufFile& f);

// Writes `vocab` as tokenizer.ggml.* keys (model "llama", or "gpt2" for a byte-level one).
void write_gguf_vocab(GgufWriter& w, const BpeVocab& vocab);

}  // namespace la
