// The embedded default's data: synthetic instruction records, so the whole pipeline (tokenize,
// fine-tune, evaluate, generate) runs with nothing downloaded.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "la/data/dataset.h"

namespace la {

// Alpaca-style records from a few task families with exact answers (reverse a word, add two
// numbers, upper-case a phrase, count letters, name a colour, continue a sequence). Seeded.
std::vector<AlpacaRecord> synthetic_instructions(int64_t n, uint64_t seed);

// Writes records as an Alpaca JSON array (atomically).
void write_alpaca_json(const std::vector<AlpacaRecord>& records, const std::string& path);

}  // namespace la
