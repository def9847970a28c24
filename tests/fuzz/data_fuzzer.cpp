// libFuzzer target for the Alpaca data reader: la::load_alpaca (a JSON array of records or JSONL,
// told apart by content), then la::tokenize_alpaca on what it loads. Not part of the CMake build:
// see tests/fuzz/README.md. The deterministic counterpart is tests/test_fuzz_inputs.cpp
// (AlpacaJsonMutants, AlpacaJsonlMutants).
//
// Every input must load records of well-formed UTF-8 that tokenize into examples within the
// limits, or make load_alpaca throw la::Error naming the file once on one line; anything else
// (tokenize_alpaca throwing included) aborts.
#include "fuzz_file.h"
#include "la/data/alpaca.h"
#include "la/data/dataset.h"
#include "la/tokenizer/bpe_trainer.h"

namespace {

const la::BpeTokenizer& tokenizer() {
  static const la::BpeTokenizer tok(la::train_bpe_vocab({la::alpaca_prompt("Reverse the letters of the word.", "river"),
                                                         "revir", la::alpaca_prompt("Add the two numbers.", "3 and 4"),
                                                         "The sum is 7.", "h\xC3\xA9llo \xE4\xB8\x96\xE7\x95\x8C"},
                                                        320),
                                    "fuzz vocabulary");
  return tok;
}

bool valid_utf8(std::string_view s) {
  for (size_t pos = 0; pos < s.size();) {
    const int n = la::utf8_char_length(s.substr(pos));
    if (n <= 0) return false;
    pos += static_cast<size_t>(n);
  }
  return true;
}

volatile int64_t g_sink;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using la_fuzz::check;
  const std::string& path = la_fuzz::write_input(data, size);
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<la::AlpacaRecord> recs;
  try {
    recs = la::load_alpaca(path);
  } catch (const la::Error& e) {
    la_fuzz::check_error(e, path, input);
    return 0;
  }
  check(!recs.empty(), "no records and no error");
  for (const auto& r : recs)
    check(valid_utf8(r.instruction) && valid_utf8(r.input) && valid_utf8(r.output), "a record is not UTF-8");
  const la::BpeTokenizer& tok = tokenizer();
  for (int64_t max_len : {2, 64}) {
    const la::TokenizedDataset ds = la::tokenize_alpaca(recs, tok, max_len);  // must not throw
    check(ds.examples.size() == recs.size(), "an example per record");
    for (const la::Example& ex : ds.examples) {
      check(ex.tokens.size() >= 2 && static_cast<int64_t>(ex.tokens.size()) <= max_len, "example length");
      check(ex.tokens.front() == tok.bos_id() && ex.prompt_len >= 1, "example start");
      for (int id : ex.tokens) check(id >= 0 && id < tok.vocab_size(), "token id out of range");
    }
    g_sink = ds.total_tokens + ds.supervised_tokens;
  }
  return 0;
}
