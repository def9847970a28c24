// SentencePiece BPE, reimplemented to give libsentencepiece's ids exactly (bpe_model.cc +
// the byte fallback of sentencepiece_processor.cc), in O(n log n): symbols live in a doubly
// linked list over the normalised text and candidate merges in a priority queue; a candidate is
// checked when popped rather than deleted when its symbols change (lazy invalidation).
#include "la/tokenizer/bpe_tokenizer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <queue>
#include <utility>

#include "la/core/error.h"
#include "la/core/mapped_file.h"

namespace la {
namespace {

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";      // U+2581 '▁', SentencePiece's space
constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// A tokenizer.bin with longer pieces is not something llama2.c's exporter writes (LLaMA's
// longest is 27 bytes); the bound keeps a corrupt length from being taken at face value.
constexpr int32_t kMaxLlama2cPieceLength = 1 << 16;

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string_view::npos; pos = hit + from.size()) {
    out.append(s.substr(pos, hit - pos));
    out.append(to);
  }
  out.append(s.substr(pos));
  return out;
}

// "<0x0A>" -> 0x0A; -1 for anything else. SentencePiece writes byte pieces with upper-case hex.
int parse_byte_piece(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  int value = 0;
  for (char c : piece.substr(3, 2)) {
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else {
      return -1;
    }
    value = value * 16 + digit;
  }
  return value;
}

std::string byte_piece(int byte) {
  return fmt::format("<0x{:02X}>", byte);
}

// Byte length of the UTF-8 character that starts with `lead`, judged by the lead byte alone as
// SentencePiece's OneCharLen does (the text is already well-formed when this is used).
size_t one_char_length(char lead) {
  static constexpr uint8_t kLengths[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLengths[static_cast<uint8_t>(lead) >> 4];
}

}  // namespace

// Two adjacent characters (1-4 bytes each) packed into one key: the bytes of each in the low
// bytes of a 32-bit half.
uint64_t BpeTokenizer::char_pair(std::string_view a, std::string_view b) {
  const auto pack = [](std::string_view c) {
    uint32_t v = 0;
    for (char x : c.substr(0, 4)) v = (v << 8) | static_cast<uint8_t>(x);
    return v;
  };
  return (uint64_t{pack(a)} << 32) | pack(b);
}

namespace {

template <typename T>
T read_le(const char* p) {
  T value;
  std::memcpy(&value, p, sizeof value);  // the files are little-endian, as is every target
  return value;
}

}  // namespace

BpeVocab parse_llama2c_vocab(std::string_view bytes, const std::string& path) {
  if (bytes.size() < 4) fail("{}: not a llama2.c tokenizer.bin: {} bytes", path, bytes.size());
  const auto max_length = read_le<int32_t>(bytes.data());
  if (max_length <= 0 || max_length > kMaxLlama2cPieceLength) {
    fail("{}: not a llama2.c tokenizer.bin: max_token_length {} outside [1, {}]", path, max_length,
         kMaxLlama2cPieceLength);
  }

  BpeVocab vocab;
  size_t offset = 4;
  while (offset < bytes.size()) {
    const size_t id = vocab.pieces.size();
    if (bytes.size() - offset < 8) {
      fail(
          "{}: truncated llama2.c tokenizer.bin: token {} at offset {} needs 8 header bytes, "
          "{} left",
          path, id, offset, bytes.size() - offset);
    }
    const auto score = read_le<float>(bytes.data() + offset);
    const auto length = read_le<int32_t>(bytes.data() + offset + 4);
    offset += 8;
    if (!std::isfinite(score)) fail("{}: token {} has a non-finite score", path, id);
    if (length <= 0 || length > max_length) {
      fail("{}: token {} has length {}, outside [1, max_token_length {}]", path, id, length, max_length);
    }
    if (bytes.size() - offset < static_cast<size_t>(length)) {
      fail("{}: truncated llama2.c tokenizer.bin: token {} at offset {} needs {} bytes, {} left", path, id, offset,
           length, bytes.size() - offset);
    }
    const std::string_view raw = bytes.substr(offset, static_cast<size_t>(length));
    offset += static_cast<size_t>(length);

    // Undo the exporter's spelling changes and recover the piece types it dropped.
    std::string piece;
    PieceType type;
    if (raw == "<unk>") {
      piece = raw;
      type = PieceType::Unknown;
      if (vocab.unk_id < 0) vocab.unk_id = static_cast<int>(id);
    } else if (raw == "\n<s>\n" || raw == "<s>") {
      piece = "<s>";
      type = PieceType::Control;
      if (vocab.bos_id < 0) vocab.bos_id = static_cast<int>(id);
    } else if (raw == "\n</s>\n" || raw == "</s>") {
      piece = "</s>";
      type = PieceType::Control;
      if (vocab.eos_id < 0) vocab.eos_id = static_cast<int>(id);
    } else if (parse_byte_piece(raw) >= 0) {
      piece = raw;
      type = PieceType::Byte;
    } else {
      piece = replace_all(raw, " ", kSpaceSymbol);
      type = PieceType::Normal;
    }
    vocab.pieces.push_back(std::move(piece));
    vocab.scores.push_back(score);
    vocab.types.push_back(type);
  }
  // The file does not record the normaliser; llama2.c's run.c applies none beyond the dummy
  // prefix, and LLaMA's own model keeps whitespace as it is.
  vocab.add_dummy_prefix = true;
  vocab.remove_extra_whitespaces = false;
  return vocab;
}

