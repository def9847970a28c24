#include "la/tokenizer/hf_tokenizer.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "la/core/error.h"
#include "la/tokenizer/pretokenizer.h"

namespace la {
namespace {

using json = nlohmann::json;

// GPT-2's expression as the ByteLevel pre-tokenizer applies it (use_regex = true).
std::vector<std::string> byte_level_regexes() {
  return *PreTokenizer::regexes_of("gpt2");
}

// The expressions of one pre-tokenizer entry, appended to `out`.
void add_pre_tokenizer(const json& p, std::vector<std::string>& out, const std::string& path) {
  if (!p.is_object() || !p.contains("type") || !p["type"].is_string())
    fail("{}: pre_tokenizer entries must be objects with a type", path);
  const std::string type = p["type"];
  if (type == "Sequence") {
    if (!p.contains("pretokenizers") || !p["pretokenizers"].is_array())
      fail("{}: a Sequence pre_tokenizer needs a pretokenizers array", path);
    for (const json& q : p["pretokenizers"]) add_pre_tokenizer(q, out, path);
  } else if (type == "ByteLevel") {
    if (p.value("add_prefix_space", false))
      fail("{}: ByteLevel with add_prefix_space is not implemented (it would change every id)", path);
    if (p.value("use_regex", true))
      for (const std::string& re : byte_level_regexes()) out.push_back(re);
  } else if (type == "Split") {
    if (p.value("behavior", std::string()) != "Isolated" || p.value("invert", false))
      fail("{}: only Split with behavior Isolated (not inverted) is implemented", path);
    const json& pattern = p.value("pattern", json::object());
    if (pattern.contains("Regex") && pattern["Regex"].is_string()) {
      out.push_back(pattern["Regex"]);
    } else if (pattern.contains("String") && pattern["String"].is_string()) {
      // A literal: every character that PCRE2 treats specially is escaped.
      std::string re;
      for (char c : pattern["String"].get<std::string>()) {
        if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) re.push_back('\\');
        re.push_back(c);
      }
      out.push_back(re);
    } else {
      fail("{}: a Split pre_tokenizer needs a Regex or String pattern", path);
    }
  } else if (type == "Digits") {
    out.push_back(p.value("individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)");
  } else {
    fail("{}: pre_tokenizer '{}' is not implemented", path, printable(type));
  }
}

// The text of a special token as tokenizer_config.json writes it: a string or {"content": ...}.
std::string token_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}

json read_config_beside(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path config = fs::path(path).parent_path() / "tokenizer_config.json";
  std::error_code ec;
  if (!fs::is_regular_file(config, ec)) return json();
  std::ifstream in(config);
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", config.string(), e.what());
  }
}

