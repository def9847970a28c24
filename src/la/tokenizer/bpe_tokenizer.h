// Our own SentencePiece BPE: the same ids as libsentencepiece for a BPE model, computed from a
// plain vocabulary (pieces + scores + types) such as llama2.c's tokenizer.bin or a GGUF vocab.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "la/tokenizer/tokenizer.h"

namespace la {

// SentencePiece's piece types (ModelProto.SentencePiece.Type; GGUF token_type uses the same set).
enum class PieceType : uint8_t { Normal, Unknown, Control, UserDefined, Unused, Byte };

// Piece spelling -> id, looked up by string_view without building a string.
struct PieceHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using PieceMap = std::unordered_map<std::string, int, PieceHash, std::equal_to<>>;

// A BPE vocabulary as GGUF's tokenizer.ggml.* keys hold it, of either kind:
//  - SentencePiece-style (model "llama"; BpeTokenizer): pieces spelled as in a .model file:
//    "▁the" (U+2581 for a space), "<0x0A>" for byte pieces, "<s>" for control pieces; merges
//    ranked by score.
//  - byte-level (model "gpt2": GPT-2, Llama-3, Qwen2; ByteBpeTokenizer): pieces spelled in
//    GPT-2's byte-to-character map ("Ġthe": U+0120 for a space byte), merges ranked by their
//    order in `merges`, the text cut into words by the pre-tokenizer `pre` first.
struct BpeVocab {
  std::vector<std::string> pieces;
  std::vector<float> scores;  // merge priority: the higher, the earlier
  std::vector<PieceType> types;
  int bos_id = -1;
  int eos_id = -1;
  int unk_id = -1;
  // Normaliser settings of the SentencePiece model the vocabulary came from. LLaMA's model uses
  // a dummy prefix and keeps whitespace as is; SentencePiece's default (used by llama2.c's
  // train_vocab, e.g. tok512.model) also strips and collapses runs of spaces.
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = false;

  // Byte-level vocabularies only.
  bool byte_level = false;
  std::vector<std::string> merges;       // "Ġ t": the two pieces of a merge, first merged first
  std::string pre;                       // the pre-tokenizer's name (tokenizer.ggml.pre) ...
  std::vector<std::string> pre_regexes;  // ... or, for one without a name, its expressions
  bool ignore_merges = false;            // a word that is a piece is that piece (Llama-3)
  bool add_bos = true;                   // whether encode(add_bos = true) adds BOS (GPT-2: no)

  // The model's chat template, which GGUF keeps beside the vocabulary (tokenizer.chat_template):
  // written when not empty, never read back through here (io/model_chat_template.h reads it).
  std::string chat_template;
};

// Parses a llama2.c tokenizer.bin: int32 max_token_length, then until the end of the file
// {float32 score, int32 length, length bytes}. llama2.c's exporter wrote ' ' for '▁' and
// "\n<s>\n" / "\n</s>\n" for BOS / EOS; both are mapped back to SentencePiece spelling, and
// piece types (which the file does not store) are recovered from the spelling.
// Throws la::Error naming `path` when the bytes are not a well-formed tokenizer.bin.
BpeVocab parse_llama2c_vocab(std::string_view bytes, const std::string& path);

// The inverse of parse_llama2c_vocab: the bytes of a tokenizer.bin for `vocab`, spelled as
// llama2.c's exporter does ('▁' as ' ', BOS/EOS as "\n<s>\n" / "\n</s>\n").
std::string serialize_llama2c_vocab(const BpeVocab& vocab);

class BpeTokenizer final : public Tokenizer {
 public:
  // Validates the vocabulary (sizes agree, ids in range, finite scores, an <unk> or a full set of
  // byte pieces); `source` names it in error messages.
  explicit BpeTokenizer(BpeVocab vocab, const std::string& source = "vocabulary");

  // Reads a llama2.c tokenizer.bin; throws la::Error naming the file.
  static std::unique_ptr<BpeTokenizer> load_llama2c(const std::string& path);

  std::vector<int> encode(std::string_view text, bool add_bos, bool add_eos) const override;
  std::string piece_bytes(int id) const override;
  std::string_view piece(int id) const override;
  int vocab_size() const override { return static_cast<int>(vocab_.pieces.size()); }
  int bos_id() const override { return vocab_.bos_id; }
  int eos_id() const override { return vocab_.eos_id; }
  bool is_special(int id) const override;

  int unk_id() const { return vocab_.unk_id; }
  PieceType type(int id) const;
  float score(int id) const;
  // Id of `piece` (SentencePiece spelling), or -1 when the vocabulary has no such piece.
  int piece_to_id(std::string_view piece) const;
  const BpeVocab& vocab() const { return vocab_; }

  // SentencePiece's normaliser: malformed UTF-8 bytes become U+FFFD, spaces become '▁', plus the
  // dummy prefix / whitespace removal the vocabulary asks for.
  std::string normalize(std::string_view text) const;

 private:
  static uint64_t char_pair(std::string_view a, std::string_view b);
  void check_id(int id) const;
  // SentencePiece's PieceToId: piece_to_id(), or <unk> when there is no such piece.
  int lookup(std::string_view piece) const;

  BpeVocab vocab_;
  std::string source_;                     // names the vocabulary in error messages
  std::vector<std::string> bytes_;         // piece_bytes() of every id
  PieceMap mergeable_;                     // Normal, UserDefined, Unused: what BPE merges may produce
  PieceMap reserved_;                      // Control, Unknown, Byte
  PieceMap user_defined_;                  // matched whole in the input and never merged
  std::unordered_set<uint64_t> joinable_;  // char_pair()s that occur inside mergeable pieces
  size_t max_piece_size_ = 0;
  size_t max_user_defined_size_ = 0;
  bool has_unused_ = false;
  bool byte_fallback_ = false;
  std::array<int, 256> byte_ids_{};
};

}  // namespace la
