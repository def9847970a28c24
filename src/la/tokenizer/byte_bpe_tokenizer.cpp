#include "la/tokenizer/byte_bpe_tokenizer.h"

#include <algorithm>
#include <functional>
#include <limits>

#include "la/core/error.h"

namespace la {
namespace {

// GPT-2's map: the printable bytes ! .. ~, ¡ .. ¬ and ® .. ÿ stand for themselves; the other 68
// (controls, space, DEL, NBSP, soft hyphen) take U+0100 onwards in byte order, so every piece is
// printable text.
struct ByteMap {
  std::array<std::string, 256> spelling;
  std::unordered_map<uint32_t, uint8_t> byte_of;  // code point -> byte
  ByteMap() {
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool self = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const uint32_t cp = self ? static_cast<uint32_t>(b) : next++;
      std::string utf8;
      if (cp < 0x80) {
        utf8.push_back(static_cast<char>(cp));
      } else {  // all below U+0800: two bytes
        utf8.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        utf8.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
      }
      spelling[b] = utf8;
      byte_of[cp] = static_cast<uint8_t>(b);
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

// The bytes a byte-level piece stands for: each character mapped back through GPT-2's map.
// A character outside the map (a hand-made piece) stands for itself.
std::string unspell(std::string_view piece) {
  const ByteMap& m = byte_map();
  std::string out;
  out.reserve(piece.size());
  for (size_t i = 0; i < piece.size();) {
    const int n = std::max(utf8_char_length(piece.substr(i)), 1);
    uint32_t cp = static_cast<uint8_t>(piece[i]);
    if (n == 2) cp = ((cp & 0x1F) << 6) | (static_cast<uint8_t>(piece[i + 1]) & 0x3F);
    auto it = n <= 2 ? m.byte_of.find(cp) : m.byte_of.end();
    if (it != m.byte_of.end() && (n == 2 || cp < 0x80))
      out.push_back(static_cast<char>(it->second));
    else
      out.append(piece.substr(i, static_cast<size_t>(n)));
    i += static_cast<size_t>(n);
  }
  return out;
}

uint64_t pair_key(int left, int right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

}  // namespace

std::string_view ByteBpeTokenizer::byte_char(uint8_t b) {
  return byte_map().spelling[b];
}

ByteBpeTokenizer::ByteBpeTokenizer(BpeVocab vocab, const std::string& source)
    : vocab_(std::move(vocab)), source_(source) {
  if (!vocab_.byte_level) fail("{}: not a byte-level BPE vocabulary", source);
  const size_t n = vocab_.pieces.size();
  if (n == 0) fail("{}: empty vocabulary", source);
  if (n > static_cast<size_t>(std::numeric_limits<int>::max())) fail("{}: vocabulary too large", source);
  if (vocab_.types.size() != n) fail("{}: {} pieces but {} types", source, n, vocab_.types.size());
  if (vocab_.scores.size() != n) vocab_.scores.assign(n, 0.0f);
  for (const auto& [id, what] : {std::pair{vocab_.bos_id, "BOS"}, {vocab_.eos_id, "EOS"}, {vocab_.unk_id, "unknown"}})
    if (id < -1 || id >= static_cast<int>(n)) fail("{}: {} id {} out of range", source, what, id);

  pre_ = vocab_.pre_regexes.empty() ? PreTokenizer::named(vocab_.pre, source)
                                    : PreTokenizer::from_regexes(vocab_.pre_regexes, source);
  bytes_.resize(n);
  ids_.reserve(n);
  for (size_t id = 0; id < n; ++id) {
    const std::string& piece = vocab_.pieces[id];
    ids_.try_emplace(piece, static_cast<int>(id));  // the first of two equal pieces wins
    switch (vocab_.types[id]) {
      case PieceType::Control:
      case PieceType::Unknown: break;  // printed as nothing
      case PieceType::UserDefined:
        bytes_[id] = piece;
        if (!piece.empty()) user_defined_.emplace_back(piece, static_cast<int>(id));
        break;
      default: bytes_[id] = unspell(piece);
    }
  }
  for (const auto& [piece, id] : user_defined_) user_first_[static_cast<uint8_t>(piece[0])] = true;
  std::stable_sort(user_defined_.begin(), user_defined_.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  for (int b = 0; b < 256; ++b) {
    const auto it = ids_.find(byte_char(static_cast<uint8_t>(b)));
    byte_ids_[b] = it != ids_.end() ? it->second : vocab_.unk_id;
  }

  merges_.reserve(vocab_.merges.size());
  for (size_t rank = 0; rank < vocab_.merges.size(); ++rank) {
    const std::string& m = vocab_.merges[rank];
    const size_t space = m.find(' ', 1);  // pieces hold no raw space; the first character may be one
    if (space == std::string::npos || space + 1 >= m.size())
      fail("{}: merge {} '{}' is not two pieces separated by a space", source, rank, printable(m));
    const std::string_view left = std::string_view(m).substr(0, space), right = std::string_view(m).substr(space + 1);
    const int l = piece_to_id(left), r = piece_to_id(right);
    std::string joined(left);
    joined += right;
    const int result = piece_to_id(joined);
    if (l < 0 || r < 0 || result < 0)
      fail("{}: merge {} '{}' names a piece the vocabulary does not have", source, rank, printable(m));
    merges_.try_emplace(pair_key(l, r), Merge{static_cast<int>(rank), result});  // the first rank wins
  }
}

int ByteBpeTokenizer::piece_to_id(std::string_view piece) const {
  const auto it = ids_.find(piece);
  return it == ids_.end() ? -1 : it->second;
}

void ByteBpeTokenizer::check_id(int id) const {
  if (id < 0 || id >= vocab_size()) fail("{}: token id {} outside the vocabulary [0, {})", source_, id, vocab_size());
}

std::string ByteBpeTokenizer::piece_bytes(int id) const {
  check_id(id);
  return bytes_[id];
}

std::string_view ByteBpeTokenizer::piece(int id) const {
  check_id(id);
  return vocab_.pieces[id];
}

bool ByteBpeTokenizer::is_special(int id) const {
  check_id(id);
  return vocab_.types[id] == PieceType::Control || vocab_.types[id] == PieceType::UserDefined;
}

void ByteBpeTokenizer::encode_word(std::string_view word, std::vector<int>& out) const {
  const auto byte_id = [&](char c) {
    const int id = byte_ids_[static_cast<uint8_t>(c)];
    if (id < 0)
      fail("{}: the vocabulary has no piece for byte 0x{:02X} and no <unk>", source_, static_cast<uint8_t>(c));
    return id;
  };
  if (word.size() == 1) {
    out.push_back(byte_id(word[0]));
    return;
  }
  if (vocab_.ignore_merges) {
    thread_local std::string spelled;
    spelled.clear();
    for (char c : word) spelled += byte_char(static_cast<uint8_t>(c));
    if (const int id = piece_to_id(spelled); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  // Symbols in a linked list over the word's bytes (a merged symbol keeps its first byte's slot;
  // the slots it swallowed are dead), and the candidate merges in a heap by (rank, position).
  struct Symbol {
    int id, prev, next;
  };
  struct Candidate {
    int rank, pos, left, right;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  thread_local std::vector<Symbol> sym;
  thread_local std::vector<Candidate> heap;  // a min-heap through std::greater
  const int n = static_cast<int>(word.size());
  sym.resize(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) sym[i] = {byte_id(word[i]), i - 1, i + 1 < n ? i + 1 : -1};
  heap.clear();
  const auto consider = [&](int pos) {
    if (pos < 0 || sym[pos].next < 0) return;
    const int l = sym[pos].id, r = sym[sym[pos].next].id;
    const auto it = merges_.find(pair_key(l, r));
    if (it == merges_.end()) return;
    heap.push_back({it->second.rank, pos, l, r});
    std::push_heap(heap.begin(), heap.end(), std::greater<>{});
  };
  for (int i = 0; i + 1 < n; ++i) consider(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>{});
    const Candidate c = heap.back();
    heap.pop_back();
    Symbol& s = sym[c.pos];
    // Stale when either side has changed since the candidate was pushed.
    if (s.id != c.left || s.next < 0 || sym[s.next].id != c.right) continue;
    const int dead = s.next;
    s.id = merges_.at(pair_key(c.left, c.right)).result;
    s.next = sym[dead].next;
    if (s.next >= 0) sym[s.next].prev = c.pos;
    sym[dead].id = -1;
    consider(s.prev);
    consider(c.pos);
  }
  for (int i = 0; i >= 0; i = sym[i].next) out.push_back(sym[i].id);
}

std::vector<int> ByteBpeTokenizer::encode(std::string_view text, bool add_bos, bool add_eos) const {
  std::vector<int> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos && vocab_.add_bos) {
    if (vocab_.bos_id < 0) fail("{}: tokenizer has no BOS piece", source_);
    out.push_back(vocab_.bos_id);
  }
  // Words repeat: each distinct word is merged once per call and copied afterwards.
  std::unordered_map<std::string_view, std::pair<size_t, size_t>> seen;
  const auto word = [&](std::string_view w) {
    if (w.size() > 1) {
      if (auto it = seen.find(w); it != seen.end()) {
        for (size_t i = 0; i < it->second.second; ++i) {
          const int id = out[it->second.first + i];
          out.push_back(id);
        }
        return;
      }
    }
    const size_t start = out.size();
    encode_word(w, out);
    if (w.size() > 1 && seen.size() < (1u << 16)) seen.emplace(w, std::pair{start, out.size() - start});
  };
  if (user_defined_.empty()) {
    pre_->split(text, word);
  } else {
    // User-defined pieces are cut out first, longest first at each position; the text between
    // them is pre-tokenized as usual.
    size_t plain = 0;
    for (size_t i = 0; i < text.size();) {
      if (!user_first_[static_cast<uint8_t>(text[i])]) {
        ++i;
        continue;
      }
      const auto hit = std::find_if(user_defined_.begin(), user_defined_.end(),
                                    [&](const auto& u) { return text.substr(i).starts_with(u.first); });
      if (hit == user_defined_.end()) {
        ++i;
        continue;
      }
      if (i > plain) pre_->split(text.substr(plain, i - plain), word);
      out.push_back(hit->second);
      i += hit->first.size();
      plain = i;
    }
    if (plain < text.size()) pre_->split(text.substr(plain), word);
  }
  if (add_eos) {
    if (vocab_.eos_id < 0) fail("{}: tokenizer has no EOS piece", source_);
    out.push_back(vocab_.eos_id);
  }
  return out;
}

std::unique_ptr<Tokenizer> make_bpe_tokenizer(BpeVocab vocab, const std::string& source) {
  if (vocab.byte_level) return std::make_unique<ByteBpeTokenizer>(std::move(vocab), source);
  return std::make_unique<BpeTokenizer>(std::move(vocab), source);
}

}  // namespace la
