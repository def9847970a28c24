// A BPE vocabulary learned from text (the embedded default trains its tokenizer with it).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "la/tokenizer/bpe_tokenizer.h"

namespace la {

// Learns a SentencePiece-style BPE vocabulary of about `vocab_size` pieces from `texts`:
// <unk>, <s>, </s>, the 256 byte pieces, every character seen, then merges by frequency.
BpeVocab train_bpe_vocab(const std::vector<std::string>& texts, int64_t vocab_size);

}  // namespace la
