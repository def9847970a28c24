// Trainable parameters as a named table over one flat buffer (llm.c's ParameterTensors): each
// row names a tensor, its shape and its slice of the buffer. Gradients and AdamW's moments are
// flat twins laid out by the same table, so the optimizer, the gradient norm, clipping,
// checkpoints and the adapter file iterate rows instead of naming tensors. A new trainable
// tensor (a visual projection, a task head, a base weight for full training) is one more row.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace la {

struct ParamTensor {
  std::string name;            // the table's key, e.g. "adapter_query", "gate"
  std::vector<int64_t> shape;  // row-major
  size_t offset = 0;           // first value in the flat buffer
  size_t size = 0;             // number of values
  // How files name it: one key ("adapter_query.weight"), or a pattern with "{}" for a tensor
  // split along its first axis into one file tensor per layer, numbered from `first_layer`
  // ("layers.{}.attention.gate": row r of a [L, H] gate is layer first_layer + r's [H]).
  std::string file_key;
  int64_t first_layer = 0;
  bool split_per_layer() const { return file_key.find("{}") != std::string::npos; }
  std::string file_key_of(int64_t row) const;  // the per-layer key of row `row`
};

class ParamTable {
 public:
  // Appends a row; its values follow the previous row's in the buffer.
  void add(std::string name, std::vector<int64_t> shape, std::string file_key = {}, int64_t first_layer = 0);
  const std::vector<ParamTensor>& tensors() const { return rows_; }
  const ParamTensor* find(std::string_view name) const;
  const ParamTensor& get(std::string_view name) const;  // throws la::Error naming it
  size_t size() const { return size_; }                 // values in all rows
  bool operator==(const ParamTable& o) const;

 private:
  std::vector<ParamTensor> rows_;
  size_t size_ = 0;
};

// A table and one buffer of values laid out by it (parameters, gradients or moments).
class ParamSet {
 public:
  ParamSet() = default;
  explicit ParamSet(ParamTable table) : table_(std::move(table)), values_(table_.size(), 0.0f) {}
  const ParamTable& table() const { return table_; }
  std::span<float> operator[](std::string_view name) { return slice(table_.get(name)); }
  std::span<const float> operator[](std::string_view name) const { return slice(table_.get(name)); }
  std::span<float> slice(const ParamTensor& t) { return {values_.data() + t.offset, t.size}; }
  std::span<const float> slice(const ParamTensor& t) const { return {values_.data() + t.offset, t.size}; }
  std::vector<float>& values() { return values_; }
  const std::vector<float>& values() const { return values_; }
  size_t size() const { return values_.size(); }
  ParamSet zeros_like() const { return ParamSet(table_); }
  void zero();
  double norm() const;  // global L2 norm over every row, accumulated in double in buffer order
  void scale(float f);
  bool all_finite() const;

 private:
  ParamTable table_;
  std::vector<float> values_;
};

}  // namespace la
