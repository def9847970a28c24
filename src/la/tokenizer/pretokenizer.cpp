// PCRE2 runs the expressions; see pretokenizer.h for why a regex library rather than hand-written
// scanners. PCRE2 is Debian's libpcre2-dev (8-bit code units: our text is UTF-8).
#define PCRE2_CODE_UNIT_WIDTH 8
#include "la/tokenizer/pretokenizer.h"

#include <pcre2.h>

#include <algorithm>
#include <map>
#include <mutex>

#include "la/core/error.h"
#include "la/tokenizer/tokenizer.h"

namespace la {
namespace {

// The GPT-2 expression without its final "|\s+": llama.cpp's form. The alternative only ever
// matched what the split keeps as a gap anyway, so both give the same pieces.
constexpr const char* kGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
// Llama-3's expression with its case-insensitive contractions spelled out in ASCII, as llama.cpp
// does: PCRE2's caseless matching would also fold U+017F and U+212A onto s and k.
constexpr const char* kLlama3 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Qwen2: Llama-3's with single digits.
constexpr const char* kQwen2 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// DeepSeek LLM's letters: the Latin, Greek, Cyrillic, Armenian, Georgian, Cherokee ... ranges of
// its tokenizer.json, literally.
constexpr const char* kDeepseekLetters =
    R"(\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+)";

struct Known {
  const char* name;
  std::vector<std::string> regexes;
};

const std::vector<Known>& known() {
  static const std::vector<Known> table = {
      {"gpt2", {kGpt2}},
      {"llama-bpe", {kLlama3}},
      {"qwen2", {kQwen2}},
      {"deepseek-llm",
       {R"([\r\n])", kDeepseekLetters, R"(\s?[!-/:-~！-／：-～‘-‟　-。]+)", R"(\s+$)", R"([一-龥ࠀ-一가-퟿]+)",
        R"(\p{N}+)"}},
      {"falcon", {R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2, R"([0-9][0-9][0-9])"}},
      {"starcoder", {R"(\p{N})", kGpt2}},
      // What llama.cpp applies to a GGUF without tokenizer.ggml.pre (files older than the key).
      {"default", {R"([\p{P}\$\+<=>\^~\|]+)", kGpt2, R"(\p{N}+)", R"([0-9][0-9][0-9])"}},
  };
  return table;
}

// Names llama.cpp gives the same expressions (its convert script's tokenizer.ggml.pre values).
const std::map<std::string, std::string>& aliases() {
  static const std::map<std::string, std::string> table = {
      {"gpt-2", "gpt2"},
      {"mpt", "gpt2"},
      {"olmo", "gpt2"},
      {"jais", "gpt2"},
      {"phi-2", "gpt2"},
      {"roberta-bpe", "gpt2"},
      {"llama3", "llama-bpe"},
      {"llama-v3", "llama-bpe"},
      {"dbrx", "llama-bpe"},
      {"smaug-bpe", "llama-bpe"},
      {"falcon3", "llama-bpe"},
      {"stablelm2", "qwen2"},
      {"deepseek-r1-qwen", "qwen2"},
      {"refact", "starcoder"},
      {"smollm", "starcoder"},
      {"command-r", "starcoder"},
      {"codeshell", "starcoder"},
      {"exaone", "starcoder"},
      {"minerva-7b", "starcoder"},
  };
  return table;
}

const Known* find_known(const std::string& name) {
  std::string canonical = name;
  if (auto it = aliases().find(name); it != aliases().end()) canonical = it->second;
  for (const Known& k : known())
    if (k.name == canonical) return &k;
  return nullptr;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}

}  // namespace

struct PreTokenizer::Compiled {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Compiled() { pcre2_code_free(code); }
};

PreTokenizer::PreTokenizer(std::vector<std::string> regexes, std::string name, const std::string& source)
    : regexes_(std::move(regexes)), name_(std::move(name)) {
  if (regexes_.empty()) fail("{}: a pre-tokenizer needs at least one expression", source);
  for (const std::string& re : regexes_) {
    auto c = std::make_unique<Compiled>();
    int err = 0;
    PCRE2_SIZE offset = 0;
    c->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(re.data()), re.size(), PCRE2_UTF | PCRE2_UCP, &err, &offset,
                            nullptr);
    if (!c->code)
      fail("{}: pre-tokenizer expression '{}' does not compile at offset {}: {}", source, printable(re), offset,
           pcre2_message(err));
    c->jit = pcre2_jit_compile(c->code, PCRE2_JIT_COMPLETE) == 0;  // without JIT support: the interpreter
    compiled_.push_back(std::move(c));
  }
}

