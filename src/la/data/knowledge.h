// The embedded default's knowledge (SPEC §13): a made-up world a small model learns in about a
// minute, so that a LLaMA-Adapter has something to unlock. Countries with invented names, each
// with an invented capital. The pre-training corpus states every capital many times, in prose
// and as questions with their answers, worded many ways: the capital one to several words after
// the country's name, and questions answered on the next line or after a line of other text, so
// that a base learns "the capital of the country asked about" rather than "the word so many
// places on". The instruction data asks "What is the capital of X?" in the Alpaca template,
// which the corpus never shows, and wants "It is Y." back (as the corpus answers it). A base
// trained on the corpus knows the capitals but does not follow the template; an adapter trained
// on some of the countries answers for the others.
//
// Measured while designing it (dim 128, 4 layers, 250-300 steps): one fact per country, not
// several (facts keyed by country and attribute, a two-key lookup, were 12% learned where one-key
// facts were 96%); an answer the base can give without copying the country's name; and the
// answers after intervening text (with every answer on the question's next line, the base could
// not answer across the template's "### Response:" and the adapter reached 1% instead of ~90%).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "la/data/dataset.h"

namespace la {

struct Country {
  std::string name, capital;
};

struct KnowledgeWorld {
  std::vector<Country> countries;
};

// `n` countries with distinct names and capitals, from `seed`.
KnowledgeWorld make_world(int64_t n, uint64_t seed);

// The corpus: `passes` shuffled passes over every country, each pass stating its capital once in
// a wording picked at random; documents of a few facts each, one per line.
std::vector<std::string> world_corpus(const KnowledgeWorld& w, int64_t passes, uint64_t seed);

// The countries in a seeded order (the demo splits it into training and held-out questions).
std::vector<Country> shuffled_countries(const KnowledgeWorld& w, uint64_t seed);

// The instruction about `c`: "What is the capital of <name>?", answered by a whole sentence,
// "The capital of <name> is <capital>." (the corpus's commonest wording: the adapter has to
// learn to answer in it, and to take the name from the instruction; the capital is the base's).
AlpacaRecord capital_record(const Country& c);

}  // namespace la