std::string serialize_llama2c_vocab(const BpeVocab& vocab) {
  std::vector<std::string> raw(vocab.pieces.size());
  int32_t max_length = 1;
  for (size_t i = 0; i < vocab.pieces.size(); ++i) {
    const std::string& p = vocab.pieces[i];
    if (static_cast<int>(i) == vocab.bos_id)
      raw[i] = "\n<s>\n";
    else if (static_cast<int>(i) == vocab.eos_id)
      raw[i] = "\n</s>\n";
    else
      raw[i] = replace_all(p, kSpaceSymbol, " ");
    max_length = std::max(max_length, static_cast<int32_t>(raw[i].size()));
  }
  std::string out(reinterpret_cast<const char*>(&max_length), 4);
  for (size_t i = 0; i < raw.size(); ++i) {
    const float score = vocab.scores[i];
    const auto len = static_cast<int32_t>(raw[i].size());
    out.append(reinterpret_cast<const char*>(&score), 4);
    out.append(reinterpret_cast<const char*>(&len), 4);
    out += raw[i];
  }
  return out;
}

BpeTokenizer::BpeTokenizer(BpeVocab vocab, const std::string& source) : vocab_(std::move(vocab)), source_(source) {
  const size_t n = vocab_.pieces.size();
  if (n == 0) fail("{}: empty vocabulary", source);
  if (n > static_cast<size_t>(std::numeric_limits<int>::max())) {
    fail("{}: vocabulary too large", source);
  }
  if (vocab_.scores.size() != n || vocab_.types.size() != n) {
    fail("{}: {} pieces but {} scores and {} types", source, n, vocab_.scores.size(), vocab_.types.size());
  }
  const auto check_special = [&](int id, PieceType want, const char* what) {
    if (id < -1 || id >= static_cast<int>(n)) fail("{}: {} id {} out of range", source, what, id);
    if (id >= 0 && vocab_.types[id] != want) {
      fail("{}: {} id {} has the wrong piece type", source, what, id);
    }
  };
  // <unk> is Unknown in a .model, but some GGUF conversions (Phi-3's) mark it Control.
  if (vocab_.unk_id >= 0 && vocab_.unk_id < static_cast<int>(n) && vocab_.types[vocab_.unk_id] == PieceType::Control)
    vocab_.types[vocab_.unk_id] = PieceType::Unknown;
  check_special(vocab_.unk_id, PieceType::Unknown, "unknown");
  check_special(vocab_.bos_id, PieceType::Control, "BOS");
  check_special(vocab_.eos_id, PieceType::Control, "EOS");

  bytes_.resize(n);
  for (size_t id = 0; id < n; ++id) {
    const std::string& piece = vocab_.pieces[id];
    if (piece.empty()) fail("{}: piece {} is empty", source, id);
    if (!std::isfinite(vocab_.scores[id])) fail("{}: piece {} has a non-finite score", source, id);
    // Like SentencePiece, the first of two equal pieces wins a look-up.
    switch (vocab_.types[id]) {
      case PieceType::UserDefined:
        user_defined_.try_emplace(piece, static_cast<int>(id));
        max_user_defined_size_ = std::max(max_user_defined_size_, piece.size());
        [[fallthrough]];
      case PieceType::Normal:
      case PieceType::Unused:
        mergeable_.try_emplace(piece, static_cast<int>(id));
        max_piece_size_ = std::max(max_piece_size_, piece.size());
        has_unused_ |= vocab_.types[id] == PieceType::Unused;
        bytes_[id] = replace_all(piece, kSpaceSymbol, " ");
        break;
      case PieceType::Byte: {
        const int byte = parse_byte_piece(piece);
        if (byte < 0) fail("{}: byte piece {} is spelt '{}', not <0xXX>", source, id, piece);
        reserved_.try_emplace(piece, static_cast<int>(id));
        bytes_[id] = std::string(1, static_cast<char>(byte));
        byte_fallback_ = true;
        break;
      }
      case PieceType::Control:
      case PieceType::Unknown: reserved_.try_emplace(piece, static_cast<int>(id)); break;  // not printed
    }
  }

  // Every pair of adjacent characters inside a mergeable piece: only between those can a merge
  // happen (see encode). Characters are split as encode splits the text.
  for (const auto& [piece, id] : mergeable_) {
    (void)id;
    size_t prev_begin = 0, prev_size = 0;
    for (size_t pos = 0; pos < piece.size();) {
      const size_t size = std::min(one_char_length(piece[pos]), piece.size() - pos);
      if (pos > 0) {
        joinable_.insert(char_pair(std::string_view(piece).substr(prev_begin, prev_size),
                                   std::string_view(piece).substr(pos, size)));
      }
      prev_begin = pos;
      prev_size = size;
      pos += size;
    }
  }

  // Characters the vocabulary lacks are spelt with byte pieces when it has any (SentencePiece's
  // byte_fallback); a missing byte piece, or no byte pieces at all, falls back to <unk>.
  for (int b = 0; b < 256; ++b) {
    const auto it = reserved_.find(byte_piece(b));
    byte_ids_[b] = it != reserved_.end() ? it->second : vocab_.unk_id;
    if (byte_fallback_ && byte_ids_[b] < 0) {
      fail("{}: no byte piece {} and no <unk> to stand in for it", source, byte_piece(b));
    }
  }
  if (!byte_fallback_ && vocab_.unk_id < 0) fail("{}: neither <unk> nor byte pieces", source);
}

