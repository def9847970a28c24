#include "la/demo/synthetic.h"

#include <algorithm>
#include <map>

#include <nlohmann/json.hpp>

#include "la/core/error.h"
#include "la/core/rng.h"
#include "la/core/mapped_file.h"
#include "la/tokenizer/tokenizer.h"

namespace la {

namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // '▁'

struct Rng : SplitMix64 {
  int64_t below(int64_t n) { return static_cast<int64_t>(SplitMix64::below(static_cast<uint64_t>(n))); }
  template <typename T>
  const T& pick(const std::vector<T>& v) {
    return v[static_cast<size_t>(below(static_cast<int64_t>(v.size())))];
  }
};

const std::vector<std::string> kWords = {"apple", "river", "garden", "window", "pencil", "rocket", "candle",
                                         "forest", "silver", "monkey", "planet", "bridge", "yellow", "button",
                                         "castle", "dragon", "winter", "orange", "turtle", "guitar", "mirror",
                                         "cookie", "island", "basket", "rabbit", "summer", "violin", "anchor"};
const std::vector<std::pair<std::string, std::string>> kColours = {
    {"the sky on a clear day", "blue"}, {"fresh grass", "green"}, {"snow", "white"},   {"coal", "black"},
    {"a ripe banana", "yellow"},        {"a ripe tomato", "red"}, {"an orange", "orange"}, {"a plum", "purple"}};

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

std::vector<AlpacaRecord> synthetic_instructions(int64_t n, uint64_t seed) {
  Rng r{{seed * 0x2545F4914F6CDD1Dull + 1}};
  std::vector<AlpacaRecord> out;
  out.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    AlpacaRecord rec;
    switch (r.below(6)) {
      case 0: {
        const std::string& w = r.pick(kWords);
        rec.instruction = "Reverse the letters of the word.";
        rec.input = w;
        rec.output = std::string(w.rbegin(), w.rend());
        break;
      }
      case 1: {
        const int64_t a = r.below(50), b = r.below(50);
        rec.instruction = "Add the two numbers.";
        rec.input = fmt::format("{} and {}", a, b);
        rec.output = fmt::format("The sum is {}.", a + b);
        break;
      }
      case 2: {
        const std::string p = r.pick(kWords) + " " + r.pick(kWords);
        rec.instruction = "Write the phrase in capital letters.";
        rec.input = p;
        rec.output = upper(p);
        break;
      }
      case 3: {
        const std::string& w = r.pick(kWords);
        rec.instruction = fmt::format("How many letters are in the word \"{}\"?", w);
        rec.output = fmt::format("The word \"{}\" has {} letters.", w, w.size());
        break;
      }
      case 4: {
        const auto& [thing, colour] = r.pick(kColours);
        rec.instruction = fmt::format("What colour is {}?", thing);
        rec.output = fmt::format("It is {}.", colour);
        break;
      }
      default: {
        const int64_t start = r.below(20), step = 1 + r.below(5);
        rec.instruction = "Continue the sequence with the next three numbers.";
        rec.input = fmt::format("{}, {}, {}", start, start + step, start + 2 * step);
        rec.output = fmt::format("{}, {}, {}", start + 3 * step, start + 4 * step, start + 5 * step);
        break;
      }
    }
    out.push_back(std::move(rec));
  }
  return out;
}

void write_alpaca_json(const std::vector<AlpacaRecord>& records, const std::string& path) {
  nlohmann::ordered_json j = nlohmann::ordered_json::array();
  for (const auto& r : records) j.push_back({{"instruction", r.instruction}, {"input", r.input}, {"output", r.output}});
  const std::string s = j.dump(1);
  write_file_atomic(path, s.data(), s.size());
}

BpeVocab train_bpe_vocab(const std::vector<std::string>& texts, int64_t vocab_size) {
  // Words as SentencePiece sees them: spaces become '▁', each word carries its leading '▁'.
  std::map<std::string, int64_t> word_freq;
  for (const auto& t : texts) {
    std::string norm(kSpace);
    for (char c : t) {
      if (c == ' ') norm += kSpace;
      else norm += c;
    }
    size_t start = 0;
    while (start < norm.size()) {
      size_t next = norm.find(kSpace, start + kSpace.size());
      if (next == std::string::npos) next = norm.size();
      ++word_freq[norm.substr(start, next - start)];
      start = next;
    }
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
  for (size_t i = 0; i < chars.size(); ++i) add(chars[i].second, -static_cast<float>(merges + static_cast<int64_t>(i)), PieceType::Normal);
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
