#include "la/tokenizer/sp_tokenizer.h"

#include <sentencepiece_processor.h>

#include "la/core/error.h"
#include "la/core/mapped_file.h"

namespace la {
namespace {

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";  // U+2581 '▁'

// "<0x0A>" -> 0x0A. libsentencepiece only marks well-formed byte pieces as IsByte().
int byte_of_piece(std::string_view piece) {
  if (piece.size() != 6) return -1;
  int value = 0;
  for (char c : piece.substr(3, 2)) {
    const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

std::string spaces_from_symbols(std::string_view piece) {
  std::string out;
  out.reserve(piece.size());
  for (size_t pos = 0; pos < piece.size();) {
    if (piece.substr(pos).starts_with(kSpaceSymbol)) {
      out.push_back(' ');
      pos += kSpaceSymbol.size();
    } else {
      out.push_back(piece[pos++]);
    }
  }
  return out;
}

}  // namespace

SpTokenizer::SpTokenizer(std::string_view serialized, const std::string& path)
    : processor_(std::make_unique<sentencepiece::SentencePieceProcessor>()), path_(path) {
  const auto status = processor_->LoadFromSerializedProto(serialized);
  // libsentencepiece's messages quote pieces from the file as they are (a piece may hold a
  // newline): escaped, so the error stays one line.
  if (!status.ok()) fail("{}: not a usable SentencePiece model: {}", path, printable(status.ToString()));
  const int n = processor_->GetPieceSize();
  if (n <= 0) fail("{}: SentencePiece model has no pieces", path);
  bos_id_ = processor_->bos_id();
  eos_id_ = processor_->eos_id();

  bytes_.resize(static_cast<size_t>(n));
  for (int id = 0; id < n; ++id) {
    const std::string& piece = processor_->IdToPiece(id);
    if (processor_->IsControl(id) || processor_->IsUnknown(id)) continue;  // not printed
    if (processor_->IsByte(id)) {
      const int byte = byte_of_piece(piece);
      if (byte < 0) fail("{}: byte piece {} is spelt '{}', not <0xXX>", path, id, piece);
      bytes_[id] = std::string(1, static_cast<char>(byte));
    } else {
      bytes_[id] = spaces_from_symbols(piece);
    }
  }
}

SpTokenizer::~SpTokenizer() = default;

bool SpTokenizer::is_special(int id) const {
  check_id(id);
  // Debian 12's libsentencepiece (0.1.97) has no IsUserDefined; SentencePiece's own encoder
  // already keeps user-defined pieces whole, so the control pieces are the ones to find here.
  return processor_->IsControl(id);
}

std::unique_ptr<SpTokenizer> SpTokenizer::load(const std::string& path) {
  return std::make_unique<SpTokenizer>(read_file(path), path);
}

void SpTokenizer::check_id(int id) const {
  if (id < 0 || id >= vocab_size()) {
    fail("{}: token id {} outside the vocabulary [0, {})", path_, id, vocab_size());
  }
}

std::vector<int> SpTokenizer::encode(std::string_view text, bool add_bos, bool add_eos) const {
  std::vector<int> pieces;
  const auto status = processor_->Encode(text, &pieces);
  if (!status.ok()) fail("{}: SentencePiece encode failed: {}", path_, printable(status.ToString()));
  if (!add_bos && !add_eos) return pieces;

  std::vector<int> ids;
  ids.reserve(pieces.size() + 2);
  if (add_bos) {
    if (bos_id_ < 0) fail("{}: tokenizer has no BOS piece", path_);
    ids.push_back(bos_id_);
  }
  ids.insert(ids.end(), pieces.begin(), pieces.end());
  if (add_eos) {
    if (eos_id_ < 0) fail("{}: tokenizer has no EOS piece", path_);
    ids.push_back(eos_id_);
  }
  return ids;
}

std::string SpTokenizer::piece_bytes(int id) const {
  check_id(id);
  return bytes_[id];
}

std::string_view SpTokenizer::piece(int id) const {
  check_id(id);
  return processor_->IdToPiece(id);
}

BpeVocab SpTokenizer::to_vocab() const {
  const auto& sp = *processor_;
  BpeVocab v;
  const int n = sp.GetPieceSize();
  for (int i = 0; i < n; ++i) {
    v.pieces.push_back(sp.IdToPiece(i));
    v.scores.push_back(sp.GetScore(i));
    PieceType t = PieceType::Normal;
    if (sp.IsUnknown(i))
      t = PieceType::Unknown;
    else if (sp.IsControl(i))
      t = PieceType::Control;
    else if (sp.IsByte(i))
      t = PieceType::Byte;
    else if (sp.IsUnused(i))
      t = PieceType::Unused;
    v.types.push_back(t);
  }
  v.bos_id = sp.bos_id();
  v.eos_id = sp.eos_id();
  v.unk_id = sp.unk_id();
  return v;
}

}  // namespace la
