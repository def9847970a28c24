// Instruction data (SPEC §3): Alpaca JSON array or JSONL records, tokenized with the template,
// masked and truncated; seeded per-epoch order; micro-batches grouped by length.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "la/tokenizer/tokenizer.h"

namespace la {

struct AlpacaRecord {
  std::string instruction, input, output;
  std::string image = {};  // multi-modal records (SPEC §8): the image's path, resolved against the data file's folder
};

// Reads a JSON array of objects or JSONL (one object per line; blank lines allowed), detected by
// content. `instruction` and `output` are required strings, `input` optional (string or absent).
// Errors name the file and the record (index or line) and what is wrong: not JSON, empty data,
// a missing field, a non-string field, invalid UTF-8. An optional "image" is a path relative to
// the data file (returned resolved).
std::vector<AlpacaRecord> load_alpaca(const std::string& path);

// One training example. tokens = [BOS] + tok(prompt + output) + [EOS], truncated to max_seq_len.
// Position t predicts tokens[t+1]; it is supervised when t + 1 >= prompt_len, where
// prompt_len = len([BOS] + tok(prompt)) (the first prompt_len targets are masked).
struct Example {
  std::vector<int> tokens;
  int64_t prompt_len = 0;
  const float* image = nullptr;  // its image's CLIP features (set by the caller, kept alive there), or none
  int64_t supervised() const;    // number of supervised targets (may be 0 after truncation)
};

struct TokenizedDataset {
  std::vector<Example> examples;
  int64_t truncated = 0;          // examples cut to max_seq_len
  int64_t supervised_tokens = 0;  // over all examples
  int64_t total_tokens = 0;
};

TokenizedDataset tokenize_alpaca(const std::vector<AlpacaRecord>& records, const Tokenizer& tok, int64_t max_seq_len);

// A pre-training corpus (SPEC §12): plain text with documents separated by blank lines, or
// JSONL (".jsonl") with a "text" string on each line. Errors name the file (and line) and what is
// wrong: empty, not JSON, no "text", invalid UTF-8.
std::vector<std::string> load_corpus(const std::string& path);

// The corpus as training windows: each document becomes [BOS] + tok(doc) + [EOS], the documents
// are joined into one stream and cut into windows of seq_len + 1 tokens that share their edge
// token (each token is predicted once); every target is supervised. A last shorter window of at
// least 2 tokens is kept.
TokenizedDataset tokenize_corpus(const std::vector<std::string>& docs, const Tokenizer& tok, int64_t seq_len);

// The order of example indices for `epoch`: a seeded Fisher-Yates shuffle that depends only on
// (seed, epoch), so a resumed run sees the same order; identity when !shuffle.
std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch, bool shuffle);

// Splits one optimizer batch into micro-batches of at most `micro_batch_size` examples, grouped
// by length (sorted by token count, stable) so that examples of similar length share a
// micro-batch. Returns lists of example indices.
std::vector<std::vector<int64_t>> split_micro_batches(const std::vector<int64_t>& batch,
                                                      const std::vector<Example>& examples, int64_t micro_batch_size);

}  // namespace la
