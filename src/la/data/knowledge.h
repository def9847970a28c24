// The embedded default's knowledge (SPEC §13): a made-up world a small model can learn in about a
// minute, so that a LLaMA-Adapter has something to unlock. Countries with invented names, each
// with a capital, a colour (its flag's), an animal (its emblem) and a number (its rivers). The
// pre-training corpus states every fact in prose, several ways, and as question-and-answer
// lines ("Q: ... A: ..."); the instruction data asks the same questions in the Alpaca template,
// which the corpus never shows. A base model trained on the corpus knows the answers but does
// not follow the template; an adapter trained on some of the questions answers the others.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "la/data/dataset.h"

namespace la {

struct Country {
  std::string name, capital, colour, animal;
  int64_t rivers = 0;
};

struct KnowledgeWorld {
  std::vector<Country> countries;
};

// `n` countries with distinct names and capitals, from `seed`.
KnowledgeWorld make_world(int64_t n, uint64_t seed);

// The corpus: `passes` shuffled passes over every fact, each pass stating each fact once in a
// template picked at random; documents of a few facts each.
std::vector<std::string> world_corpus(const KnowledgeWorld& w, int64_t passes, uint64_t seed);

// Every question the instruction data can ask (one per country and attribute), as Alpaca
// records with the one-word (or number) answer as output, in a seeded order.
std::vector<AlpacaRecord> world_questions(const KnowledgeWorld& w, uint64_t seed);

}  // namespace la
