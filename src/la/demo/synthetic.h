// The embedded default: synthetic instruction data and a BPE vocabulary learned from it, so the
// whole pipeline (tokenize, fine-tune, evaluate, generate) runs with nothing downloaded.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "la/tokenizer/bpe_tokenizer.h"
#include "la/train/dataset.h"

namespace la {

// Alpaca-style records from a few task families with exact answers (reverse a word, add two
// numbers, upper-case a phrase, count letters, name a colour, continue a sequence). Seeded.
std::vector<AlpacaRecord> synthetic_instructions(int64_t n, uint64_t seed);

// Writes records as an Alpaca JSON array (atomically).
void write_alpaca_json(const std::vector<AlpacaRecord>& records, const std::string& path);

// Learns a SentencePiece-style BPE vocabulary of about `vocab_size` pieces from `texts`:
// <unk>, <s>, </s>, the 256 byte pieces, every character seen, then merges by frequency.
BpeVocab train_bpe_vocab(const std::vector<std::string>& texts, int64_t vocab_size);

}  // namespace la
