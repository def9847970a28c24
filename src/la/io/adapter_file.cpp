#include "la/io/adapter_file.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <span>
#include <vector>

#include "la/core/error.h"
#include "la/formats/gguf.h"
#include "la/formats/pth.h"
#include "la/io/adapter_interchange.h"

namespace la {

namespace {

constexpr const char* kFormat = "llama-adapter";
constexpr const char* kVersion = "1";
// Bounds on what a file may claim before it sizes anything (a claim past them is an error).
constexpr int64_t kMaxLen = 4096, kMaxLayers = 4096, kMaxHeads = 4096, kMaxDim = int64_t{1} << 20;

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
  v.clip_embed_dim = std::max<int64_t>(0, metadata_int(meta, "clip_embed_dim", path));
  v.clip_image_size = std::max<int64_t>(0, metadata_int(meta, "clip_image_size", path));
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

Adapter read_adapter_tensors(const SafetensorsFile& f, const ModelConfig* model, bool* heads_known) {
  Adapter a = read_official_layout(stored_tensors(f), model, heads_known);
  const VisualSpec visual = read_visual_spec(f, a.dim);
  if (!visual.enabled()) return a;
  // The multi-modal projection: four more rows of the parameter table after the prompts and gates.
  Adapter mm = a;
  mm.visual = visual;
  mm.allocate();
  std::copy(a.query().begin(), a.query().end(), mm.query().begin());
  std::copy(a.gate().begin(), a.gate().end(), mm.gate().begin());
  for (const char* name : kVisualTensors) {
    const SafeTensor& t = f.get(name);
    std::memcpy(mm.params[name].data(), t.data, t.nbytes);  // memcpy: no alignment assumed
  }
  return mm;
}

AdapterFormat parse_adapter_format(const std::string& name) {
  for (AdapterFormat f :
       {AdapterFormat::Ours, AdapterFormat::Gguf, AdapterFormat::Official, AdapterFormat::Peft, AdapterFormat::Litgpt})
    if (name == adapter_format_name(f)) return f;
  fail("unknown adapter format '{}' (expected safetensors, gguf, official, peft or litgpt)", printable(name));
}

const char* adapter_format_name(AdapterFormat f) {
  switch (f) {
    case AdapterFormat::Ours: return "safetensors";
    case AdapterFormat::Gguf: return "gguf";
    case AdapterFormat::Official: return "official";
    case AdapterFormat::Peft: return "peft";
    case AdapterFormat::Litgpt: return "litgpt";
  }
  return "?";
}

namespace {

// By content, never by name: a folder is PEFT's; GGUF and zip (PyTorch's .pth) files by their
// magic; anything else must be safetensors, whose tensor names tell the layouts apart.
Adapter read_any(const std::string& path, const ModelConfig* model, AdapterSource& src) {
  if (is_directory(path)) {
    src.format = AdapterFormat::Peft;
    return read_peft_directory(path, model, &src.heads_known);
  }
  char magic[4] = {};
  {
    auto f = MappedFile::open(path);
    if (f->size() >= 4) std::memcpy(magic, f->data(), 4);
  }
  if (std::memcmp(magic, "GGUF", 4) == 0) {
    src.format = AdapterFormat::Gguf;
    return load_adapter_gguf(path);
  }
  if (std::memcmp(magic, "PK\x03\x04", 4) == 0) {
    const auto pth = PthFile::open(path);
    const StoredTensors s = stored_tensors(*pth);
    if (has_litgpt_keys(s)) {
      src.format = AdapterFormat::Litgpt;
      return read_litgpt_layout(s, model);
    }
    src.format = AdapterFormat::Official;
    return read_official_layout(s, model, &src.heads_known);
  }
  const SafetensorsFile f = SafetensorsFile::open(path);
  const StoredTensors s = stored_tensors(f);
  if (has_peft_keys(s)) {
    // PEFT's weights without their adapter_config.json lack K's and L's declaration: read the folder.
    const std::filesystem::path dir = std::filesystem::path(path).parent_path();
    if (!file_exists((dir / "adapter_config.json").string()))
      fail("{}: PEFT AdaptionPrompt weights without adapter_config.json beside them; give the PEFT folder", path);
    src.format = AdapterFormat::Peft;
    return read_peft_directory(dir.empty() ? "." : dir.string(), model, &src.heads_known);
  }
  if (has_litgpt_keys(s)) {
    src.format = AdapterFormat::Litgpt;
    return read_litgpt_layout(s, model);
  }
  src.format = f.metadata().count("format") ? AdapterFormat::Ours : AdapterFormat::Official;
  return read_adapter_tensors(f, model, &src.heads_known);
}

}  // namespace

Adapter load_adapter(const std::string& path, const ModelConfig* model, AdapterSource* source) {
  AdapterSource src;
  Adapter a = read_any(path, model, src);
  for (const ParamTensor& t : a.params.table().tensors())
    for (float v : a.params.slice(t))
      if (!std::isfinite(v)) fail("{}: {} holds NaN or infinite values", path, t.file_key);
  if (model) a.check_compatible(*model, path);
  if (source) *source = src;
  return a;
}

void save_adapter_as(const Adapter& a, AdapterFormat format, const std::string& path, const ModelConfig* model) {
  if (model) {
    a.check_compatible(*model, path);
    if (format == AdapterFormat::Litgpt) check_litgpt_model(*model, path);
  }
  switch (format) {
    case AdapterFormat::Ours: {
      SafetensorsWriter w;
      add_adapter_tensors(w, a);
      w.write(path);
      return;
    }
    case AdapterFormat::Gguf: return save_adapter_gguf(a, path);
    case AdapterFormat::Official: return save_official_adapter(a, path);
    case AdapterFormat::Peft: return save_peft_adapter(a, path);
    case AdapterFormat::Litgpt: return save_litgpt_adapter(a, path);
  }
}

}  // namespace la
