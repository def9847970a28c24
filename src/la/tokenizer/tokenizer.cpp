// The format-independent half of the tokenizers: decoding (whole and streamed), UTF-8 rules,
// format detection and finding the tokenizer that belongs to a model.
#include "la/tokenizer/tokenizer.h"

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "la/core/error.h"
#include "la/core/mapped_file.h"
#include "la/tokenizer/bpe_tokenizer.h"
#include "la/tokenizer/gguf_vocab.h"
#include "la/tokenizer/sp_tokenizer.h"

namespace la {
namespace {

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";      // U+2581 '▁'
constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

bool is_trail_byte(char c) {
  return (static_cast<uint8_t>(c) & 0xC0) == 0x80;
}

// Length a character starting with `lead` claims to have (2-4), 0 if `lead` cannot start one.
// SentencePiece accepts F0-F7 as 4-byte leads and rejects the result above U+10FFFF later.
size_t claimed_length(char lead) {
  const auto b = static_cast<uint8_t>(lead);
  if ((b & 0xE0) == 0xC0) return 2;
  if ((b & 0xF0) == 0xE0) return 3;
  if ((b & 0xF8) == 0xF0) return 4;
  return 0;
}

// True when `s` is the beginning of a character still waiting for its trail bytes: a streamed
// decoder must hold it back, since the next token may complete it.
bool is_incomplete_char(std::string_view s) {
  const size_t need = claimed_length(s[0]);
  if (need == 0 || s.size() >= need) return false;
  for (size_t i = 1; i < s.size(); ++i) {
    if (!is_trail_byte(s[i])) return false;
  }
  return true;
}

// Appends the well-formed part of `s` to `out` (U+FFFD for each malformed byte) and returns how
// many bytes were consumed; with `hold_incomplete`, stops before an unfinished final character.
size_t append_sanitized(std::string_view s, bool hold_incomplete, std::string& out) {
  size_t pos = 0;
  while (pos < s.size()) {
    if (static_cast<uint8_t>(s[pos]) < 0x80) {
      out.push_back(s[pos++]);
      continue;
    }
    const std::string_view rest = s.substr(pos);
    if (hold_incomplete && is_incomplete_char(rest)) break;
    const int length = utf8_char_length(rest);
    if (length > 0) {
      out.append(rest.substr(0, static_cast<size_t>(length)));
      pos += static_cast<size_t>(length);
    } else {
      out.append(kReplacementChar);
      ++pos;
    }
  }
  return pos;
}

// The text one token adds to a decoded sequence; `at_start` tracks SentencePiece's rule that
// only the first printed piece loses its leading '▁' (the dummy prefix). Control and unknown
// pieces print nothing and leave the start where it is.
std::string piece_text(const Tokenizer& tok, int id, bool& at_start) {
  std::string bytes = tok.piece_bytes(id);
  if (bytes.empty()) return bytes;
  if (at_start) {
    at_start = false;
    // piece(), not the bytes: a byte piece <0x20> is a real space and stays.
    if (tok.piece(id).starts_with(kSpaceSymbol)) bytes.erase(0, 1);
  }
  return bytes;
}

std::string strip_path(std::string_view message, const std::string& path) {
  const std::string prefix = path + ": ";
  if (message.starts_with(prefix)) message.remove_prefix(prefix.size());
  return std::string(message);
}

}  // namespace

int utf8_char_length(std::string_view s) {
  if (s.empty()) return 0;
  const auto b0 = static_cast<uint8_t>(s[0]);
  if (b0 < 0x80) return 1;
  const size_t n = claimed_length(s[0]);
  if (n == 0 || s.size() < n) return 0;
  uint32_t cp = b0 & (0x7F >> n);  // the lead byte's payload bits
  for (size_t i = 1; i < n; ++i) {
    if (!is_trail_byte(s[i])) return 0;
    cp = (cp << 6) | (static_cast<uint8_t>(s[i]) & 0x3F);
  }
  static constexpr uint32_t kMinForLength[5] = {0, 0, 0x80, 0x800, 0x10000};  // no overlong forms
  if (cp < kMinForLength[n]) return 0;
  if ((cp >= 0xD800 && cp < 0xE000) || cp > 0x10FFFF) return 0;  // surrogates, out of range
  return static_cast<int>(n);
}

std::string sanitize_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  append_sanitized(s, /*hold_incomplete=*/false, out);
  return out;
}

