// libFuzzer target for the tokenizer readers: la::load_tokenizer on a llama2.c tokenizer.bin, a
// GGUF file's vocabulary or a SentencePiece .model (told apart by content); a tokenizer that
// loads then encodes and decodes a few texts. Not part of the CMake build: see
// tests/fuzz/README.md. The deterministic counterpart is tests/test_fuzz_inputs.cpp
// (Llama2cTokenizerMutants, GgufVocabMutants, SentencePieceMutants).
//
// Every input must load a tokenizer whose encodings are ids in range and whose decodings are
// UTF-8 (streamed the same as whole), or throw la::Error naming the file once on one line;
// anything else aborts.
#include "fuzz_file.h"
#include "la/tokenizer/tokenizer.h"

namespace {

bool valid_utf8(std::string_view s) {
  for (size_t pos = 0; pos < s.size();) {
    const int n = la::utf8_char_length(s.substr(pos));
    if (n <= 0) return false;
    pos += static_cast<size_t>(n);
  }
  return true;
}

const std::string kTexts[] = {"",
                              "Reverse the letters of the word.",
                              "  two  spaces,\ttab\nnewline  ",
                              "h\xC3\xA9llo \xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x99\x82 <|x|> <s> </s> <unk>",
                              "bad \xFF\xC0\x80\xED\xA0\x80 bytes \xE2\x96\x81\xE2\x96\x81",
                              std::string("nul\0byte", 8)};

volatile size_t g_sink;

void check_decode(const la::Tokenizer& tok, const std::vector<int>& ids) {
  const std::string text = tok.decode(ids);
  la_fuzz::check(valid_utf8(text), "decode is not UTF-8");
  la::StreamDecoder sd(tok);
  std::string streamed;
  for (int id : ids) streamed += sd.push(id);
  streamed += sd.flush();
  la_fuzz::check(streamed == text, "streamed decode differs from decode");
  g_sink = text.size();
}

void exercise(const la::Tokenizer& tok) {
  using la_fuzz::check;
  const int n = tok.vocab_size();
  check(n > 0, "empty vocabulary");
  for (const std::string& t : kTexts) {
    std::vector<int> ids = tok.encode(t, false, false);  // must not throw
    for (int id : ids) check(id >= 0 && id < n, "encoded id out of range");
    check_decode(tok, ids);
    if (tok.bos_id() >= 0 && tok.eos_id() >= 0) {
      ids = tok.encode(t, true, true);
      check(ids.front() == tok.bos_id() && ids.back() == tok.eos_id(), "BOS / EOS");
      check_decode(tok, ids);
    }
  }
  std::vector<int> all;
  for (int id = 0; id < n && id < 600; ++id) {
    all.push_back(id);
    g_sink = tok.piece(id).size() + tok.piece_bytes(id).size();
  }
  check_decode(tok, all);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = la_fuzz::write_input(data, size);
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::unique_ptr<la::Tokenizer> tok;
  try {
    tok = la::load_tokenizer(path);
  } catch (const la::Error& e) {
    la_fuzz::check_error(e, path, input);
    return 0;
  }
  exercise(*tok);
  return 0;
}
