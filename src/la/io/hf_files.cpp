#include "la/io/hf_files.h"

#include "la/core/error.h"
#include "la/core/mapped_file.h"
#include "la/core/paths.h"

namespace la {

nlohmann::json read_json_object(const std::string& path) {
  nlohmann::json j = nlohmann::json::parse(read_file(path), nullptr, false);
  if (j.is_discarded() || !j.is_object()) fail("{}: invalid JSON (expected an object)", path);
  return j;
}

int64_t json_int(const nlohmann::json& j, const char* key, const std::string& path, int64_t fallback) {
  if (!j.contains(key) || j[key].is_null()) {
    if (fallback >= 0) return fallback;
    fail("{}: missing integer field '{}'", path, key);
  }
  if (!j[key].is_number_integer()) fail("{}: field '{}' is not an integer", path, key);
  return j[key].get<int64_t>();
}

double json_num(const nlohmann::json& j, const char* key, double fallback, const std::string& path) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_number()) fail("{}: field '{}' is not a number", path, key);
  return j[key].get<double>();
}

HfTensors::HfTensors(const std::string& dir) : dir_(dir) {
  const std::string single = dir + "/model.safetensors";
  const std::string index_path = dir + "/model.safetensors.index.json";
  auto add_shard = [&](const std::string& p) {
    shards_.push_back(SafetensorsFile::open(p));
    files_.push_back(shards_.back().file());
    for (const auto& t : shards_.back().tensors()) where_[t.name] = shards_.size() - 1;
  };
  if (file_exists(single)) {
    add_shard(single);
  } else if (file_exists(index_path)) {
    nlohmann::json idx = nlohmann::json::parse(read_file(index_path), nullptr, false);
    if (idx.is_discarded() || !idx.is_object() || !idx.contains("weight_map") || !idx["weight_map"].is_object())
      fail("{}: invalid index (needs a weight_map object)", index_path);
    std::map<std::string, bool> seen;
    for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) {
      if (!it.value().is_string()) fail("{}: weight_map entry '{}' is not a file name", index_path, it.key());
      const std::string shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos || shard.find("..") != std::string::npos)
        fail("{}: weight_map names a file outside the directory: '{}'", index_path, shard);
      if (!seen[shard]) {
        seen[shard] = true;
        add_shard(dir + "/" + shard);
      }
    }
  } else {
    fail("{}: neither model.safetensors nor model.safetensors.index.json is present", dir);
  }
}

std::pair<const SafetensorsFile*, const SafeTensor*> HfTensors::find(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) fail("{}: missing tensor '{}'", dir_, name);
  const SafetensorsFile& f = shards_[it->second];
  return {&f, f.find(name)};
}

WeightMatrix HfTensors::matrix(const std::string& name, int64_t rows, int64_t cols) const {
  auto [f, t] = find(name);
  WeightMatrix w = f->matrix(*t);
  if (t->shape.size() < 2 || w.rows != rows || w.cols != cols)
    fail("{}: tensor '{}' has shape [{}], config.json needs [{}, {}]", f->path(), name, fmt::join(t->shape, ", "), rows,
         cols);
  return w;
}

WeightMatrix HfTensors::vector(const std::string& name, int64_t n, bool flat_ok) const {
  auto [f, t] = find(name);
  WeightMatrix w = f->matrix(*t);
  if ((!flat_ok && t->shape.size() != 1) || w.numel() != n)
    fail("{}: tensor '{}' has shape [{}], config.json needs [{}]", f->path(), name, fmt::join(t->shape, ", "), n);
  return w;
}

}  // namespace la