std::string Tokenizer::decode(const std::vector<int>& ids) const {
  std::string raw;
  bool at_start = true;
  for (int id : ids) raw += piece_text(*this, id, at_start);
  // Byte pieces may spell malformed UTF-8; SentencePiece prints U+FFFD for each bad byte.
  return sanitize_utf8(raw);
}

std::string StreamDecoder::push(int id) {
  pending_ += piece_text(tok_, id, at_start_);
  std::string out;
  pending_.erase(0, append_sanitized(pending_, /*hold_incomplete=*/true, out));
  return out;
}

std::string StreamDecoder::flush() {
  std::string out = sanitize_utf8(pending_);
  pending_.clear();
  at_start_ = true;
  return out;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  {
    // A GGUF model carries its vocabulary: map it (it may be gigabytes) rather than read it.
    auto f = MappedFile::open(path);
    if (f->size() >= 4 && std::memcmp(f->data(), "GGUF", 4) == 0)
      return std::make_unique<BpeTokenizer>(read_gguf_vocab(GgufFile::open(path)), path);
  }
  const std::string bytes = read_file(path);

  // A tokenizer.bin has no magic number, but its structure is strict (records that end exactly
  // at the end of the file), so trying it first is a reliable test. Sniffing the first byte
  // alone is not: a max_token_length of 10 (as in aidreams260K_tok512.bin) starts with 0x0A,
  // the tag of a ModelProto's first field.
  std::string bin_error;
  try {
    return std::make_unique<BpeTokenizer>(parse_llama2c_vocab(bytes, path), path);
  } catch (const Error& e) {
    bin_error = strip_path(e.what(), path);
  }
  if (!bytes.empty() && bytes[0] == 0x0A) {
    try {
      return std::make_unique<SpTokenizer>(bytes, path);
    } catch (const Error& e) {
      fail("{}: neither a SentencePiece model ({}) nor a llama2.c tokenizer.bin ({})", path, strip_path(e.what(), path),
           bin_error);
    }
  }
  fail("{}: {}", path, bin_error);
}

std::string find_tokenizer_for_model(const std::string& model_path, int vocab_size) {
  namespace fs = std::filesystem;
  const fs::path model(model_path);
  std::error_code ec;
  std::vector<fs::path> candidates;
  if (fs::is_directory(model, ec)) {
    candidates = {model / "tokenizer.model", model / "tokenizer.bin"};
    // Meta's downloads keep one tokenizer.model beside the model folders (llama-2-7b/, ...).
    if (fs::is_regular_file(model / "params.json", ec)) {
      fs::path dir = fs::absolute(model, ec).lexically_normal();
      if (!dir.has_filename()) dir = dir.parent_path();  // "llama-2-7b/" names the folder too
      candidates.push_back(dir.parent_path() / "tokenizer.model");
    }
  } else {
    // Most specific first: a directory of llama2.c checkpoints holds several vocabularies
    // (stories260K.bin with tok512.bin, aidreams260K.bin with aidreams260K_tok512.bin, and often
    // LLaMA's 32000-piece tokenizer.bin). A .model beats a .bin of the same name because it
    // keeps the normaliser settings.
    const fs::path dir = model.parent_path();
    if (vocab_size > 0) {
      const std::string tok = fmt::format("tok{}", vocab_size);
      const std::string stem = model.stem().string();
      for (const std::string& name :
           {stem + "_" + tok + ".model", stem + "_" + tok + ".bin", tok + ".model", tok + ".bin"}) {
        candidates.push_back(dir / name);
      }
    }
    candidates.push_back(dir / "tokenizer.model");
    candidates.push_back(dir / "tokenizer.bin");
  }
  for (const fs::path& candidate : candidates) {
    if (fs::is_regular_file(candidate, ec)) return candidate.string();
  }
  return "";
}

}  // namespace la