PreTokenizer::~PreTokenizer() = default;

std::shared_ptr<const PreTokenizer> PreTokenizer::named(const std::string& name, const std::string& source) {
  const Known* k = find_known(name);
  if (!k) {
    std::string names;
    for (const Known& n : known()) names += (names.empty() ? "" : ", ") + std::string(n.name);
    fail(
        "{}: pre-tokenizer '{}' is not implemented (known: {} and their aliases); refusing rather than giving "
        "wrong ids",
        source, printable(name), names);
  }
  // Compiled once per process and shared: JIT compilation of the larger expressions takes ~1 ms.
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<const PreTokenizer>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[k->name];
  if (!slot) slot.reset(new PreTokenizer(k->regexes, k->name, source));
  return slot;
}

std::shared_ptr<const PreTokenizer> PreTokenizer::from_regexes(const std::vector<std::string>& regexes,
                                                               const std::string& source) {
  const std::string name = name_of(regexes);
  if (!name.empty()) return named(name, source);
  return std::shared_ptr<const PreTokenizer>(new PreTokenizer(regexes, "", source));
}

namespace {
// A tokenizer.json spells some known expressions differently from llama.cpp's lists, with the
// same pieces as the result (see kGpt2 and kLlama3).
std::string canonical(std::string re) {
  static const std::pair<std::string_view, std::string_view> kSpellings[] = {
      {R"((?i:'s|'t|'re|'ve|'m|'ll|'d))", R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]))"},
  };
  for (const auto& [from, to] : kSpellings)
    if (re.starts_with(from)) re = std::string(to) + re.substr(from.size());
  if (re == std::string(kGpt2) + R"(|\s+)") re = kGpt2;
  return re;
}
}  // namespace

const std::vector<std::string>* PreTokenizer::regexes_of(const std::string& name) {
  const Known* k = find_known(name);
  return k ? &k->regexes : nullptr;
}

std::string PreTokenizer::name_of(const std::vector<std::string>& regexes) {
  std::vector<std::string> spelled;
  for (const std::string& re : regexes) spelled.push_back(canonical(re));
  for (const Known& k : known())
    if (k.regexes == spelled) return k.name;
  return "";
}

void PreTokenizer::split_impl(std::string_view text, Callback cb, void* ctx) const {
  pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
  if (!md) fail("out of memory for the pre-tokenizer's match data");
  try {
    size_t pos = 0;
    while (pos < text.size()) {
      // A well-formed run for the expressions, then each malformed byte on its own.
      size_t end = pos;
      while (end < text.size()) {
        const int n = utf8_char_length(text.substr(end));
        if (n == 0) break;
        end += static_cast<size_t>(n);
      }
      if (end > pos) split_level(text.substr(pos, end - pos), 0, cb, ctx, md);
      if (end < text.size()) cb(ctx, text.substr(end, 1));
      pos = end + 1;
      if (end >= text.size()) break;
    }
  } catch (...) {
    pcre2_match_data_free(md);
    throw;
  }
  pcre2_match_data_free(md);
}

void PreTokenizer::split_level(std::string_view text, size_t level, Callback cb, void* ctx, void* match_data) const {
  if (level == compiled_.size()) {
    cb(ctx, text);
    return;
  }
  auto* md = static_cast<pcre2_match_data*>(match_data);
  const Compiled& c = *compiled_[level];
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t gap = 0;  // start of the text not yet handed on
  size_t from = 0;
  while (from < text.size()) {
    // The run is well-formed UTF-8 (split_impl checked it), so PCRE2 need not check it again.
    int rc = c.jit ? pcre2_jit_match(c.code, subject, text.size(), from, PCRE2_NO_UTF_CHECK, md, nullptr)
                   : PCRE2_ERROR_JIT_STACKLIMIT;
    // The interpreter keeps its backtracking on the heap: it takes over where the JIT's fixed
    // stack runs out (or where there is no JIT).
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
      rc = pcre2_match(c.code, subject, text.size(), from, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) fail("pre-tokenizer: expression '{}' failed: {}", printable(regexes_[level]), pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t b = ov[0], e = ov[1];
    if (e == b) {  // an empty match cuts nothing: search again one character on
      const int n = utf8_char_length(text.substr(b));
      from = b + static_cast<size_t>(std::max(n, 1));
      continue;
    }
    if (b > gap) split_level(text.substr(gap, b - gap), level + 1, cb, ctx, md);
    split_level(text.substr(b, e - b), level + 1, cb, ctx, md);
    gap = from = e;
  }
  if (gap < text.size()) split_level(text.substr(gap), level + 1, cb, ctx, md);
}

}  // namespace la
