// What every Hugging Face directory loader shares: config.json fields, and the directory's
// tensors (model.safetensors, or the shards model.safetensors.index.json names) found by name
// and checked against the shape the config implies.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "la/formats/safetensors.h"

namespace la {

// config.json as a JSON object (errors name the file).
nlohmann::json read_json_object(const std::string& path);
// An integer field; `fallback` >= 0 is used when it is absent or null, else it is an error.
int64_t json_int(const nlohmann::json& j, const char* key, const std::string& path, int64_t fallback = -1);
double json_num(const nlohmann::json& j, const char* key, double fallback, const std::string& path);

class HfTensors {
 public:
  // Opens dir/model.safetensors, or every shard of dir/model.safetensors.index.json.
  explicit HfTensors(const std::string& dir);
  bool has(const std::string& name) const { return where_.count(name) != 0; }
  const std::vector<std::shared_ptr<MappedFile>>& files() const { return files_; }
  // [rows, cols] (an N-D tensor: rows = its first dimension); a different shape is an error
  // naming the tensor, its shape and the expected one.
  WeightMatrix matrix(const std::string& name, int64_t rows, int64_t cols) const;
  // A 1-D tensor of n values, or (flat_ok) any tensor of n values.
  WeightMatrix vector(const std::string& name, int64_t n, bool flat_ok = false) const;

 private:
  std::pair<const SafetensorsFile*, const SafeTensor*> find(const std::string& name) const;
  std::string dir_;
  std::vector<SafetensorsFile> shards_;
  std::map<std::string, size_t> where_;
  std::vector<std::shared_ptr<MappedFile>> files_;
};

}  // namespace la
