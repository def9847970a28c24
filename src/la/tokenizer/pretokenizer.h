// The pre-tokenizers of byte-level BPE vocabularies (GPT-2, Llama-3, Qwen2, ...): before BPE
// runs, the text is cut into words by a sequence of regular expressions, and no merge ever
// crosses a cut. Each expression cuts every piece the previous ones left: its matches and the
// gaps between them both become pieces (Hugging Face's Split with behaviour "Isolated", as
// llama.cpp applies its lists). The expressions are the vocabularies' own, run by PCRE2 (JIT):
// their Unicode properties (\p{L}, \p{N}, \s) and look-aheads are Perl/Oniguruma syntax, which
// PCRE2 implements as written, so no hand translation can drift from the source.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace la {

class PreTokenizer {
 public:
  // The pre-tokenizer GGUF names in tokenizer.ggml.pre: gpt2, llama-bpe, qwen2, deepseek-llm,
  // falcon, starcoder, refact, and the names llama.cpp gives the same expressions (gpt-2,
  // llama3, roberta-bpe, smollm, ...). An unknown name throws la::Error naming `source`: a wrong
  // split gives wrong ids silently, so there is no fallback.
  static std::shared_ptr<const PreTokenizer> named(const std::string& name, const std::string& source);

  // Explicit expressions (a tokenizer.json's Split patterns). A pattern PCRE2 cannot compile
  // throws la::Error naming `source` and the pattern.
  static std::shared_ptr<const PreTokenizer> from_regexes(const std::vector<std::string>& regexes,
                                                          const std::string& source);

  // The expressions of a known name, or nullptr.
  static const std::vector<std::string>* regexes_of(const std::string& name);
  // The canonical name whose expressions are exactly `regexes`, or "" when none is.
  static std::string name_of(const std::vector<std::string>& regexes);

  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  // Calls word(piece) for each piece of `text` in order; the pieces concatenate to `text`.
  // Bytes that are not well-formed UTF-8 are pieces of their own (byte-level BPE still encodes
  // them); the expressions see only the well-formed runs between them.
  template <typename F>
  void split(std::string_view text, F&& word) const {
    using Fn = std::remove_reference_t<F>;
    split_impl(
        text, [](void* ctx, std::string_view piece) { (*static_cast<Fn*>(ctx))(piece); },
        const_cast<void*>(static_cast<const void*>(&word)));
  }

  const std::vector<std::string>& regexes() const { return regexes_; }
  const std::string& name() const { return name_; }

 private:
  struct Compiled;
  using Callback = void (*)(void*, std::string_view);
  PreTokenizer(std::vector<std::string> regexes, std::string name, const std::string& source);
  void split_impl(std::string_view text, Callback cb, void* ctx) const;
  void split_level(std::string_view text, size_t level, Callback cb, void* ctx, void* match_data) const;

  std::vector<std::string> regexes_;
  std::string name_;
  std::vector<std::unique_ptr<Compiled>> compiled_;
};

}  // namespace la
