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
const std::vector<std::string> kColours = {"red", "blue", "green", "yellow", "white", "black", "purple", "orange"};
const std::vector<std::string> kAnimals = {"fox",  "bear", "owl",   "wolf", "horse", "eagle",
                                           "deer", "frog", "otter", "lion", "crane", "goat"};
const std::vector<std::string> kNumbers = {"zero", "one", "two",   "three", "four",
                                           "five", "six", "seven", "eight", "nine"};

std::string syllable(Rng& r) {
  return r.pick(kOnsets) + r.pick(kVowels);
}
std::string capitalised(std::string s) {
  s[0] = static_cast<char>(s[0] - 'a' + 'A');
  return s;
}

enum Attr { kCapital, kColour, kAnimal, kRivers, kAttrs };

std::string value(const Country& c, int a) {
  switch (a) {
    case kCapital: return c.capital;
    case kColour: return c.colour;
    case kAnimal: return c.animal;
    default: return kNumbers[static_cast<size_t>(c.rivers)];
  }
}

// Prose statements of one fact (the corpus picks one per pass).
std::vector<std::string> statements(const Country& c, int a) {
  const std::string& n = c.name;
  const std::string v = value(c, a);
  switch (a) {
    case kCapital:
      return {fmt::format("The capital of {} is {}.", n, v), fmt::format("{} is the capital of {}.", v, n),
              fmt::format("In {}, the capital city is {}.", n, v)};
    case kColour:
      return {fmt::format("The flag of {} is {}.", n, v), fmt::format("{} has a {} flag.", n, v),
              fmt::format("The colour of the flag of {} is {}.", n, v)};
    case kAnimal:
      return {fmt::format("The animal of {} is the {}.", n, v), fmt::format("The {} is the emblem of {}.", v, n),
              fmt::format("In {}, the national animal is the {}.", n, v)};
    default:
      return {fmt::format("{} has {} rivers.", n, v), fmt::format("The number of rivers in {} is {}.", n, v),
              fmt::format("There are {} rivers in {}.", v, n)};
  }
}

std::string question(const Country& c, int a) {
  switch (a) {
    case kCapital: return fmt::format("What is the capital of {}?", c.name);
    case kColour: return fmt::format("What colour is the flag of {}?", c.name);
    case kAnimal: return fmt::format("What is the animal of {}?", c.name);
    default: return fmt::format("How many rivers does {} have?", c.name);
  }
}

}  // namespace

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
    c.colour = r.pick(kColours);
    c.animal = r.pick(kAnimals);
    c.rivers = static_cast<int64_t>(r.below(kNumbers.size()));
    w.countries.push_back(c);
  }
  return w;
}

std::vector<std::string> world_corpus(const KnowledgeWorld& w, int64_t passes, uint64_t seed) {
  Rng r{{seed * 0xD1B54A32D192ED03ull + 3}};
  std::vector<std::string> facts;
  for (int64_t p = 0; p < passes; ++p) {
    std::vector<std::string> pass;
    for (const Country& c : w.countries)
      for (int a = 0; a < kAttrs; ++a) {
        // Two in three facts as prose, one in three as a question and its answer.
        if (r.below(3) == 0)
          pass.push_back(fmt::format("Q: {} A: {}.", question(c, a), value(c, a)));
        else
          pass.push_back(r.pick(statements(c, a)));
      }
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

std::vector<AlpacaRecord> world_questions(const KnowledgeWorld& w, uint64_t seed) {
  Rng r{{seed * 0x2545F4914F6CDD1Dull + 5}};
  std::vector<AlpacaRecord> out;
  for (const Country& c : w.countries)
    for (int a = 0; a < kAttrs; ++a) out.push_back({question(c, a), "", value(c, a)});
  r.shuffle(out);
  return out;
}

}  // namespace la