std::unique_ptr<BpeTokenizer> BpeTokenizer::load_llama2c(const std::string& path) {
  return std::make_unique<BpeTokenizer>(parse_llama2c_vocab(read_file(path), path), path);
}

void BpeTokenizer::check_id(int id) const {
  if (id < 0 || id >= vocab_size()) {
    fail("{}: token id {} outside the vocabulary [0, {})", source_, id, vocab_size());
  }
}

std::string BpeTokenizer::piece_bytes(int id) const {
  check_id(id);
  return bytes_[id];
}

std::string_view BpeTokenizer::piece(int id) const {
  check_id(id);
  return vocab_.pieces[id];
}

PieceType BpeTokenizer::type(int id) const {
  check_id(id);
  return vocab_.types[id];
}

bool BpeTokenizer::is_special(int id) const {
  const PieceType t = type(id);
  return t == PieceType::Control || t == PieceType::UserDefined;
}

float BpeTokenizer::score(int id) const {
  check_id(id);
  return vocab_.scores[id];
}

int BpeTokenizer::piece_to_id(std::string_view piece) const {
  // Reserved pieces first, as SentencePiece's ModelInterface::PieceToId.
  if (auto it = reserved_.find(piece); it != reserved_.end()) return it->second;
  if (auto it = mergeable_.find(piece); it != mergeable_.end()) return it->second;
  return -1;
}