BpeVocab read_checked(const json& j, const std::string& path) {
  if (!j.is_object()) fail("{}: tokenizer.json must be a JSON object", path);
  if (!j.contains("model") || !j["model"].is_object()) fail("{}: no model section", path);
  const json& model = j["model"];
  if (model.value("type", std::string("BPE")) != "BPE")
    fail("{}: tokenizer model '{}' is not implemented (only BPE)", path, printable(model.value("type", "")));
  if (model.value("byte_fallback", false))
    fail("{}: a BPE with byte_fallback is SentencePiece-style: load its tokenizer.model instead", path);
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (model.contains(key) && !model[key].is_null() && model[key] != "")
      fail("{}: model.{} is not implemented", path, key);
  if (j.contains("normalizer") && !j["normalizer"].is_null())
    fail("{}: normalizer '{}' is not implemented", path, printable(j["normalizer"].value("type", "?")));
  if (!model.contains("vocab") || !model["vocab"].is_object()) fail("{}: model.vocab must be an object", path);
  if (!model.contains("merges") || !model["merges"].is_array()) fail("{}: model.merges must be an array", path);

  // Pieces by id: the vocabulary, then the added tokens (which may extend or repeat it).
  std::vector<std::string> pieces;
  std::vector<bool> present;
  const auto place = [&](int64_t id, const std::string& piece) {
    if (id < 0 || id >= (1 << 24)) fail("{}: token id {} out of range", path, id);
    if (static_cast<size_t>(id) >= pieces.size()) {
      pieces.resize(static_cast<size_t>(id) + 1);
      present.resize(static_cast<size_t>(id) + 1);
    }
    pieces[static_cast<size_t>(id)] = piece;
    present[static_cast<size_t>(id)] = true;
  };
  for (const auto& [piece, id] : model["vocab"].items()) {
    if (!id.is_number_integer()) fail("{}: vocab entry '{}' has no integer id", path, printable(piece));
    place(id.get<int64_t>(), piece);
  }
  BpeVocab v;
  v.byte_level = true;
  v.add_dummy_prefix = false;
  std::vector<PieceType> types;
  std::vector<std::pair<int64_t, bool>> added;
  if (j.contains("added_tokens")) {
    if (!j["added_tokens"].is_array()) fail("{}: added_tokens must be an array", path);
    for (const json& t : j["added_tokens"]) {
      if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() || !t.contains("content") ||
          !t["content"].is_string())
        fail("{}: an added token needs an integer id and a content string", path);
      place(t["id"].get<int64_t>(), t["content"].get<std::string>());
      added.emplace_back(t["id"].get<int64_t>(), t.value("special", false));
    }
  }
  for (size_t id = 0; id < present.size(); ++id)
    if (!present[id]) fail("{}: no token has id {} (ids must run from 0 without gaps)", path, id);
  v.pieces = std::move(pieces);
  v.types.assign(v.pieces.size(), PieceType::Normal);
  v.scores.assign(v.pieces.size(), 0.0f);
  for (const auto& [id, special] : added)
    v.types[static_cast<size_t>(id)] = special ? PieceType::Control : PieceType::UserDefined;

  v.merges.reserve(model["merges"].size());
  for (const json& m : model["merges"]) {
    if (m.is_string()) {
      v.merges.push_back(m.get<std::string>());
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      v.merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
    } else {
      fail("{}: a merge must be \"a b\" or [\"a\", \"b\"]", path);
    }
  }
  v.ignore_merges = model.value("ignore_merges", false);

  if (!j.contains("pre_tokenizer") || j["pre_tokenizer"].is_null())
    fail("{}: no pre_tokenizer (a byte-level BPE needs one)", path);
  add_pre_tokenizer(j["pre_tokenizer"], v.pre_regexes, path);
  if (v.pre_regexes.empty()) fail("{}: the pre_tokenizer splits nothing (ByteLevel without use_regex alone)", path);
  v.pre = PreTokenizer::from_regexes(v.pre_regexes, path)->name();  // compiles them: a bad one fails here
  if (!v.pre.empty()) v.pre_regexes.clear();

  const auto id_of = [&](const std::string& text) {
    for (size_t id = 0; id < v.pieces.size(); ++id)
      if (v.pieces[id] == text) return static_cast<int>(id);
    return -1;
  };
  // BOS: the special token the post-processor's template puts before the text.
  v.add_bos = false;
  if (const json& post = j.value("post_processor", json());
      post.is_object() && post.value("type", "") == "TemplateProcessing") {
    const json& single = post.value("single", json::array());
    if (single.is_array() && !single.empty() && single[0].contains("SpecialToken")) {
      v.bos_id = id_of(single[0]["SpecialToken"].value("id", ""));
      v.add_bos = v.bos_id >= 0;
    }
  }
  const json config = read_config_beside(path);
  if (config.is_object()) {
    if (config.contains("bos_token") && v.bos_id < 0) v.bos_id = id_of(token_text(config["bos_token"]));
    if (config.contains("eos_token")) v.eos_id = id_of(token_text(config["eos_token"]));
  }
  for (const char* eos : {"<|end_of_text|>", "<|endoftext|>", "</s>"})
    if (v.eos_id < 0) v.eos_id = id_of(eos);
  return v;
}

}  // namespace

BpeVocab read_hf_tokenizer_json(std::string_view json_text, const std::string& path) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
  try {
    return read_checked(j, path);
  } catch (const json::exception& e) {  // a field of the wrong JSON type somewhere
    fail("{}: malformed tokenizer.json: {}", path, e.what());
  }
}

}  // namespace la
