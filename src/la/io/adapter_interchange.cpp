#include "la/io/adapter_interchange.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "la/core/error.h"
#include "la/core/half.h"
#include "la/core/mapped_file.h"
#include "la/formats/pth.h"
#include "la/io/hf_files.h"

namespace la {

namespace {

// What a file may claim before it sizes anything (the limits of our own format's reader).
constexpr int64_t kDefaultLen = 10;  // K of the paper and of the official release
constexpr int64_t kMaxLen = 4096, kMaxLayers = 4096, kMaxHeads = 4096, kMaxDim = int64_t{1} << 20;

std::string shape_text(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// `name` = prefix + decimal layer index + suffix: the index, or -1.
int64_t layer_of(std::string_view name, std::string_view prefix, std::string_view suffix) {
  if (name.size() <= prefix.size() + suffix.size() || !name.starts_with(prefix) || !name.ends_with(suffix)) return -1;
  const std::string_view digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  int64_t v = -1;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (ec != std::errc() || ptr != digits.data() + digits.size() || v < 0 || v >= kMaxLayers ||
      (digits.size() > 1 && digits[0] == '0'))
    return -1;
  return v;
}

// The adapted layers of the formats that name their layers (PEFT, litgpt) must be the top ones,
// without gaps: [first, n_layers). Returns the model's layer count.
int64_t top_layers(const std::map<int64_t, const StoredTensor*>& layers, const ModelConfig* model,
                   const std::string& path, const char* what) {
  const int64_t first = layers.begin()->first, last = layers.rbegin()->first;
  if (static_cast<int64_t>(layers.size()) != last - first + 1)
    fail("{}: {} for {} layers between layer {} and {}: the adapted layers must be consecutive", path, what,
         layers.size(), first, last);
  const int64_t n = model ? model->n_layers : last + 1;
  if (last != n - 1)
    fail("{}: the top adapted layer is {}, but the model has {} layers: the adapted layers are always the top ones",
         path, last, n);
  return n;
}

void check_float(const StoredTensor& t, const std::string& path) {
  if (!t.is_float) fail("{}: tensor '{}' is {}, expected F32, F16 or BF16", path, printable(t.name), t.type);
}

// gamma = what the forward multiplies the prompt branch by; formats without a tanh store it.
std::vector<float> gammas(const Adapter& a) {
  std::vector<float> g(static_cast<size_t>(a.n_layers * a.n_heads));
  for (int64_t i = 0; i < a.n_layers; ++i)
    for (int64_t h = 0; h < a.n_heads; ++h) g[static_cast<size_t>(i * a.n_heads + h)] = a.gamma(a.first_layer() + i, h);
  return g;
}

void refuse_visual(const Adapter& a, const std::string& path, const char* format) {
  if (a.visual.enabled())
    fail("{}: the {} format holds no visual projection: a multi-modal adapter stays in our safetensors", path, format);
}

const float* prompt_rows(const Adapter& a, int64_t i) {
  return a.query().data() + static_cast<size_t>(i * a.len * a.dim);
}

constexpr std::string_view kPeftPrefix = "base_model.model.";
constexpr std::string_view kPeftLayer = "model.layers.";
constexpr std::string_view kPeftPrompt = ".self_attn.adaption_prompt";
constexpr std::string_view kPeftGate = ".self_attn.adaption_gate";
constexpr std::string_view kLitLayer = "transformer.h.";
constexpr std::string_view kLitPrompt = ".attn.adapter_wte.weight";
constexpr std::string_view kLitGate = ".attn.gating_factor";

std::string_view without_prefix(std::string_view name, std::string_view prefix) {
  return name.starts_with(prefix) ? name.substr(prefix.size()) : name;
}

}  // namespace

int64_t StoredTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const StoredTensor* StoredTensors::find(std::string_view name) const {
  for (const StoredTensor& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

StoredTensors stored_tensors(const SafetensorsFile& f) {
  StoredTensors s;
  s.path = f.path();
  s.metadata = f.metadata();
  for (const SafeTensor& t : f.tensors()) {
    StoredTensor o;
    o.name = t.name;
    o.type = safe_dtype_name(t.dtype);
    o.is_float = t.dtype == SafeDType::F32 || t.dtype == SafeDType::F16 || t.dtype == SafeDType::BF16;
    o.dtype = t.dtype == SafeDType::F16 ? DType::F16 : t.dtype == SafeDType::BF16 ? DType::BF16 : DType::F32;
    o.shape = t.shape;
    o.data = t.data;
    s.tensors.push_back(std::move(o));
  }
  return s;
}

StoredTensors stored_tensors(const PthFile& f) {
  StoredTensors s;
  s.path = f.path();
  for (const PthTensor& t : f.tensors()) {
    StoredTensor o;
    o.name = t.name;
    o.type = dtype_name(t.dtype);
    o.is_float = t.dtype == DType::F32 || t.dtype == DType::F16 || t.dtype == DType::BF16;
    o.dtype = t.dtype;
    o.shape = t.shape;
    if (!t.contiguous()) o.strides = t.strides;
    o.data = t.data;
    s.tensors.push_back(std::move(o));
  }
  return s;
}

std::vector<float> stored_values(const StoredTensor& t, const std::string& path) {
  check_float(t, path);
  const int64_t n = t.numel();
  std::vector<float> out(static_cast<size_t>(n));
  const auto* base = static_cast<const uint8_t*>(t.data);
  const size_t width = t.dtype == DType::F32 ? 4 : 2;
  auto value_at = [&](int64_t element) {
    const uint8_t* p = base + static_cast<size_t>(element) * width;
    if (t.dtype == DType::F32) {
      float v;
      std::memcpy(&v, p, 4);
      return v;
    }
    uint16_t h;
    std::memcpy(&h, p, 2);
    return t.dtype == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
  };
  if (t.strides.empty()) {
    for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = value_at(i);
    return out;
  }
  // A strided view (torch.save keeps a transposed or sliced tensor's strides): walk its indices in
  // row-major order.
  const size_t rank = t.shape.size();
  std::vector<int64_t> index(rank, 0);
  for (int64_t i = 0; i < n; ++i) {
    int64_t offset = 0;
    for (size_t d = 0; d < rank; ++d) offset += index[d] * t.strides[d];
    out[static_cast<size_t>(i)] = value_at(offset);
    for (size_t d = rank; d-- > 0;) {
      if (++index[d] < t.shape[d]) break;
      index[d] = 0;
    }
  }
  return out;
}

int64_t metadata_int(const std::map<std::string, std::string>& m, const std::string& key, const std::string& path) {
  auto it = m.find(key);
  if (it == m.end()) return -1;
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
  if (ec != std::errc() || ptr != it->second.data() + it->second.size() || v < 0)
    fail("{}: metadata '{}' is not a non-negative integer: '{}'", path, key, printable(it->second));
  return v;
}

// ------------------------------------------------------------------------------------------------
// The official layout (and ours, which is the official layout with metadata)

Adapter read_official_layout(const StoredTensors& s, const ModelConfig* model, bool* heads_known) {
  const std::string& path = s.path;
  const auto& meta = s.metadata;
  if (auto it = meta.find("format"); it != meta.end() && it->second != "llama-adapter")
    fail("{}: metadata format is '{}', expected 'llama-adapter'", path, printable(it->second));
  const StoredTensor* q = s.find("adapter_query.weight");
  if (!q) fail("{}: missing tensor 'adapter_query.weight'", path);
  if (!q->is_float || q->shape.size() != 2)
    fail("{}: adapter_query.weight must be a 2-D F32, F16 or BF16 tensor (it is {} {})", path, q->type,
         shape_text(q->shape));
  // Gate tensors layers.{i}.attention.gate, by layer.
  std::map<int64_t, const StoredTensor*> gates;
  for (const StoredTensor& t : s.tensors) {
    if (!t.name.starts_with("layers.") || !t.name.ends_with(".attention.gate")) continue;
    const int64_t idx = layer_of(t.name, "layers.", ".attention.gate");
    if (idx < 0) fail("{}: bad gate tensor name '{}'", path, printable(t.name));
    gates[idx] = &t;
  }
  if (gates.empty()) fail("{}: no layers.*.attention.gate tensors", path);
  // The shape. Without our metadata (the official release, as .pth or converted by its users):
  // K = 10, the paper's and the release's; L = rows / K; the model's layers from the model (or
  // the highest gate: the release has one for every layer); gates below the top L are ignored.
  Adapter a;
  a.dim = q->shape[1];
  const int64_t rows = q->shape[0];
  const int64_t meta_len = metadata_int(meta, "adapter_len", path);
  a.len = meta_len >= 0 ? meta_len : kDefaultLen;
  if (a.len <= 0 || a.len > kMaxLen) fail("{}: adapter_len {} is out of range (1 to {})", path, a.len, kMaxLen);
  if (a.dim <= 0 || a.dim > kMaxDim)
    fail("{}: adapter_query.weight has {} columns (1 to {} allowed)", path, a.dim, kMaxDim);
  if (rows <= 0 || rows % a.len != 0)
    fail("{}: adapter_query.weight has {} rows, not a multiple of the adapter length K={}{}", path, rows, a.len,
         meta_len >= 0 ? "" : " (no metadata: the official K=10 assumed)");
  a.n_layers = rows / a.len;
  const int64_t meta_model_layers = metadata_int(meta, "n_layers", path);
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
  int64_t heads = metadata_int(meta, "n_heads", path);
  for (int64_t l = a.first_layer(); heads < 0 && l < a.model_layers; ++l)
    if (auto it = gates.find(l); it != gates.end() && it->second->numel() > 1) heads = it->second->numel();
  if (heads < 0 && model) heads = model->n_heads;
  if (heads < 0) {
    heads = 1;
    if (heads_known) *heads_known = false;
  }
  if (heads <= 0 || heads > kMaxHeads) fail("{}: {} heads is out of range (1 to {})", path, heads, kMaxHeads);
  a.n_heads = heads;
  auto check = [&](const char* key, int64_t value) {
    const int64_t m = metadata_int(meta, key, path);
    if (m >= 0 && m != value) fail("{}: metadata {}={} does not match the tensors ({})", path, key, m, value);
  };
  check("adapter_layers", a.n_layers);
  check("dim", a.dim);
  a.allocate();
  const std::vector<float> query = stored_values(*q, path);
  std::copy(query.begin(), query.end(), a.query().begin());
  std::span<float> gate = a.gate();
  for (int64_t i = 0; i < a.n_layers; ++i) {
    const int64_t layer = a.first_layer() + i;
    auto it = gates.find(layer);
    if (it == gates.end())
      fail("{}: no gate for adapted layer {} (the top {} of {} layers are adapted)", path, layer, a.n_layers,
           a.model_layers);
    const StoredTensor& t = *it->second;
    const int64_t n = t.numel();
    if (n != a.n_heads && n != 1)
      fail("{}: gate '{}' has {} values, expected {} (one per head) or 1", path, t.name, n, a.n_heads);
    const std::vector<float> src = stored_values(t, path);
    for (int64_t h = 0; h < a.n_heads; ++h) gate[static_cast<size_t>(i * a.n_heads + h)] = src[n == 1 ? 0 : h];
  }
  return a;
}

void save_official_adapter(const Adapter& a, const std::string& path) {
  refuse_visual(a, path, "official");
  // The release's code and every reader of its files (ours included) take K = 10: a file of
  // another K would be read as other layers.
  if (a.len != kDefaultLen)
    fail("{}: the official format has no field for the adapter length and is read with K={}; this adapter has K={}",
         path, kDefaultLen, a.len);
  const std::vector<float> g = gammas(a);
  const std::vector<float> untrained(static_cast<size_t>(a.n_heads), 0.0f);
  const std::vector<int64_t> gate_shape{1, a.n_heads, 1, 1};
  auto gate_of = [&](int64_t layer) {
    return layer < a.first_layer() ? untrained.data() : g.data() + (layer - a.first_layer()) * a.n_heads;
  };
  if (path.ends_with(".safetensors")) {
    SafetensorsWriter w;
    w.add_f32("adapter_query.weight", {a.n_layers * a.len, a.dim}, a.query().data());
    for (int64_t l = 0; l < a.model_layers; ++l)
      w.add_f32(fmt::format("layers.{}.attention.gate", l), gate_shape, gate_of(l));
    w.write(path);
    return;
  }
  PthWriter w;
  w.add("adapter_query.weight", DType::F32, {a.n_layers * a.len, a.dim}, a.query().data());
  for (int64_t l = 0; l < a.model_layers; ++l)
    w.add(fmt::format("layers.{}.attention.gate", l), DType::F32, gate_shape, gate_of(l));
  w.write(path);
}

// ------------------------------------------------------------------------------------------------
// litgpt

bool has_litgpt_keys(const StoredTensors& s) {
  for (const StoredTensor& t : s.tensors) {
    const std::string_view name = without_prefix(t.name, "model.");
    if (name.starts_with(kLitLayer) && (name.ends_with(kLitPrompt) || name.ends_with(kLitGate))) return true;
  }
  return false;
}

void check_litgpt_model(const ModelConfig& c, const std::string& source) {
  if (c.n_kv_heads != 1)
    fail(
        "{}: litgpt's adapter takes the prompt's keys and values from other rows of its qkv matrix than Wk and Wv "
        "when the model has more than one key/value head (this one has {}), so litgpt's outputs are not "
        "LLaMA-Adapter's and we would not reproduce them; refused",
        source, c.n_kv_heads);
}

Adapter read_litgpt_layout(const StoredTensors& s, const ModelConfig* model) {
  const std::string& path = s.path;
  std::map<int64_t, const StoredTensor*> prompts, gates;
  for (const StoredTensor& t : s.tensors) {
    // litgpt saves {"model": state_dict}; its loader also takes the state dict itself.
    const std::string_view name = without_prefix(t.name, "model.");
    if (const int64_t l = layer_of(name, kLitLayer, kLitPrompt); l >= 0)
      prompts[l] = &t;
    else if (const int64_t g = layer_of(name, kLitLayer, kLitGate); g >= 0)
      gates[g] = &t;
    else
      fail(
          "{}: unexpected tensor '{}' in a litgpt adapter checkpoint (it holds attn.adapter_wte.weight and "
          "attn.gating_factor)",
          path, printable(t.name));
  }
  if (prompts.empty()) fail("{}: no transformer.h.*.attn.adapter_wte.weight tensors", path);
  for (const auto& [l, t] : prompts)
    if (!gates.count(l)) fail("{}: layer {} has adapter_wte but no gating_factor", path, l);
  for (const auto& [l, t] : gates)
    if (!prompts.count(l)) fail("{}: layer {} has gating_factor but no adapter_wte", path, l);
  const int64_t model_layers = top_layers(prompts, model, path, "adapter_wte");

  const StoredTensor& p0 = *prompts.begin()->second;
  check_float(p0, path);
  if (p0.shape.size() != 2 || p0.shape[0] <= 0 || p0.shape[0] > kMaxLen || p0.shape[1] <= 0 || p0.shape[1] > kMaxDim)
    fail("{}: {} has shape {}, expected [K, dim]", path, printable(p0.name), shape_text(p0.shape));
  const StoredTensor& g0 = *gates.begin()->second;
  // [1, 1, H, 1] since litgpt's gate multiplies [B, T, H, hs]; lit-gpt before July 2023 wrote
  // [1, H, 1, 1] (litgpt still loads it, permuted), from the time its qkv was interleaved per
  // group, when its adapter computed LLaMA-Adapter's math for any number of key/value heads.
  const bool legacy = g0.shape.size() == 4 && g0.shape[1] > 1 && g0.shape[2] == 1;
  if (g0.shape.size() != 4 || g0.shape[0] != 1 || g0.shape[3] != 1 || (g0.shape[1] != 1 && !legacy))
    fail("{}: {} has shape {}, expected [1, 1, H, 1]", path, printable(g0.name), shape_text(g0.shape));
  Adapter a;
  a.len = p0.shape[0];
  a.dim = p0.shape[1];
  a.n_heads = legacy ? g0.shape[1] : g0.shape[2];
  if (a.n_heads <= 0 || a.n_heads > kMaxHeads)
    fail("{}: {} heads is out of range (1 to {})", path, a.n_heads, kMaxHeads);
  a.model_layers = model_layers;
  a.n_layers = static_cast<int64_t>(prompts.size());
  a.gate_mode = GateMode::Identity;  // litgpt multiplies by gating_factor itself
  if (model && !legacy) check_litgpt_model(*model, path);
  a.allocate();
  for (const auto& [l, t] : prompts) {
    if (t->shape != p0.shape)
      fail("{}: {} has shape {}, the other layers {}", path, printable(t->name), shape_text(t->shape),
           shape_text(p0.shape));
    const StoredTensor& g = *gates.at(l);
    if (g.shape != g0.shape)
      fail("{}: {} has shape {}, the other layers {}", path, printable(g.name), shape_text(g.shape),
           shape_text(g0.shape));
    const int64_t i = l - a.first_layer();
    const std::vector<float> prompt = stored_values(*t, path), gate = stored_values(g, path);
    std::copy(prompt.begin(), prompt.end(), a.query().begin() + i * a.len * a.dim);
    std::copy(gate.begin(), gate.end(), a.gate().begin() + i * a.n_heads);
  }
  return a;
}

void save_litgpt_adapter(const Adapter& a, const std::string& path) {
  refuse_visual(a, path, "litgpt");
  const std::vector<float> g = gammas(a);
  PthWriter w;
  w.set_root_key("model");  // {"model": state_dict}, as litgpt's save_adapter_checkpoint writes
  for (int64_t i = 0; i < a.n_layers; ++i) {
    const int64_t layer = a.first_layer() + i;
    w.add(fmt::format("transformer.h.{}.attn.adapter_wte.weight", layer), DType::F32, {a.len, a.dim},
          prompt_rows(a, i));
    w.add(fmt::format("transformer.h.{}.attn.gating_factor", layer), DType::F32, {1, 1, a.n_heads, 1},
          g.data() + i * a.n_heads);
  }
  w.write(path);
}

// ------------------------------------------------------------------------------------------------
// PEFT AdaptionPrompt

bool has_peft_keys(const StoredTensors& s) {
  for (const StoredTensor& t : s.tensors)
    if (t.name.find(".self_attn.adaption_") != std::string::npos) return true;
  return false;
}

Adapter read_peft_directory(const std::string& dir, const ModelConfig* model, bool* heads_known) {
  const std::string cfg_path = dir + "/adapter_config.json";
  if (!file_exists(cfg_path)) fail("{}: not a PEFT adapter directory: adapter_config.json is missing", dir);
  const nlohmann::json cfg = read_json_object(cfg_path);
  if (!cfg.contains("peft_type") || !cfg["peft_type"].is_string())
    fail("{}: missing string field 'peft_type'", cfg_path);
  if (const std::string type = cfg["peft_type"].get<std::string>(); type != "ADAPTION_PROMPT")
    fail("{}: peft_type is '{}'; only ADAPTION_PROMPT (LLaMA-Adapter) adapters are read", cfg_path, printable(type));
  if (cfg.contains("target_modules") && !cfg["target_modules"].is_null() &&
      cfg["target_modules"] != nlohmann::json("self_attn"))
    fail("{}: target_modules is {}; only LLaMA's self_attn is read", cfg_path, printable(cfg["target_modules"].dump()));
  const int64_t len = json_int(cfg, "adapter_len", cfg_path);
  const int64_t layers = json_int(cfg, "adapter_layers", cfg_path);
  if (len <= 0 || len > kMaxLen) fail("{}: adapter_len {} is out of range (1 to {})", cfg_path, len, kMaxLen);
  if (layers <= 0 || layers > kMaxLayers)
    fail("{}: adapter_layers {} is out of range (1 to {})", cfg_path, layers, kMaxLayers);

  const std::string weights = dir + "/adapter_model.safetensors";
  if (!file_exists(weights)) {
    if (file_exists(dir + "/adapter_model.bin"))
      fail(
          "{}: adapter_model.bin (a pickle) is not read; PEFT writes adapter_model.safetensors by default "
          "(save_pretrained(safe_serialization=True))",
          dir);
    fail("{}: adapter_model.safetensors is missing", dir);
  }
  const SafetensorsFile f = SafetensorsFile::open(weights);
  const StoredTensors s = stored_tensors(f);
  std::map<int64_t, const StoredTensor*> prompts, gates;
  for (const StoredTensor& t : s.tensors) {
    const std::string_view name = without_prefix(t.name, kPeftPrefix);
    if (const int64_t l = layer_of(name, kPeftLayer, kPeftPrompt); l >= 0)
      prompts[l] = &t;
    else if (const int64_t g = layer_of(name, kPeftLayer, kPeftGate); g >= 0)
      gates[g] = &t;
    else
      fail(
          "{}: unexpected tensor '{}' in a PEFT AdaptionPrompt adapter (it holds "
          "model.layers.*.self_attn.adaption_prompt and adaption_gate)",
          weights, printable(t.name));
  }
  if (prompts.empty()) fail("{}: no model.layers.*.self_attn.adaption_prompt tensors", weights);
  for (const auto& [l, t] : prompts)
    if (!gates.count(l)) fail("{}: layer {} has adaption_prompt but no adaption_gate", weights, l);
  for (const auto& [l, t] : gates)
    if (!prompts.count(l)) fail("{}: layer {} has adaption_gate but no adaption_prompt", weights, l);
  if (static_cast<int64_t>(prompts.size()) != layers)
    fail("{}: adapter_config.json says adapter_layers={} but the tensors adapt {} layers", dir, layers, prompts.size());
  const int64_t model_layers = top_layers(prompts, model, weights, "adaption_prompt");

  Adapter a;
  a.len = len;
  a.n_layers = layers;
  a.model_layers = model_layers;
  const StoredTensor& p0 = *prompts.begin()->second;
  check_float(p0, weights);
  if (p0.shape.size() != 3 || p0.shape[0] != 1 || p0.shape[1] != len || p0.shape[2] <= 0 || p0.shape[2] > kMaxDim)
    fail("{}: {} has shape {}, expected [1, {}, dim] (adapter_len {})", weights, printable(p0.name),
         shape_text(p0.shape), len, len);
  a.dim = p0.shape[2];
  // PEFT's gate is one scalar per layer; the heads it applies to are the model's.
  a.n_heads = model ? model->n_heads : 1;
  if (!model && heads_known) *heads_known = false;
  a.gate_mode = GateMode::Identity;  // PEFT multiplies by adaption_gate itself
  a.allocate();
  for (const auto& [l, t] : prompts) {
    if (t->shape != p0.shape)
      fail("{}: {} has shape {}, the other layers {}", weights, printable(t->name), shape_text(t->shape),
           shape_text(p0.shape));
    const StoredTensor& g = *gates.at(l);
    if (g.numel() != 1)
      fail("{}: {} has shape {}, expected [1] (one gate per layer)", weights, printable(g.name), shape_text(g.shape));
    const int64_t i = l - a.first_layer();
    const std::vector<float> prompt = stored_values(*t, weights), gate = stored_values(g, weights);
    std::copy(prompt.begin(), prompt.end(), a.query().begin() + i * a.len * a.dim);
    std::fill(a.gate().begin() + i * a.n_heads, a.gate().begin() + (i + 1) * a.n_heads, gate[0]);
  }
  return a;
}

void save_peft_adapter(const Adapter& a, const std::string& dir) {
  refuse_visual(a, dir, "PEFT");
  const std::vector<float> g = gammas(a);
  // One gate per layer: per-head gates that differ have no place there, and an average would
  // change what the adapter computes.
  for (int64_t i = 0; i < a.n_layers; ++i) {
    const auto first = g.begin() + i * a.n_heads, last = first + a.n_heads;
    const auto [lo, hi] = std::minmax_element(first, last);
    if (*lo != *hi)
      fail(
          "{}: PEFT holds one gate per layer, but layer {} has different gates per head ({} to {}); refusing to "
          "average them",
          dir, a.first_layer() + i, *lo, *hi);
  }
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec)) fail("{}: exists and is not a folder", dir);
  if (!fs::exists(dir, ec) && !fs::create_directory(dir, ec))
    fail("{}: cannot create the folder: {}", dir, ec ? ec.message() : "unknown error");

  SafetensorsWriter w;
  w.set_metadata("format", "pt");  // what PEFT's own files say
  for (int64_t i = 0; i < a.n_layers; ++i) {
    const std::string layer = fmt::format("base_model.model.model.layers.{}.self_attn.", a.first_layer() + i);
    w.add_f32(layer + "adaption_prompt", {1, a.len, a.dim}, prompt_rows(a, i));
    w.add_f32(layer + "adaption_gate", {1}, g.data() + i * a.n_heads);
  }
  w.write(dir + "/adapter_model.safetensors");
  nlohmann::json cfg = {{"peft_type", "ADAPTION_PROMPT"},
                        {"task_type", "CAUSAL_LM"},
                        {"adapter_len", a.len},
                        {"adapter_layers", a.n_layers},
                        {"target_modules", "self_attn"},
                        {"base_model_name_or_path", nullptr},
                        {"revision", nullptr},
                        {"inference_mode", true}};
  const std::string text = cfg.dump(2) + "\n";
  write_file_atomic(dir + "/adapter_config.json", text.data(), text.size());
}

}  // namespace la
