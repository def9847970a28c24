#include "la/tokenizer/gguf_vocab.h"

#include <cmath>

#include "la/core/error.h"
#include "la/tokenizer/pretokenizer.h"

namespace la {

namespace {

// GGUF token types (llama.cpp's llama_token_type): 1 normal, 2 unknown, 3 control,
// 4 user-defined, 5 unused, 6 byte; 0 (undefined) is read as normal.
PieceType piece_type(double t, const std::string& path, size_t i) {
  // The array may hold any number (floats, NaN, 64-bit integers): converting one outside int's
  // range is undefined behaviour, so only whole numbers 0-6 get that far.
  if (!(t >= 0 && t <= 6) || t != std::floor(t)) fail("{}: token {} has unknown token_type {}", path, i, t);
  switch (static_cast<int>(t)) {
    case 0:
    case 1: return PieceType::Normal;
    case 2: return PieceType::Unknown;
    case 3: return PieceType::Control;
    case 4: return PieceType::UserDefined;
    case 5: return PieceType::Unused;
    case 6: return PieceType::Byte;
    default: fail("{}: token {} has unknown token_type {}", path, i, t);
  }
}

int gguf_token_type(PieceType t) {
  switch (t) {
    case PieceType::Normal: return 1;
    case PieceType::Unknown: return 2;
    case PieceType::Control: return 3;
    case PieceType::UserDefined: return 4;
    case PieceType::Unused: return 5;
    case PieceType::Byte: return 6;
  }
  return 1;
}

}  // namespace

BpeVocab read_gguf_vocab(const GgufFile& f) {
  const std::string& path = f.path();
  if (!f.has("tokenizer.ggml.model")) fail("{}: no embedded tokenizer (tokenizer.ggml.model is missing)", path);
  const std::string model = f.get_string("tokenizer.ggml.model");
  if (model != "llama" && model != "gpt2")
    fail("{}: tokenizer model '{}' is not supported (SentencePiece-style 'llama' and byte-level BPE 'gpt2' are)", path,
         printable(model));
  const bool byte_level = model == "gpt2";
  const GgufValue* tokens = f.find("tokenizer.ggml.tokens");
  if (!tokens || !tokens->is_array() || tokens->array_type != GgufType::STRING)
    fail("{}: tokenizer.ggml.tokens must be an array of strings", path);
  BpeVocab v;
  v.pieces = tokens->strings;
  const size_t n = v.pieces.size();
  if (n == 0) fail("{}: tokenizer.ggml.tokens is empty", path);
  const GgufValue* scores = f.find("tokenizer.ggml.scores");
  const GgufValue* types = f.find("tokenizer.ggml.token_type");
  if (scores && (!scores->is_array() || scores->numbers.size() != n))
    fail("{}: tokenizer.ggml.scores has {} entries, expected {}", path, scores->numbers.size(), n);
  if (types && (!types->is_array() || types->numbers.size() != n))
    fail("{}: tokenizer.ggml.token_type has {} entries, expected {}", path, types->numbers.size(), n);
  v.scores.resize(n);
  v.types.resize(n);
  for (size_t i = 0; i < n; ++i) {
    v.scores[i] = scores ? static_cast<float>(scores->numbers[i]) : 0.0f;
    if (!std::isfinite(v.scores[i])) fail("{}: token {} has a non-finite score", path, i);
    v.types[i] = types ? piece_type(types->numbers[i], path, i) : PieceType::Normal;
  }
  auto id = [&](const char* key, int fallback) {
    if (!f.has(key)) return fallback;
    const int64_t x = f.get_int(key);
    if (x < 0 || static_cast<size_t>(x) >= n) fail("{}: {} = {} is outside the vocabulary of {}", path, key, x, n);
    return static_cast<int>(x);
  };
  auto flag = [&](const char* key, bool fallback) {
    const GgufValue* p = f.find(key);
    return p && p->type == GgufType::BOOL ? std::get<bool>(p->scalar) : fallback;
  };
  if (byte_level) {
    v.byte_level = true;
    v.bos_id = id("tokenizer.ggml.bos_token_id", -1);
    v.eos_id = id("tokenizer.ggml.eos_token_id", -1);
    v.unk_id = id("tokenizer.ggml.unknown_token_id", -1);
    v.add_bos = flag("tokenizer.ggml.add_bos_token", false);
    const GgufValue* merges = f.find("tokenizer.ggml.merges");
    if (!merges || !merges->is_array() || merges->array_type != GgufType::STRING)
      fail("{}: a byte-level vocabulary needs tokenizer.ggml.merges, an array of strings", path);
    v.merges = merges->strings;
    // llama.cpp reads a file without .pre (written before the key existed) with its "default"
    // expressions; so do we.
    v.pre = f.has("tokenizer.ggml.pre") ? f.get_string("tokenizer.ggml.pre") : "default";
    if (!PreTokenizer::regexes_of(v.pre))
      fail("{}: pre-tokenizer '{}' (tokenizer.ggml.pre) is not implemented; refusing rather than giving wrong ids",
           path, printable(v.pre));
    v.ignore_merges = PreTokenizer::name_of(*PreTokenizer::regexes_of(v.pre)) == "llama-bpe";  // as llama.cpp
    v.add_dummy_prefix = false;
    return v;
  }
  v.bos_id = id("tokenizer.ggml.bos_token_id", 1);
  v.eos_id = id("tokenizer.ggml.eos_token_id", 2);
  v.unk_id = id("tokenizer.ggml.unknown_token_id", 0);
  v.add_dummy_prefix = true;
  if (f.has("tokenizer.ggml.add_space_prefix")) {
    const GgufValue* p = f.find("tokenizer.ggml.add_space_prefix");
    if (p->type == GgufType::BOOL) v.add_dummy_prefix = std::get<bool>(p->scalar);
  }
  v.remove_extra_whitespaces = false;
  return v;
}

void write_gguf_vocab(GgufWriter& w, const BpeVocab& v) {
  if (!v.chat_template.empty()) w.set_string("tokenizer.chat_template", v.chat_template);
  if (v.byte_level) {
    std::string pre = v.pre_regexes.empty() ? v.pre : PreTokenizer::name_of(v.pre_regexes);
    if (pre.empty() || !PreTokenizer::regexes_of(pre))
      fail("the vocabulary's pre-tokenizer has no name GGUF could record (tokenizer.ggml.pre)");
    w.set_string("tokenizer.ggml.model", "gpt2");
    w.set_string("tokenizer.ggml.pre", pre);
    w.set_strings("tokenizer.ggml.tokens", v.pieces);
    std::vector<int32_t> types(v.types.size());
    for (size_t i = 0; i < types.size(); ++i) types[i] = gguf_token_type(v.types[i]);
    w.set_i32s("tokenizer.ggml.token_type", types);
    w.set_strings("tokenizer.ggml.merges", v.merges);
    if (v.bos_id >= 0) w.set_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(v.bos_id));
    if (v.eos_id >= 0) w.set_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(v.eos_id));
    if (v.unk_id >= 0) w.set_u32("tokenizer.ggml.unknown_token_id", static_cast<uint32_t>(v.unk_id));
    w.set_bool("tokenizer.ggml.add_bos_token", v.add_bos);
    return;
  }
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_strings("tokenizer.ggml.tokens", v.pieces);
  w.set_f32s("tokenizer.ggml.scores", v.scores);
  std::vector<int32_t> types(v.types.size());
  for (size_t i = 0; i < types.size(); ++i) types[i] = gguf_token_type(v.types[i]);
  w.set_i32s("tokenizer.ggml.token_type", types);
  if (v.bos_id >= 0) w.set_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(v.bos_id));
  if (v.eos_id >= 0) w.set_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(v.eos_id));
  if (v.unk_id >= 0) w.set_u32("tokenizer.ggml.unknown_token_id", static_cast<uint32_t>(v.unk_id));
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  w.set_bool("tokenizer.ggml.add_space_prefix", v.add_dummy_prefix);
}

}  // namespace la