int BpeTokenizer::lookup(std::string_view piece) const {
  const int id = piece_to_id(piece);
  return id >= 0 ? id : vocab_.unk_id;
}

// SentencePiece's Normalizer::Normalize with the identity rule set (what LLaMA and llama2.c use):
// each malformed byte becomes U+FFFD, ' ' becomes '▁'. The order of the whitespace steps matters
// and follows normalizer.cc: leading spaces are dropped before the dummy prefix is added, and
// trailing '▁'s (literal ones included) after.
std::string BpeTokenizer::normalize(std::string_view text) const {
  std::string out;
  const bool squeeze = vocab_.remove_extra_whitespaces;
  size_t pos = 0;
  if (squeeze) {
    while (pos < text.size() && text[pos] == ' ') ++pos;
  }
  if (pos == text.size()) return out;  // SentencePiece gives no dummy prefix to empty text
  out.reserve(text.size() + text.size() / 2 + kSpaceSymbol.size());
  if (vocab_.add_dummy_prefix) out.append(kSpaceSymbol);

  bool prev_space = squeeze;
  while (pos < text.size()) {
    const char c = text[pos];
    if (c == ' ') {
      if (!prev_space) out.append(kSpaceSymbol);
      prev_space = squeeze;
      ++pos;
    } else if (static_cast<uint8_t>(c) < 0x80) {
      out.push_back(c);
      prev_space = false;
      ++pos;
    } else {
      const int length = utf8_char_length(text.substr(pos));
      if (length > 0) {
        out.append(text.substr(pos, static_cast<size_t>(length)));
        pos += static_cast<size_t>(length);
      } else {
        out.append(kReplacementChar);
        ++pos;
      }
      prev_space = false;
    }
  }
  if (squeeze) {
    while (out.size() >= kSpaceSymbol.size() && out.ends_with(kSpaceSymbol)) {
      out.resize(out.size() - kSpaceSymbol.size());
    }
  }
  return out;
}

