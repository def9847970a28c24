#include "la/model/params.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "la/core/error.h"

namespace la {

std::string ParamTensor::file_key_of(int64_t row) const {
  const size_t at = file_key.find("{}");
  return file_key.substr(0, at) + std::to_string(first_layer + row) + file_key.substr(at + 2);
}

void ParamTable::add(std::string name, std::vector<int64_t> shape, std::string file_key, int64_t first_layer) {
  if (find(name)) fail("parameter table: '{}' is listed twice", name);
  ParamTensor t;
  t.size = 1;
  for (int64_t d : shape) {
    if (d <= 0) fail("parameter table: '{}' has an empty dimension", name);
    t.size *= static_cast<size_t>(d);
  }
  t.name = std::move(name);
  t.shape = std::move(shape);
  t.offset = size_;
  t.file_key = file_key.empty() ? t.name : std::move(file_key);
  t.first_layer = first_layer;
  size_ += t.size;
  rows_.push_back(std::move(t));
}

const ParamTensor* ParamTable::find(std::string_view name) const {
  for (const ParamTensor& t : rows_)
    if (t.name == name) return &t;
  return nullptr;
}

const ParamTensor& ParamTable::get(std::string_view name) const {
  if (const ParamTensor* t = find(name)) return *t;
  fail("parameter table has no tensor '{}'", name);
}

bool ParamTable::operator==(const ParamTable& o) const {
  if (rows_.size() != o.rows_.size()) return false;
  for (size_t i = 0; i < rows_.size(); ++i)
    if (rows_[i].name != o.rows_[i].name || rows_[i].shape != o.rows_[i].shape) return false;
  return true;
}

void ParamSet::zero() {
  std::fill(values_.begin(), values_.end(), 0.0f);
}

double ParamSet::norm() const {
  double s = 0;
  for (float g : values_) s += static_cast<double>(g) * g;
  return std::sqrt(s);
}

void ParamSet::scale(float f) {
  for (float& g : values_) g *= f;
}

bool ParamSet::all_finite() const {
  return std::all_of(values_.begin(), values_.end(), [](float x) { return std::isfinite(x); });
}

}  // namespace la
