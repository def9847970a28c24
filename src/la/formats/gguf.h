// GGUF v3 (ggml's model container): magic "GGUF", uint32 version, uint64 tensor count, uint64
// metadata count, metadata key/values (typed, arrays allowed), tensor infos (name, n_dims,
// dims[], ggml type, offset), padding to general.alignment (default 32), then tensor data.
// Little-endian. The reader maps the file and validates every count, length, type and offset
// before use; the writer holds the metadata and, per tensor, either a copy of its bytes or a
// function that produces them, and writes the file atomically one tensor at a time.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "la/core/mapped_file.h"
#include "la/tensor/dtype.h"

namespace la {

// GGUF metadata value types (gguf_type).
enum class GgufType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12
};

// A metadata value. Integers of every width are kept as int64/uint64, floats as double; arrays
// keep their element type.
struct GgufValue {
  GgufType type = GgufType::UINT32;
  GgufType array_type = GgufType::UINT32;  // for ARRAY
  std::variant<uint64_t, int64_t, double, bool, std::string> scalar;
  std::vector<std::string> strings;  // ARRAY of STRING
  std::vector<double> numbers;       // ARRAY of numbers (ints and floats; exact up to 2^53)
  bool is_array() const { return type == GgufType::ARRAY; }
};

struct GgufTensor {
  std::string name;
  std::vector<int64_t> dims;  // ggml order: dims[0] is the contiguous (row) length
  DType type = DType::F32;
  uint64_t offset = 0;  // relative to the data section
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  int64_t numel() const;
};

class GgufFile {
 public:
  // Throws la::Error naming the file: bad magic, unsupported version (only 2 and 3), counts or
  // string lengths past the end, unknown metadata or tensor types, misaligned or out-of-range
  // or overlapping tensor data, duplicate names, dims not a multiple of the block size.
  static GgufFile open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  uint32_t version() const { return version_; }
  const std::map<std::string, GgufValue>& metadata() const { return kv_; }
  const GgufValue* find(const std::string& key) const;
  // Typed accessors; throw "path: metadata 'key' missing / has type X, expected Y".
  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;   // any integer type
  double get_float(const std::string& key) const;  // any number
  bool has(const std::string& key) const { return kv_.count(key) != 0; }

  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find_tensor(const std::string& name) const;
  const std::shared_ptr<MappedFile>& file() const { return file_; }
  uint32_t alignment() const { return alignment_; }      // general.alignment, default 32
  uint64_t data_offset() const { return data_offset_; }  // file offset of the data section

 private:
  std::shared_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::map<std::string, GgufValue> kv_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t> index_;
};

class GgufWriter {
 public:
  void set_string(const std::string& key, const std::string& v);
  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_f32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_strings(const std::string& key, const std::vector<std::string>& v);
  void set_f32s(const std::string& key, const std::vector<float>& v);
  void set_i32s(const std::string& key, const std::vector<int32_t>& v);
  // dims in ggml order (dims[0] contiguous). Copies the bytes; nbytes must match type and dims.
  void add_tensor(const std::string& name, const std::vector<int64_t>& dims, DType type, const void* data,
                  size_t nbytes);
  // The same, with the bytes produced only when the file is written: `fill(dst)` writes exactly
  // nbytes. write() calls the fills one at a time, in order, into one reused buffer, so a
  // converted model is never whole in memory.
  using Fill = std::function<void(uint8_t* dst)>;
  void add_tensor(const std::string& name, const std::vector<int64_t>& dims, DType type, size_t nbytes, Fill fill);
  std::string serialize() const;              // version 3, alignment 32
  void write(const std::string& path) const;  // the bytes of serialize(), streamed

 private:
  std::vector<std::pair<std::string, std::string>> kv_bytes_;  // key -> encoded (type + value)
  struct Tensor {
    std::string name;
    std::vector<int64_t> dims;
    DType type;
    size_t nbytes;
    Fill fill;
  };
  std::vector<Tensor> tensors_;
  uint32_t alignment_ = 32;  // set_u32("general.alignment", n) changes it (a power of two)
  void set_encoded(const std::string& key, std::string encoded);
  std::string header() const;  // everything before the first tensor's data, padding included
};

// "UINT32", "STRING", "ARRAY", ... ("?" for an unknown id).
const char* gguf_type_name(GgufType t);

// ggml type ids of the DTypes we support (GGML_TYPE_F32 = 0, F16 = 1, Q4_0 = 2, Q8_0 = 8,
// Q4_K = 12, Q6_K = 14, BF16 = 30); false for any other id.
bool dtype_from_ggml(uint32_t ggml_type, DType* out);
uint32_t ggml_type_id(DType t);

}  // namespace la