std::vector<int> BpeTokenizer::encode(std::string_view text, bool add_bos, bool add_eos) const {
  std::vector<int> ids;
  if (add_bos) {
    if (vocab_.bos_id < 0) fail("{}: tokenizer has no BOS piece", source_);
    ids.push_back(vocab_.bos_id);
  }

  const std::string norm = normalize(text);

  // One symbol per character (or per user-defined piece, which is frozen: never merged).
  struct Symbol {
    size_t begin;
    size_t size;  // 0 once merged into its left neighbour
    int prev;
    int next;
    bool frozen;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(norm.size());
  for (size_t pos = 0; pos < norm.size();) {
    size_t size = 0;
    bool frozen = false;
    if (!user_defined_.empty()) {
      // Longest match wins, as SentencePiece's PrefixMatcher does.
      for (size_t len = std::min(max_user_defined_size_, norm.size() - pos); len > 0; --len) {
        if (user_defined_.find(std::string_view(norm).substr(pos, len)) != user_defined_.end()) {
          size = len;
          frozen = true;
          break;
        }
      }
    }
    if (size == 0) size = std::min(one_char_length(norm[pos]), norm.size() - pos);
    symbols.push_back({pos, size, -1, -1, frozen});
    pos += size;
  }
  const auto text_of = [&](const Symbol& s) { return std::string_view(norm).substr(s.begin, s.size); };

  // A candidate merge of two adjacent symbols. It goes stale when either symbol changes; that is
  // detected on pop: a merged-away right symbol has size 0, and any growth changes the sum.
  struct Candidate {
    float score;
    int left;
    int right;
    size_t size;
  };
  // Highest score first; among equal scores the leftmost (SentencePiece's SymbolPairComparator).
  const auto lower_priority = [](const Candidate& a, const Candidate& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  using Agenda = std::priority_queue<Candidate, std::vector<Candidate>, decltype(lower_priority)>;
  Agenda agenda(lower_priority);

  // An unused piece may be formed as a step towards a longer piece; if it survives to the end it
  // is split back into the two halves it was made from (SentencePiece's resegmentation).
  std::unordered_map<std::string_view, std::pair<std::string_view, std::string_view>> unmerge;

  const auto consider = [&](int left, int right) {
    if (left < 0 || right < 0 || symbols[left].frozen || symbols[right].frozen) return;
    const size_t size = symbols[left].size + symbols[right].size;
    if (size > max_piece_size_) return;
    const std::string_view merged = std::string_view(norm).substr(symbols[left].begin, size);
    const auto it = mergeable_.find(merged);
    if (it == mergeable_.end()) return;
    agenda.push({vocab_.scores[it->second], left, right, size});
    if (has_unused_ && vocab_.types[it->second] == PieceType::Unused) {
      unmerge[merged] = {text_of(symbols[left]), text_of(symbols[right])};
    }
  };

  // Symbols to ids. A symbol the vocabulary lacks is a single character: spell it with byte
  // pieces, or (without byte pieces) one <unk> for a whole run of such characters.
  bool prev_unknown = false;
  const auto emit = [&](auto&& self, std::string_view piece) -> void {
    const int id = lookup(piece);
    if (has_unused_ && id >= 0 && vocab_.types[id] == PieceType::Unused) {
      if (const auto it = unmerge.find(piece); it != unmerge.end()) {
        self(self, it->second.first);
        self(self, it->second.second);
        return;
      }
    }
    const bool unknown = id == vocab_.unk_id;
    if (unknown && byte_fallback_) {
      for (char c : piece) ids.push_back(byte_ids_[static_cast<uint8_t>(c)]);
    } else if (!(unknown && prev_unknown)) {
      ids.push_back(id);
    }
    prev_unknown = unknown && !byte_fallback_;
  };

  // BPE over symbols [first, last): SentencePiece's merge loop.
  const auto merge_and_emit = [&](int first, int last) {
    for (int i = first; i < last; ++i) {
      symbols[i].prev = i > first ? i - 1 : -1;
      symbols[i].next = i + 1 < last ? i + 1 : -1;
      if (i > first) consider(i - 1, i);
    }
    while (!agenda.empty()) {
      const Candidate top = agenda.top();
      agenda.pop();
      Symbol& left = symbols[top.left];
      Symbol& right = symbols[top.right];
      if (left.size == 0 || right.size == 0 || left.size + right.size != top.size) continue;
      left.size = top.size;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].prev = top.left;
      right.size = 0;
      consider(left.prev, top.left);
      consider(top.left, left.next);
    }
    for (int i = first; i >= 0; i = symbols[i].next) emit(emit, text_of(symbols[i]));
  };

  // Merges are local: where no mergeable piece holds two adjacent characters, no merge can ever
  // cross between them, so the text splits there into pieces that are merged independently with
  // the same result, and with small, cache-friendly queues. (Not with unused pieces: their
  // resegmentation table is shared by the whole text, as in SentencePiece.)
  const auto boundary_after = [&](size_t i) {
    if (i + 1 == symbols.size()) return true;
    if (has_unused_) return false;
    const Symbol& a = symbols[i];
    const Symbol& b = symbols[i + 1];
    return a.frozen || b.frozen || !joinable_.contains(char_pair(text_of(a), text_of(b)));
  };
  if (symbols.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    fail("{}: text of {} bytes is too long to encode", source_, text.size());
  }
  for (size_t first = 0, i = 0; i < symbols.size(); ++i) {
    if (boundary_after(i)) {
      merge_and_emit(static_cast<int>(first), static_cast<int>(i + 1));
      first = i + 1;
    }
  }

  if (add_eos) {
    if (vocab_.eos_id < 0) fail("{}: tokenizer has no EOS piece", source_);
    ids.push_back(vocab_.eos_id);
  }
  return ids;
}

}  // namespace la
