#include "la/formats/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "la/core/error.h"

namespace la {

namespace {

constexpr struct {
  const char* name;
  SafeDType type;
  size_t size;
} kDTypes[] = {{"F64", SafeDType::F64, 8},   {"F32", SafeDType::F32, 4}, {"F16", SafeDType::F16, 2},
               {"BF16", SafeDType::BF16, 2}, {"I64", SafeDType::I64, 8}, {"I32", SafeDType::I32, 4},
               {"I16", SafeDType::I16, 2},   {"I8", SafeDType::I8, 1},   {"U8", SafeDType::U8, 1},
               {"BOOL", SafeDType::BOOL, 1}};

constexpr uint64_t kMaxHeader = 100u << 20;        // the format's own limit is 100 MB
constexpr uint64_t kMaxNumel = uint64_t{1} << 48;  // per tensor, and per dimension

}  // namespace

size_t safe_dtype_size(SafeDType t) {
  for (const auto& d : kDTypes)
    if (d.type == t) return d.size;
  return 0;
}

const char* safe_dtype_name(SafeDType t) {
  for (const auto& d : kDTypes)
    if (d.type == t) return d.name;
  return "?";
}

int64_t SafeTensor::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.file_ = MappedFile::open(path);
  const size_t size = f.file_->size();
  if (size < 8) fail("{}: not a safetensors file: {} bytes, too short for the header length", path, size);
  uint64_t n = 0;
  std::memcpy(&n, f.file_->data(), 8);
  if (n > size - 8) fail("{}: safetensors header length {} runs past the end of the file ({} bytes)", path, n, size);
  if (n > kMaxHeader) fail("{}: safetensors header length {} exceeds the 100 MB limit", path, n);
  const char* hdr = reinterpret_cast<const char*>(f.file_->data() + 8);
  // nlohmann keeps the last of repeated keys, so a header naming a tensor twice would silently
  // lose one of them: the parser callback sees every key and we keep the first repeat we meet.
  std::vector<std::set<std::string>> open_objects;          // keys seen so far in each enclosing object
  std::optional<std::pair<std::string, size_t>> duplicate;  // key, depth of its object
  auto watch_keys = [&](int /*depth*/, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (event == E::object_start) open_objects.emplace_back();
    if (event == E::object_end && !open_objects.empty()) open_objects.pop_back();
    if (event == E::key && !open_objects.empty() && !duplicate &&
        !open_objects.back().insert(parsed.get<std::string>()).second)
      duplicate.emplace(parsed.get<std::string>(), open_objects.size());
    return true;
  };
  nlohmann::json j = nlohmann::json::parse(hdr, hdr + n, watch_keys, false);
  if (j.is_discarded() || !j.is_object()) fail("{}: safetensors header is not a JSON object", path);
  if (duplicate) {
    const auto& [key, depth] = *duplicate;
    if (depth == 1 && key != "__metadata__")
      fail("{}: duplicate tensor name '{}' in the safetensors header", path, key);
    fail("{}: duplicate key '{}' in the safetensors header", path, key);
  }
  const uint8_t* base = f.file_->data() + 8 + n;
  const size_t data_size = size - 8 - n;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail("{}: __metadata__ is not an object", path);
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) fail("{}: __metadata__ value '{}' is not a string", path, m.key());
        f.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      fail("{}: tensor '{}' needs dtype, shape and data_offsets", path, name);
    SafeTensor t;
    t.name = name;
    const auto& dt = v["dtype"];
    if (!dt.is_string()) fail("{}: tensor '{}' dtype is not a string", path, name);
    bool known = false;
    for (const auto& d : kDTypes)
      if (dt.get<std::string>() == d.name) {
        t.dtype = d.type;
        known = true;
      }
    if (!known) fail("{}: tensor '{}' has unknown dtype '{}'", path, name, dt.get<std::string>());
    const auto& sh = v["shape"];
    if (!sh.is_array()) fail("{}: tensor '{}' shape is not an array", path, name);
    uint64_t numel = 1;
    for (const auto& s : sh) {
      if (!s.is_number_unsigned()) fail("{}: tensor '{}' has a negative or non-integer dimension", path, name);
      const uint64_t d = s.get<uint64_t>();
      // Each dimension is bounded on its own too: after a 0 dimension the product stays 0, and a
      // dimension past INT64_MAX would otherwise become a negative int64 in `shape`.
      if (d > kMaxNumel || (d != 0 && numel > kMaxNumel / d)) fail("{}: tensor '{}' shape is too large", path, name);
      numel *= d;
      t.shape.push_back(static_cast<int64_t>(d));
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      fail("{}: tensor '{}' data_offsets must be two non-negative integers", path, name);
    const uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    if (b > e || e > data_size)
      fail("{}: tensor '{}' data_offsets [{}, {}] out of range (data section is {} bytes)", path, name, b, e,
           data_size);
    if (e - b != numel * safe_dtype_size(t.dtype))
      fail("{}: tensor '{}' has {} bytes but shape and dtype need {}", path, name, e - b,
           numel * safe_dtype_size(t.dtype));
    t.data = base + b;
    t.nbytes = static_cast<size_t>(e - b);
    f.tensors_.push_back(std::move(t));
  }
  // Overlap check: sort by start offset, each must begin at or after the previous end. Empty
  // tensors occupy no bytes and overlap nothing (writers give them the offset of the next
  // tensor, which made the check depend on the order of equal starts).
  std::vector<const SafeTensor*> order;
  for (const auto& t : f.tensors_)
    if (t.nbytes != 0) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->data < b->data; });
  for (size_t i = 1; i < order.size(); ++i)
    if (order[i]->data < order[i - 1]->data + order[i - 1]->nbytes)
      fail("{}: tensors '{}' and '{}' overlap", path, order[i - 1]->name, order[i]->name);
  for (size_t i = 0; i < f.tensors_.size(); ++i) f.index_[f.tensors_[i].name] = i;
  return f;
}

