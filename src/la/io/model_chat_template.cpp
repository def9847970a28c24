#include "la/io/model_chat_template.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "la/core/error.h"
#include "la/core/mapped_file.h"
#include "la/formats/gguf.h"

namespace la {

namespace {

std::string hf_chat_template(const std::filesystem::path& config_path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(config_path, ec)) return "";
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(config_path.string()));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", config_path.string(), e.what());
  }
  if (!j.is_object() || !j.contains("chat_template")) return "";
  const nlohmann::json& t = j["chat_template"];
  if (t.is_string()) return t.get<std::string>();
  if (t.is_array()) {
    for (const nlohmann::json& named : t)
      if (named.is_object() && named.value("name", "") == "default" && named.contains("template") &&
          named["template"].is_string())
        return named["template"].get<std::string>();
  }
  fail("{}: chat_template must be a string or a list with a \"default\" entry", config_path.string());
}

}  // namespace

std::string model_chat_template(const std::string& model_path) {
  std::error_code ec;
  if (std::filesystem::is_directory(model_path, ec))
    return hf_chat_template(std::filesystem::path(model_path) / "tokenizer_config.json");
  if (!std::filesystem::is_regular_file(model_path, ec)) return "";
  char magic[4] = {};
  std::ifstream in(model_path, std::ios::binary);
  if (!in.read(magic, 4) || std::memcmp(magic, "GGUF", 4) != 0) return "";
  const GgufFile f = GgufFile::open(model_path);
  if (!f.has("tokenizer.chat_template")) return "";
  return f.get_string("tokenizer.chat_template");
}

}  // namespace la
