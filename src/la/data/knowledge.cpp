#include "la/data/knowledge.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "la/core/error.h"
#include "la/core/rng.h"

namespace la {

namespace {

struct Rng : SplitMix64 {
  size_t below(size_t n) { return static_cast<size_t>(SplitMix64::below(n)); }
  template <typename T>
  const T& pick(const std::vector<T>& v) {
    return v[below(v.size())];
  }
  template <typename T>
  void shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
  }
};

const std::vector<std::string> kOnsets = {"b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z"};
const std::vector<std::string> kVowels = {"a", "e", "i", "o", "u"};
const std::vector<std::string> kCountryEnds = {"land", "ria", "stan", "via", "mar", "dor"};

std::string syllable(Rng& r) {
  return r.pick(kOnsets) + r.pick(kVowels);
}
std::string capitalised(std::string s) {
  s[0] = static_cast<char>(s[0] - 'a' + 'A');
  return s;
}

// Every wording of "the capital of n is v": the country always before its capital, the capital
// one to several words after it, questions answered on the next line or after other text.
std::vector<std::string> wordings(const std::string& n, const std::string& v) {
  return {fmt::format("The capital of {} is {}.", n, v),
          fmt::format("In {}, the capital city is {}.", n, v),
          fmt::format("{} has its capital at {}.", n, v),
          fmt::format("Capital of {}: {}.", n, v),
          fmt::format("Q: What is the capital of {}? A: {}.", n, v),
          fmt::format("Question: Which city is the capital of {}?\nAnswer: {}.", n, v),
          fmt::format("What is the capital of {}?\nIt is {}.", n, v),
          fmt::format("What is the capital of {}?\nLet me think.\nIt is {}.", n, v),
          fmt::format("What is the capital of {}? Good question.\nIt is {}.", n, v),
          fmt::format("What is the capital of {}?\nI know this one: it is {}.", n, v)};
}

}  // namespace

AlpacaRecord capital_record(const Country& c) {
  return {fmt::format("What is the capital of {}?", c.name), "", fmt::format("It is {}.", c.capital)};
}

KnowledgeWorld make_world(int64_t n, uint64_t seed) {
  if (n <= 0) fail("a world needs at least one country");
  Rng r{{seed * 0x9E3779B97F4A7C15ull + 7}};
  KnowledgeWorld w;
  std::set<std::string> used;
  auto fresh = [&](auto make) {
    for (int tries = 0; tries < 10000; ++tries) {
      std::string s = make();
      if (used.insert(s).second) return s;
    }
    fail("cannot make {} distinct names", n);
  };
  for (int64_t i = 0; i < n; ++i) {
    Country c;
    c.name = fresh([&] { return capitalised(syllable(r) + syllable(r) + r.pick(kCountryEnds)); });
    c.capital = fresh([&] { return capitalised(syllable(r) + syllable(r) + syllable(r).substr(0, 1)); });
    w.countries.push_back(c);
  }
  return w;
}

std::vector<std::string> world_corpus(const KnowledgeWorld& w, int64_t passes, uint64_t seed) {
  Rng r{{seed * 0xD1B54A32D192ED03ull + 3}};
  std::vector<std::string> facts;
  for (int64_t p = 0; p < passes; ++p) {
    std::vector<std::string> pass;
    for (const Country& c : w.countries) pass.push_back(r.pick(wordings(c.name, c.capital)));
    r.shuffle(pass);
    facts.insert(facts.end(), pass.begin(), pass.end());
  }
  // Documents of four facts, one per line.
  std::vector<std::string> docs;
  for (size_t i = 0; i < facts.size(); i += 4) {
    std::string d;
    for (size_t j = i; j < std::min(facts.size(), i + 4); ++j) d += (d.empty() ? "" : "\n") + facts[j];
    docs.push_back(d);
  }
  return docs;
}

std::vector<Country> shuffled_countries(const KnowledgeWorld& w, uint64_t seed) {
  Rng r{{seed * 0x2545F4914F6CDD1Dull + 5}};
  std::vector<Country> out = w.countries;
  r.shuffle(out);
  return out;
}

}  // namespace la
