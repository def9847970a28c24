#include "la/data/synthetic.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

#include "la/core/error.h"
#include "la/core/mapped_file.h"
#include "la/core/rng.h"
#include "la/tokenizer/tokenizer.h"

namespace la {

namespace {

struct Rng : SplitMix64 {
  int64_t below(int64_t n) { return static_cast<int64_t>(SplitMix64::below(static_cast<uint64_t>(n))); }
  template <typename T>
  const T& pick(const std::vector<T>& v) {
    return v[static_cast<size_t>(below(static_cast<int64_t>(v.size())))];
  }
};

const std::vector<std::string> kWords = {"apple",  "river",  "garden", "window", "pencil", "rocket", "candle",
                                         "forest", "silver", "monkey", "planet", "bridge", "yellow", "button",
                                         "castle", "dragon", "winter", "orange", "turtle", "guitar", "mirror",
                                         "cookie", "island", "basket", "rabbit", "summer", "violin", "anchor"};
const std::vector<std::pair<std::string, std::string>> kColours = {
    {"the sky on a clear day", "blue"}, {"fresh grass", "green"}, {"snow", "white"},       {"coal", "black"},
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

}  // namespace la
