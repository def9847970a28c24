#include "la/io/adapter_file.h"

#include <charconv>
#include <cmath>
#include <cstring>
#include <map>
#include <span>
#include <vector>

#include "la/core/error.h"
#include "la/formats/gguf.h"

namespace la {

namespace {

constexpr const char* kFormat = "llama-adapter";
constexpr const char* kVersion = "1";
// Bounds on what a file may claim before it sizes anything (a claim past them is an error).
constexpr int64_t kDefaultLen = 10;  // K of the paper and of the official release
constexpr int64_t kMaxLen = 4096, kMaxLayers = 4096, kMaxHeads = 4096, kMaxDim = int64_t{1} << 20;

int64_t meta_int(const std::map<std::string, std::string>& m, const std::string& key, const std::string& path) {
  auto it = m.find(key);
  if (it == m.end()) return -1;
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
  if (ec != std::errc() || ptr != it->second.data() + it->second.size() || v < 0)
    fail("{}: metadata '{}' is not a non-negative integer: '{}'", path, key, it->second);
  return v;
}

// The multi-modal adapter's projection (SPEC §8): its shape from the tensors, the CLIP it belongs
// to from the metadata. No visual_proj tensors: a text-only adapter.
constexpr const char* kVisualTensors[] = {"visual_proj.fc1.weight", "visual_proj.fc1.bias", "visual_proj.fc2.weight",
                                          "visual_proj.fc2.bias"};

VisualSpec read_visual_spec(const SafetensorsFile& f, int64_t dim) {
  const std::string& path = f.path();
  VisualSpec v;
  if (!f.find(kVisualTensors[0])) {
    for (const char* name : kVisualTensors)
      if (f.find(name)) fail("{}: '{}' without visual_proj.fc1.weight", path, name);
    return v;
  }
  auto shape_of = [&](const char* name) {
    const SafeTensor& t = f.get(name);
    if (t.dtype != SafeDType::F32) fail("{}: {} must be F32", path, name);
    return t.shape;
  };
  const std::vector<int64_t> w1 = shape_of(kVisualTensors[0]);
  if (w1.size() != 2 || w1[0] <= 0 || w1[1] <= 0 || w1[0] > 65536 || w1[1] > (int64_t{1} << 20))
    fail("{}: visual_proj.fc1.weight has shape [{}], expected [W, M*E]", path, fmt::join(w1, ", "));
  v.width = w1[0];
  v.in = w1[1];
  const std::vector<std::pair<const char*, std::vector<int64_t>>> want = {
      {kVisualTensors[1], {v.width}}, {kVisualTensors[2], {dim, v.width}}, {kVisualTensors[3], {dim}}};
  for (const auto& [name, shape] : want)
    if (shape_of(name) != shape)
      fail("{}: {} has shape [{}], expected [{}]", path, name, fmt::join(shape_of(name), ", "), fmt::join(shape, ", "));
  const auto& meta = f.metadata();
  if (auto it = meta.find("visual"); it != meta.end() && it->second != "clip")
    fail("{}: metadata visual = '{}', only 'clip' is known", path, printable(it->second));
  if (auto it = meta.find("clip_layers"); it != meta.end()) v.clip_layers = it->second;
  v.clip_embed_dim = std::max<int64_t>(0, meta_int(meta, "clip_embed_dim", path));
  v.clip_image_size = std::max<int64_t>(0, meta_int(meta, "clip_image_size", path));
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
  if (!a.chat_template.empty()) w.set_metadata("template", a.chat_template);
  if (a.visual.enabled()) {  // SPEC §8
    w.set_metadata("visual", "clip");
    w.set_metadata("clip_layers", a.visual.clip_layers);
    w.set_metadata("clip_embed_dim", std::to_string(a.visual.clip_embed_dim));
    w.set_metadata("clip_image_size", std::to_string(a.visual.clip_image_size));
  }
  // Every row of the parameter table under its file key (split per layer where it says so).
  for (const ParamTensor& t : a.params.table().tensors()) {
    const float* v = a.params.values().data() + t.offset;
    if (!t.split_per_layer()) {
      w.add_f32(t.file_key, t.shape, v);
      continue;
    }
    const std::vector<int64_t> row_shape(t.shape.begin() + 1, t.shape.end());
    const size_t row = t.size / static_cast<size_t>(t.shape[0]);
    for (int64_t r = 0; r < t.shape[0]; ++r) w.add_f32(t.file_key_of(r), row_shape, v + static_cast<size_t>(r) * row);
  }
}

namespace {

bool ends_with_gguf(const std::string& p) {
  return p.size() >= 5 && p.compare(p.size() - 5, 5, ".gguf") == 0;
}

// GGUF adapters: general.architecture = "llama_adapter", the shape under llama_adapter.*, tensors
// llama_adapter.adapter_query (ggml dims [dim, L*K]) and llama_adapter.gate.{i} ([H]).
void save_adapter_gguf(const Adapter& a, const std::string& path) {
  if (a.visual.enabled()) fail("{}: a multi-modal adapter is saved as safetensors, not GGUF", path);
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
  if (!a.chat_template.empty()) w.set_string("llama_adapter.template", a.chat_template);
  w.add_tensor("llama_adapter.adapter_query", {a.dim, a.n_layers * a.len}, DType::F32, a.query().data(),
               a.query().size() * sizeof(float));
  for (int64_t i = 0; i < a.n_layers; ++i)
    w.add_tensor(fmt::format("llama_adapter.gate.{}", a.first_layer() + i), {a.n_heads}, DType::F32,
                 a.gate().data() + i * a.n_heads, static_cast<size_t>(a.n_heads) * sizeof(float));
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
  const std::string gate_mode = f.get_string("llama_adapter.gate_mode");  // its errors name the file
  try {
    a.gate_mode = parse_gate_mode(gate_mode);
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  }
  if (a.len <= 0 || a.n_layers <= 0 || a.dim <= 0 || a.n_heads <= 0 || a.n_layers > a.model_layers || a.len > kMaxLen ||
      a.dim > kMaxDim || a.n_heads > kMaxHeads || a.model_layers > kMaxLayers)
    fail("{}: invalid adapter shape ({})", path, a.shape_string());
  if (f.has("llama_adapter.template"))
    if (std::string t = f.get_string("llama_adapter.template"); !t.empty()) a.chat_template = t;
  const GgufTensor* q = f.find_tensor("llama_adapter.adapter_query");
  if (!q || q->type != DType::F32 || q->dims != std::vector<int64_t>{a.dim, a.n_layers * a.len})
    fail("{}: llama_adapter.adapter_query must be F32 [{}, {}]", path, a.dim, a.n_layers * a.len);
  a.allocate();
  std::memcpy(a.query().data(), q->data, q->nbytes);
  for (int64_t i = 0; i < a.n_layers; ++i) {
    const std::string name = fmt::format("llama_adapter.gate.{}", a.first_layer() + i);
    const GgufTensor* g = f.find_tensor(name);
    if (!g || g->type != DType::F32 || g->numel() != a.n_heads)
      fail("{}: {} must be F32 with {} values", path, name, a.n_heads);
    std::memcpy(a.gate().data() + i * a.n_heads, g->data, g->nbytes);
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
  if (q.dtype != SafeDType::F32 || q.shape.size() != 2) fail("{}: adapter_query.weight must be a 2-D F32 tensor", path);
  // Gate tensors layers.{i}.attention.gate, by layer.
  std::map<int64_t, const SafeTensor*> gates;
  for (const auto& t : f.tensors()) {
    if (t.name.rfind("layers.", 0) != 0) continue;
    const auto dot = t.name.find('.', 7);
    if (dot == std::string::npos || t.name.substr(dot) != ".attention.gate") continue;
    int64_t idx = -1;
    auto [ptr, ec] = std::from_chars(t.name.data() + 7, t.name.data() + dot, idx);
    if (ec != std::errc() || ptr != t.name.data() + dot || idx < 0 || idx >= kMaxLayers)
      fail("{}: bad gate tensor name '{}'", path, t.name);
    gates[idx] = &t;
  }
  if (gates.empty()) fail("{}: no layers.*.attention.gate tensors", path);
  // The shape. Without our metadata (an official checkpoint converted by its users): K = 10, the
  // paper's and the release's; L = rows / K; the model's layers from the model (or the highest
  // gate); gates of layers below the top L are ignored (the release has one for every layer).
  Adapter a;
  a.dim = q.shape[1];
  const int64_t rows = q.shape[0];
  const int64_t meta_len = meta_int(meta, "adapter_len", path);
  a.len = meta_len >= 0 ? meta_len : kDefaultLen;
  if (a.len <= 0 || a.len > kMaxLen) fail("{}: adapter_len {} is out of range (1 to {})", path, a.len, kMaxLen);
  if (a.dim <= 0 || a.dim > kMaxDim)
    fail("{}: adapter_query.weight has {} columns (1 to {} allowed)", path, a.dim, kMaxDim);
  if (rows <= 0 || rows % a.len != 0)
    fail("{}: adapter_query.weight has {} rows, not a multiple of the adapter length K={}{}", path, rows, a.len,
         meta_len >= 0 ? "" : " (no metadata: the official K=10 assumed)");
  a.n_layers = rows / a.len;
  const int64_t meta_model_layers = meta_int(meta, "n_layers", path);
  a.model_layers = meta_model_layers >= 0 ? meta_model_layers : model ? model->n_layers : gates.rbegin()->first + 1;
  if (a.model_layers <= 0 || a.model_layers > kMaxLayers)
    fail("{}: the model has {} layers (1 to {} allowed)", path, a.model_layers, kMaxLayers);
  if (a.n_layers > a.model_layers)
    fail("{}: adapter_query.weight has {} rows = {} layers of K={}, more than the model's {} layers", path, rows,
         a.n_layers, a.len, a.model_layers);
  if (gates.rbegin()->first >= a.model_layers)
    fail("{}: a gate names layer {} but the model has {} layers", path, gates.rbegin()->first, a.model_layers);
  a.gate_mode = GateMode::Identity;
  if (auto it = meta.find("gate_mode"); it != meta.end()) {
    try {
      a.gate_mode = parse_gate_mode(it->second);
    } catch (const Error& e) {
      fail("{}: {}", path, e.what());
    }
  }
  // The chat template it was trained with; checked where it is used (resolve_chat_template).
  if (auto it = meta.find("template"); it != meta.end() && !it->second.empty()) a.chat_template = it->second;
  // Heads: from metadata, a [H] or [1,H,1,1] gate, or the model; a [1] gate is one scalar per
  // layer, broadcast to every head.
  int64_t heads = meta_int(meta, "n_heads", path);
  for (int64_t l = a.first_layer(); heads < 0 && l < a.model_layers; ++l)
    if (auto it = gates.find(l); it != gates.end() && it->second->numel() > 1) heads = it->second->numel();
  if (heads < 0) heads = model ? model->n_heads : 1;
  if (heads <= 0 || heads > kMaxHeads) fail("{}: {} heads is out of range (1 to {})", path, heads, kMaxHeads);
  a.n_heads = heads;
  auto check = [&](const char* key, int64_t value) {
    const int64_t m = meta_int(meta, key, path);
    if (m >= 0 && m != value) fail("{}: metadata {}={} does not match the tensors ({})", path, key, m, value);
  };
  check("adapter_layers", a.n_layers);
  check("dim", a.dim);
  a.visual = read_visual_spec(f, a.dim);
  a.allocate();
  // memcpy: a file written elsewhere need not keep tensors 4-byte aligned.
  std::memcpy(a.query().data(), q.data, q.nbytes);
  std::span<float> gate = a.gate();
  for (int64_t i = 0; i < a.n_layers; ++i) {
    const int64_t layer = a.first_layer() + i;
    auto it = gates.find(layer);
    if (it == gates.end())
      fail("{}: no gate for adapted layer {} (the top {} of {} layers are adapted)", path, layer, a.n_layers,
           a.model_layers);
    const SafeTensor& t = *it->second;
    if (t.dtype != SafeDType::F32) fail("{}: gate '{}' must be F32", path, t.name);
    const int64_t n = t.numel();
    if (n != a.n_heads && n != 1)
      fail("{}: gate '{}' has {} values, expected {} (one per head) or 1", path, t.name, n, a.n_heads);
    std::vector<float> src(static_cast<size_t>(n));
    std::memcpy(src.data(), t.data, t.nbytes);
    for (int64_t h = 0; h < a.n_heads; ++h) gate[static_cast<size_t>(i * a.n_heads + h)] = src[n == 1 ? 0 : h];
  }
  if (a.visual.enabled())
    for (const char* name : kVisualTensors) {
      const SafeTensor& t = f.get(name);
      std::memcpy(a.params[name].data(), t.data, t.nbytes);
    }
  return a;
}

Adapter load_adapter(const std::string& path, const ModelConfig* model) {
  Adapter a;
  bool gguf = false;
  {
    auto f = MappedFile::open(path);
    gguf = f->size() >= 4 && std::memcmp(f->data(), "GGUF", 4) == 0;
  }
  a = gguf ? load_adapter_gguf(path) : read_adapter_tensors(SafetensorsFile::open(path), model);
  for (const ParamTensor& t : a.params.table().tensors())
    for (float v : a.params.slice(t))
      if (!std::isfinite(v)) fail("{}: {} holds NaN or infinite values", path, t.file_key);
  if (model) a.check_compatible(*model, path);
  return a;
}

}  // namespace la
