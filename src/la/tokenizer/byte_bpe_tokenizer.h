// Byte-level BPE, as GPT-2, Llama-3 and Qwen2 tokenize: the text is cut into words by a
// pre-tokenizer (pretokenizer.h), each word's bytes are spelled in GPT-2's byte-to-character map
// (every byte is a piece, so nothing is ever unknown), and ranked merges join adjacent pieces,
// the lowest-ranked pair first (the leftmost of equal pairs). The same ids as Hugging Face
// `tokenizers` and llama.cpp for the vocabularies the tests hold (tests/test_byte_bpe.cpp).
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "la/tokenizer/bpe_tokenizer.h"
#include "la/tokenizer/pretokenizer.h"

namespace la {

class ByteBpeTokenizer final : public Tokenizer {
 public:
  // Validates `vocab` (byte_level, sizes agree, special ids in range, every merge's pieces and
  // result in the vocabulary, a piece for each of the 256 bytes) and builds the pre-tokenizer;
  // `source` names it in error messages.
  ByteBpeTokenizer(BpeVocab vocab, const std::string& source);

  // Control pieces ("<|begin_of_text|>") are never read from text: chat templates write them
  // (chat/chat_template.h). User-defined pieces are matched whole wherever they occur.
  std::vector<int> encode(std::string_view text, bool add_bos, bool add_eos) const override;
  std::string piece_bytes(int id) const override;
  std::string_view piece(int id) const override;
  int vocab_size() const override { return static_cast<int>(vocab_.pieces.size()); }
  int bos_id() const override { return vocab_.bos_id; }
  int eos_id() const override { return vocab_.eos_id; }
  bool is_special(int id) const override;

  const BpeVocab& vocab() const { return vocab_; }
  const PreTokenizer& pre_tokenizer() const { return *pre_; }
  // Id of `piece` (byte-level spelling), or -1.
  int piece_to_id(std::string_view piece) const;

  // GPT-2's byte-to-character map: the UTF-8 of the character byte `b` is spelled with.
  static std::string_view byte_char(uint8_t b);

 private:
  struct Merge {
    int rank;
    int result;
  };

  // Appends the ids of one pre-tokenized word.
  void encode_word(std::string_view word, std::vector<int>& out) const;
  void check_id(int id) const;

  BpeVocab vocab_;
  std::string source_;
  std::shared_ptr<const PreTokenizer> pre_;
  PieceMap ids_;                                           // every piece's spelling -> its id
  std::unordered_map<uint64_t, Merge> merges_;             // (left id << 32 | right id) -> rank, result
  std::vector<std::string> bytes_;                         // piece_bytes() of every id
  std::array<int, 256> byte_ids_{};                        // the single-byte piece of each byte
  std::vector<std::pair<std::string, int>> user_defined_;  // longest first
  std::array<bool, 256> user_first_{};                     // bytes a user-defined piece starts with
};

// The tokenizer for a vocabulary of either kind (BpeVocab::byte_level picks).
std::unique_ptr<Tokenizer> make_bpe_tokenizer(BpeVocab vocab, const std::string& source);

}  // namespace la
