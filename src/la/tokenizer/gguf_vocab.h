// The vocabulary embedded in a GGUF file (tokenizer.ggml.*), as a SentencePiece-style BPE.
#pragma once
#include "la/formats/gguf.h"
#include "la/tokenizer/bpe_tokenizer.h"

namespace la {

// Reads tokenizer.ggml.model (must be "llama"), tokens, scores, token_type, bos/eos/unk ids.
// Throws la::Error naming the file when a field is missing, the arrays disagree in length, or
// the model type is one we do not implement.
BpeVocab read_gguf_vocab(const GgufFile& f);

// Writes `vocab` as tokenizer.ggml.* keys (model "llama").
void write_gguf_vocab(GgufWriter& w, const BpeVocab& vocab);

}  // namespace la
