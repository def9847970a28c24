#include "la/tokenizer/bpe_trainer.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <string_view>

#include "la/core/error.h"

namespace la {

namespace {
constexpr std::string_view kSpace = "\xE2\x96\x81";  // '▁'
}  // namespace

BpeVocab train_bpe_vocab(const std::vector<std::string>& texts, int64_t vocab_size) {
  // Words as SentencePiece sees them: spaces become '▁', each word carries its leading '▁'; a
  // word also ends where letters (and digits) meet punctuation, and at every line break, so no
  // piece spans "?\n" or ":The" (SentencePiece splits by script the same way). Without that,
  // pieces like "?\nAnswer:" form, and a text that puts the same words after another character
  // ("### Response:The") gets pieces the model never saw.
  std::map<std::string, int64_t> word_freq;
  enum Class { kWord, kPunct, kBreak };
  auto class_of = [](unsigned char c) {
    if (c == '\n' || c == '\r') return kBreak;
    return (std::isalnum(c) || c >= 0x80) ? kWord : kPunct;
  };
  for (const auto& t : texts) {
    std::string word(kSpace);  // the dummy prefix
    int last = -1;             // the class of the word's last character; -1 after a '▁' alone
    auto flush = [&] {
      if (!word.empty()) ++word_freq[word];
      word.clear();
      last = -1;
    };
    for (char ch : t) {
      const auto c = static_cast<unsigned char>(ch);
      if (c == ' ') {
        flush();
        word = kSpace;
        continue;
      }
      const int k = class_of(c);
      if (last != -1 && (k != last || k == kBreak)) flush();
      word += ch;
      last = k;
    }
    flush();
  }
  // Each word as a list of UTF-8 characters.
  std::vector<std::pair<std::vector<std::string>, int64_t>> words;
  std::map<std::string, int64_t> alphabet;
  for (const auto& [w, f] : word_freq) {
    std::vector<std::string> chars;
    for (size_t i = 0; i < w.size();) {
      size_t n = utf8_char_length(std::string_view(w).substr(i));
      if (n == 0) n = 1;
      chars.push_back(w.substr(i, n));
      alphabet[chars.back()] += f;
      i += n;
    }
    words.emplace_back(std::move(chars), f);
  }
  BpeVocab v;
  auto add = [&](const std::string& p, float score, PieceType t) {
    v.pieces.push_back(p);
    v.scores.push_back(score);
    v.types.push_back(t);
  };
  add("<unk>", 0, PieceType::Unknown);
  add("<s>", 0, PieceType::Control);
  add("</s>", 0, PieceType::Control);
  v.unk_id = 0;
  v.bos_id = 1;
  v.eos_id = 2;
  for (int b = 0; b < 256; ++b) add(fmt::format("<0x{:02X}>", b), 0, PieceType::Byte);
  const auto merges = std::max<int64_t>(0, vocab_size - static_cast<int64_t>(v.pieces.size() + alphabet.size()));
  // Characters rank below every merge; the more frequent first.
  std::vector<std::pair<int64_t, std::string>> chars;
  for (const auto& [c, f] : alphabet) chars.emplace_back(-f, c);
  std::sort(chars.begin(), chars.end());
  for (size_t i = 0; i < chars.size(); ++i)
    add(chars[i].second, -static_cast<float>(merges + static_cast<int64_t>(i)), PieceType::Normal);
  for (int64_t m = 0; m < merges; ++m) {
    std::map<std::pair<std::string, std::string>, int64_t> pairs;
    for (const auto& [sym, f] : words)
      for (size_t i = 0; i + 1 < sym.size(); ++i) pairs[{sym[i], sym[i + 1]}] += f;
    if (pairs.empty()) break;
    auto best = pairs.begin();
    for (auto it = pairs.begin(); it != pairs.end(); ++it)
      if (it->second > best->second) best = it;  // ties: the first in lexical order
    const std::string merged = best->first.first + best->first.second;
    // Two different splits can spell the same piece: keep the first (higher-scored) one.
    if (std::find(v.pieces.begin(), v.pieces.end(), merged) == v.pieces.end())
      add(merged, -static_cast<float>(m), PieceType::Normal);
    for (auto& [sym, f] : words) {
      std::vector<std::string> out;
      for (size_t i = 0; i < sym.size(); ++i) {
        if (i + 1 < sym.size() && sym[i] == best->first.first && sym[i + 1] == best->first.second) {
          out.push_back(merged);
          ++i;
        } else {
          out.push_back(sym[i]);
        }
      }
      sym = std::move(out);
    }
  }
  v.add_dummy_prefix = true;
  v.remove_extra_whitespaces = false;
  return v;
}

}  // namespace la