const SafeTensor* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const SafeTensor& SafetensorsFile::get(const std::string& name) const {
  const SafeTensor* t = find(name);
  if (!t) fail("{}: missing tensor '{}'", path(), name);
  return *t;
}

WeightMatrix SafetensorsFile::matrix(const SafeTensor& t) const {
  WeightMatrix w;
  switch (t.dtype) {
    case SafeDType::F32: w.type = DType::F32; break;
    case SafeDType::F16: w.type = DType::F16; break;
    case SafeDType::BF16: w.type = DType::BF16; break;
    default: fail("{}: tensor '{}' has dtype {}, expected F32, F16 or BF16", path(), t.name, safe_dtype_name(t.dtype));
  }
  if (t.shape.empty()) fail("{}: tensor '{}' is a scalar, expected a vector or a matrix", path(), t.name);
  // [n] is one row; [r, c, ...] is r rows of everything else (a convolution's kernels).
  w.rows = t.shape.size() >= 2 ? t.shape[0] : 1;
  w.cols = w.rows > 0 ? t.numel() / w.rows : 0;
  w.data = t.data;
  if (reinterpret_cast<uintptr_t>(t.data) % safe_dtype_size(t.dtype) != 0)
    fail("{}: tensor '{}' data is not aligned to its element size", path(), t.name);
  return w;
}

void SafetensorsWriter::add(const std::string& name, SafeDType dtype, const std::vector<int64_t>& shape,
                            const void* data, size_t nbytes) {
  int64_t numel = 1;
  for (int64_t s : shape) numel *= s;
  if (static_cast<size_t>(numel) * safe_dtype_size(dtype) != nbytes)
    fail("safetensors writer: tensor '{}' shape does not match its {} bytes", name, nbytes);
  Entry e{name, dtype, shape, {}};
  e.bytes.assign(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + nbytes);
  entries_.push_back(std::move(e));
}

void SafetensorsWriter::add_f32(const std::string& name, const std::vector<int64_t>& shape, const float* data) {
  int64_t numel = 1;
  for (int64_t s : shape) numel *= s;
  add(name, SafeDType::F32, shape, data, static_cast<size_t>(numel) * 4);
}

std::string SafetensorsWriter::serialize() const {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata_.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata_) m[k] = v;
    h["__metadata__"] = m;
  }
  size_t off = 0;
  for (const auto& e : entries_) {
    h[e.name] = {
        {"dtype", safe_dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {off, off + e.bytes.size()}}};
    off += e.bytes.size();
  }
  std::string js = h.dump();
  while ((8 + js.size()) % 8 != 0) js.push_back(' ');  // keeps the data section 8-byte aligned
  std::string out(8, '\0');
  const uint64_t n = js.size();
  std::memcpy(out.data(), &n, 8);
  out += js;
  for (const auto& e : entries_) out.append(reinterpret_cast<const char*>(e.bytes.data()), e.bytes.size());
  return out;
}

void SafetensorsWriter::write(const std::string& path) const {
  const std::string bytes = serialize();
  write_file_atomic(path, bytes.data(), bytes.size());
}

}  // namespace la
