// safetensors: 8-byte little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}
// then the tensor bytes, offsets relative to the end of the header.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "la/core/mapped_file.h"
#include "la/tensor/dtype.h"

namespace la {

enum class SafeDType : uint8_t { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };
size_t safe_dtype_size(SafeDType t);
const char* safe_dtype_name(SafeDType t);

struct SafeTensor {
  std::string name;
  SafeDType dtype = SafeDType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // inside the mapping
  size_t nbytes = 0;
  int64_t numel() const;
};

class SafetensorsFile {
 public:
  // Maps and validates: header length within the file, JSON well formed, known dtypes, shapes
  // matching byte ranges, offsets in range and non-overlapping. Errors name the file.
  static SafetensorsFile open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::vector<SafeTensor>& tensors() const { return tensors_; }
  const SafeTensor* find(const std::string& name) const;
  const SafeTensor& get(const std::string& name) const;  // throws "path: missing tensor 'name'"
  const std::shared_ptr<MappedFile>& file() const { return file_; }

  // The tensor as a weight matrix view ([rows, cols]; 1-D tensors give rows=1; [r, a, b, ...] gives
  // r rows of a*b*... values). F32/F16/BF16
  // only; data that is not suitably aligned for its type is rejected rather than read unaligned.
  WeightMatrix matrix(const SafeTensor& t) const;

 private:
  std::shared_ptr<MappedFile> file_;
  std::map<std::string, std::string> metadata_;
  std::vector<SafeTensor> tensors_;
  std::map<std::string, size_t> index_;
};

// Builds a safetensors file in memory and writes it atomically.
class SafetensorsWriter {
 public:
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  // Copies the bytes. shape's product times the dtype size must equal nbytes.
  void add(const std::string& name, SafeDType dtype, const std::vector<int64_t>& shape, const void* data,
           size_t nbytes);
  void add_f32(const std::string& name, const std::vector<int64_t>& shape, const float* data);
  std::string serialize() const;
  void write(const std::string& path) const;

 private:
  struct Entry {
    std::string name;
    SafeDType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::map<std::string, std::string> metadata_;
  std::vector<Entry> entries_;
};

}  // namespace la
