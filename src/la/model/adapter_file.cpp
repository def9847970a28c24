#include "la/model/adapter_file.h"

#include <charconv>
#include <cstring>
#include <vector>
#include <map>

#include "la/core/error.h"
#include "la/formats/gguf.h"

namespace la {

namespace {

constexpr const char* kFormat = "llama-adapter";
constexpr const char* kVersion = "1";

int64_t meta_int(const std::map<std::string, std::string>& m, const std::string& key, const std::string& path) {
  auto it = m.find(key);
  if (it == m.end()) return -1;
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
  if (ec != std::errc() || ptr != it->second.data() + it->second.size() || v < 0)
    fail("{}: metadata '{}' is not a non-negative integer: '{}'", path, key, it->second);
  return v;
}

}  // namespace

void add_adapter_tensors(SafetensorsWriter& w, const Adapter& a) {
  w.set_metadata("format", kFormat);
  w.set_metadata("version", kVersion);
  w.set_metadata("adapter_len", std::to_string(a.len));
  w.set_metadata("adapter_layers", std::to_string(a.n_layers));
  w.set_metadata("gate_mode", gate_mode_name(a.gate_mode));
  w.set_metadata("dim", std::to_string(a.dim));
  w.set_metadata("n_layers", std::to_string(a.model_layers));
  w.set_metadata("n_heads", std::to_string(a.n_heads));
  w.add_f32("adapter_query.weight", {a.n_layers * a.len, a.dim}, a.query.data());
  for (int64_t i = 0; i < a.n_layers; ++i)
    w.add_f32(fmt::format("layers.{}.attention.gate", a.first_layer() + i), {a.n_heads},
              a.gate.data() + i * a.n_heads);
}

namespace {

bool ends_with_gguf(const std::string& p) { return p.size() >= 5 && p.compare(p.size() - 5, 5, ".gguf") == 0; }

// GGUF adapters: general.architecture = "llama_adapter", the shape under llama_adapter.*, tensors
// llama_adapter.adapter_query (ggml dims [dim, L*K]) and llama_adapter.gate.{i} ([H]).
void save_adapter_gguf(const Adapter& a, const std::string& path) {
  GgufWriter w;
  w.set_string("general.architecture", "llama_adapter");
  w.set_u32("general.alignment", 32);
  w.set_string("llama_adapter.format", kFormat);
  w.set_u32("llama_adapter.version", 1);
  w.set_u32("llama_adapter.adapter_len", static_cast<uint32_t>(a.len));
  w.set_u32("llama_adapter.adapter_layers", static_cast<uint32_t>(a.n_layers));
  w.set_string("llama_adapter.gate_mode", gate_mode_name(a.gate_mode));
  w.set_u32("llama_adapter.dim", static_cast<uint32_t>(a.dim));
  w.set_u32("llama_adapter.n_layers", static_cast<uint32_t>(a.model_layers));
  w.set_u32("llama_adapter.n_heads", static_cast<uint32_t>(a.n_heads));
  w.add_tensor("llama_adapter.adapter_query", {a.dim, a.n_layers * a.len}, DType::F32, a.query.data(),
               a.query.size() * sizeof(float));
  for (int64_t i = 0; i < a.n_layers; ++i)
    w.add_tensor(fmt::format("llama_adapter.gate.{}", a.first_layer() + i), {a.n_heads}, DType::F32,
                 a.gate.data() + i * a.n_heads, static_cast<size_t>(a.n_heads) * sizeof(float));
  w.write(path);
}

Adapter load_adapter_gguf(const std::string& path) {
  GgufFile f = GgufFile::open(path);
  if (!f.has("general.architecture") || f.get_string("general.architecture") != "llama_adapter")
    fail("{}: not a llama_adapter GGUF file (general.architecture)", path);
  Adapter a;
  a.len = f.get_int("llama_adapter.adapter_len");
  a.n_layers = f.get_int("llama_adapter.adapter_layers");
  a.dim = f.get_int("llama_adapter.dim");
  a.model_layers = f.get_int("llama_adapter.n_layers");
  a.n_heads = f.get_int("llama_adapter.n_heads");
  try {
    a.gate_mode = parse_gate_mode(f.get_string("llama_adapter.gate_mode"));
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  }
  if (a.len <= 0 || a.n_layers <= 0 || a.dim <= 0 || a.n_heads <= 0 || a.n_layers > a.model_layers ||
      a.len > 4096 || a.dim > (1 << 20) || a.n_heads > 4096 || a.model_layers > 4096)
    fail("{}: invalid adapter shape ({})", path, a.shape_string());
  const GgufTensor* q = f.find_tensor("llama_adapter.adapter_query");
  if (!q || q->type != DType::F32 || q->dims != std::vector<int64_t>{a.dim, a.n_layers * a.len})
    fail("{}: llama_adapter.adapter_query must be F32 [{}, {}]", path, a.dim, a.n_layers * a.len);
  a.query.resize(static_cast<size_t>(q->numel()));
  std::memcpy(a.query.data(), q->data, q->nbytes);
  a.gate.resize(static_cast<size_t>(a.n_layers * a.n_heads));
  for (int64_t i = 0; i < a.n_layers; ++i) {
    const std::string name = fmt::format("llama_adapter.gate.{}", a.first_layer() + i);
    const GgufTensor* g = f.find_tensor(name);
    if (!g || g->type != DType::F32 || g->numel() != a.n_heads)
      fail("{}: {} must be F32 with {} values", path, name, a.n_heads);
    std::memcpy(a.gate.data() + i * a.n_heads, g->data, g->nbytes);
  }
  return a;
}

}  // namespace

void save_adapter(const Adapter& a, const std::string& path) {
  if (ends_with_gguf(path)) return save_adapter_gguf(a, path);
  SafetensorsWriter w;
  add_adapter_tensors(w, a);
  w.write(path);
}

Adapter read_adapter_tensors(const SafetensorsFile& f, const ModelConfig* model) {
  const std::string& path = f.path();
  const auto& meta = f.metadata();
  if (auto it = meta.find("format"); it != meta.end() && it->second != kFormat)
    fail("{}: metadata format is '{}', expected '{}'", path, it->second, kFormat);
  const SafeTensor& q = f.get("adapter_query.weight");
  if (q.dtype != SafeDType::F32 || q.shape.size() != 2)
    fail("{}: adapter_query.weight must be a 2-D F32 tensor", path);
  // Gate tensors: layers.{i}.attention.gate
  std::map<int64_t, const SafeTensor*> gates;
  for (const auto& t : f.tensors()) {
    if (t.name.rfind("layers.", 0) != 0) continue;
    const auto dot = t.name.find('.', 7);
    if (dot == std::string::npos || t.name.substr(dot) != ".attention.gate") continue;
    int64_t idx = -1;
    auto [ptr, ec] = std::from_chars(t.name.data() + 7, t.name.data() + dot, idx);
    if (ec != std::errc() || ptr != t.name.data() + dot || idx < 0) fail("{}: bad gate tensor name '{}'", path, t.name);
    if (t.dtype != SafeDType::F32) fail("{}: gate '{}' must be F32", path, t.name);
    gates[idx] = &t;
  }
  if (gates.empty()) fail("{}: no layers.*.attention.gate tensors", path);
  Adapter a;
  a.n_layers = static_cast<int64_t>(gates.size());
  a.dim = q.shape[1];
  const int64_t rows = q.shape[0];
  if (rows % a.n_layers != 0)
    fail("{}: adapter_query.weight has {} rows, not a multiple of the {} gated layers", path, rows, a.n_layers);
  a.len = rows / a.n_layers;
  a.model_layers = gates.rbegin()->first + 1;
  // The adapted layers must be the top ones, contiguous.
  if (gates.begin()->first != a.model_layers - a.n_layers)
    fail("{}: gated layers {}..{} are not contiguous", path, gates.begin()->first, gates.rbegin()->first);
  a.gate_mode = GateMode::Identity;
  if (auto it = meta.find("gate_mode"); it != meta.end()) {
    try {
      a.gate_mode = parse_gate_mode(it->second);
    } catch (const Error& e) {
      fail("{}: {}", path, e.what());
    }
  }
  // Heads: from a [H] or [1,H,1,1] gate; a [1] gate is one scalar per layer, broadcast.
  const SafeTensor& g0 = *gates.begin()->second;
  int64_t heads = g0.numel();
  if (heads == 1) heads = meta_int(meta, "n_heads", path) > 0 ? meta_int(meta, "n_heads", path) : (model ? model->n_heads : 1);
  a.n_heads = heads;
  auto check = [&](const char* key, int64_t value) {
    const int64_t m = meta_int(meta, key, path);
    if (m >= 0 && m != value) fail("{}: metadata {}={} does not match the tensors ({})", path, key, m, value);
  };
  check("adapter_len", a.len);
  check("adapter_layers", a.n_layers);
  check("dim", a.dim);
  check("n_heads", a.n_heads);
  if (const int64_t n = meta_int(meta, "n_layers", path); n >= 0) {
    if (n < a.model_layers) fail("{}: metadata n_layers={} but a gate names layer {}", path, n, a.model_layers - 1);
    a.model_layers = n;
    if (gates.rbegin()->first != n - 1) fail("{}: adapted layers must be the top ones of {} layers", path, n);
  }
  // memcpy: a file written elsewhere need not keep tensors 4-byte aligned.
  a.query.resize(static_cast<size_t>(q.numel()));
  std::memcpy(a.query.data(), q.data, q.nbytes);
  a.gate.resize(static_cast<size_t>(a.n_layers * a.n_heads));
  int64_t i = 0;
  for (const auto& [idx, t] : gates) {
    const int64_t n = t->numel();
    std::vector<float> src(static_cast<size_t>(n));
    std::memcpy(src.data(), t->data, t->nbytes);
    if (n != a.n_heads && n != 1)
      fail("{}: gate '{}' has {} values, expected {} (one per head) or 1", path, t->name, n, a.n_heads);
    for (int64_t h = 0; h < a.n_heads; ++h) a.gate[static_cast<size_t>(i * a.n_heads + h)] = src[n == 1 ? 0 : h];
    ++i;
  }
  return a;
}

Adapter load_adapter(const std::string& path, const ModelConfig* model) {
  {
    auto f = MappedFile::open(path);
    if (f->size() >= 4 && std::memcmp(f->data(), "GGUF", 4) == 0) return load_adapter_gguf(path);
  }
  return read_adapter_tensors(SafetensorsFile::open(path), model);
}

}  // namespace la
