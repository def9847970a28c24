#include "la/io/gguf_chat_template.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include "la/formats/gguf.h"

namespace la {

std::string gguf_chat_template(const std::string& model_path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(model_path, ec)) return "";
  char magic[4] = {};
  std::ifstream in(model_path, std::ios::binary);
  if (!in.read(magic, 4) || std::memcmp(magic, "GGUF", 4) != 0) return "";
  const GgufFile f = GgufFile::open(model_path);
  if (!f.has("tokenizer.chat_template")) return "";
  return f.get_string("tokenizer.chat_template");
}

}  // namespace la
