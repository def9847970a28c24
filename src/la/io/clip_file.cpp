#include "la/io/clip_file.h"

#include <array>
#include <cstring>
#include <nlohmann/json.hpp>

#include "la/core/error.h"
#include "la/core/mapped_file.h"
#include "la/formats/gguf.h"
#include "la/io/convert.h"
#include "la/io/hf_files.h"
#include "la/kernels/gemm.h"

namespace la {
namespace {

// A dimension of a CLIP tensor, from the config.
enum class CDim : uint8_t { One, Width, Ffn, Embed, Tokens, Patch };
int64_t cdim(CDim d, const ClipConfig& c) {
  switch (d) {
    case CDim::One: return 1;
    case CDim::Width: return c.width;
    case CDim::Ffn: return c.ffn_dim;
    case CDim::Embed: return c.embed_dim;
    case CDim::Tokens: return c.tokens();
    case CDim::Patch: return c.patch_values();
  }
  return 0;
}

// One tensor: where it goes in ClipWeights (a matrix or an f32 vector; per layer or not), its
// [rows, cols] and its names. Vectors are [1, n] (positions: [tokens, width], stored as a vector).
struct ClipTensor {
  const char* hf;    // per layer: after "vision_model.encoder.layers.{i}."
  const char* gguf;  // per layer: after "v.blk.{i}."
  CDim rows, cols;
  WeightMatrix ClipWeights::*matrix = nullptr;
  const float* ClipWeights::*vector = nullptr;
  WeightMatrix ClipLayer::*layer_matrix = nullptr;
  const float* ClipLayer::*layer_vector = nullptr;
  bool per_layer() const { return layer_matrix || layer_vector; }
  bool is_matrix() const { return matrix || layer_matrix; }
};

using CW = ClipWeights;
using CL = ClipLayer;
constexpr std::array<ClipTensor, 7> kClipTensors = {{
    {"vision_model.embeddings.patch_embedding.weight", "v.patch_embd.weight", CDim::Width, CDim::Patch, &CW::patch},
    {"vision_model.embeddings.class_embedding", "v.class_embd", CDim::One, CDim::Width, nullptr, &CW::class_embedding},
    {"vision_model.embeddings.position_embedding.weight", "v.position_embd.weight", CDim::Tokens, CDim::Width, nullptr,
     &CW::positions},
    {"vision_model.pre_layrnorm.weight", "v.pre_ln.weight", CDim::One, CDim::Width, nullptr, &CW::pre_ln_w},
    {"vision_model.pre_layrnorm.bias", "v.pre_ln.bias", CDim::One, CDim::Width, nullptr, &CW::pre_ln_b},
    {"vision_model.post_layernorm.weight", "v.post_ln.weight", CDim::One, CDim::Width, nullptr, &CW::post_ln_w},
    {"vision_model.post_layernorm.bias", "v.post_ln.bias", CDim::One, CDim::Width, nullptr, &CW::post_ln_b},
}};
constexpr ClipTensor kClipProjection = {"visual_projection.weight", "visual_projection.weight", CDim::Embed,
                                        CDim::Width, &CW::proj};
constexpr std::array<ClipTensor, 16> kClipLayerTensors = {{
    {"layer_norm1.weight", "ln1.weight", CDim::One, CDim::Width, nullptr, nullptr, nullptr, &CL::ln1_w},
    {"layer_norm1.bias", "ln1.bias", CDim::One, CDim::Width, nullptr, nullptr, nullptr, &CL::ln1_b},
    {"self_attn.q_proj.weight", "attn_q.weight", CDim::Width, CDim::Width, nullptr, nullptr, &CL::wq},
    {"self_attn.q_proj.bias", "attn_q.bias", CDim::One, CDim::Width, nullptr, nullptr, nullptr, &CL::bq},
    {"self_attn.k_proj.weight", "attn_k.weight", CDim::Width, CDim::Width, nullptr, nullptr, &CL::wk},
    {"self_attn.k_proj.bias", "attn_k.bias", CDim::One, CDim::Width, nullptr, nullptr, nullptr, &CL::bk},
    {"self_attn.v_proj.weight", "attn_v.weight", CDim::Width, CDim::Width, nullptr, nullptr, &CL::wv},
    {"self_attn.v_proj.bias", "attn_v.bias", CDim::One, CDim::Width, nullptr, nullptr, nullptr, &CL::bv},
    {"self_attn.out_proj.weight", "attn_out.weight", CDim::Width, CDim::Width, nullptr, nullptr, &CL::wo},
    {"self_attn.out_proj.bias", "attn_out.bias", CDim::One, CDim::Width, nullptr, nullptr, nullptr, &CL::bo},
    {"layer_norm2.weight", "ln2.weight", CDim::One, CDim::Width, nullptr, nullptr, nullptr, &CL::ln2_w},
    {"layer_norm2.bias", "ln2.bias", CDim::One, CDim::Width, nullptr, nullptr, nullptr, &CL::ln2_b},
    {"mlp.fc1.weight", "ffn_up.weight", CDim::Ffn, CDim::Width, nullptr, nullptr, &CL::fc1},
    {"mlp.fc1.bias", "ffn_up.bias", CDim::One, CDim::Ffn, nullptr, nullptr, nullptr, &CL::b1},
    {"mlp.fc2.weight", "ffn_down.weight", CDim::Width, CDim::Ffn, nullptr, nullptr, &CL::fc2},
    {"mlp.fc2.bias", "ffn_down.bias", CDim::One, CDim::Width, nullptr, nullptr, nullptr, &CL::b2},
}};

std::string hf_name(const ClipTensor& t, int64_t layer) {
  return t.per_layer() ? fmt::format("vision_model.encoder.layers.{}.{}", layer, t.hf) : std::string(t.hf);
}
std::string gguf_name(const ClipTensor& t, int64_t layer) {
  return t.per_layer() ? fmt::format("v.blk.{}.{}", layer, t.gguf) : std::string(t.gguf);
}

// Visits every tensor with its place in `w`: fn(table row, layer or -1, WeightMatrix* or null,
// const float** or null).
template <typename Fn>
void for_each_tensor(ClipWeights& w, Fn&& fn) {
  for (const ClipTensor& t : kClipTensors)
    fn(t, int64_t{-1}, t.matrix ? &(w.*t.matrix) : nullptr, t.vector ? &(w.*t.vector) : nullptr);
  for (int64_t i = 0; i < w.config.n_layers; ++i) {
    ClipLayer& l = w.layers[static_cast<size_t>(i)];
    for (const ClipTensor& t : kClipLayerTensors)
      fn(t, i, t.layer_matrix ? &(l.*t.layer_matrix) : nullptr, t.layer_vector ? &(l.*t.layer_vector) : nullptr);
  }
  fn(kClipProjection, int64_t{-1}, &(w.*kClipProjection.matrix), nullptr);
}

const float* as_f32(ClipWeights& w, const WeightMatrix& m) {
  return m.type == DType::F32 ? static_cast<const float*>(m.data) : w.own_f32(m.type, m.data, m.numel());
}

}  // namespace

ClipConfig clip_config_from_hf(const nlohmann::json& top, const std::string& cfg_path) {
  // A full CLIP (vision_config inside) or a vision-only config. Absent fields take Hugging Face's
  // CLIPVisionConfig defaults (which save_pretrained leaves out).
  const bool nested = top.contains("vision_config");
  if (nested && !top["vision_config"].is_object()) fail("{}: vision_config is not an object", cfg_path);
  if (!nested && !(top.contains("model_type") && top["model_type"] == "clip_vision_model"))
    fail("{}: not a CLIP config (no vision_config, and model_type is not clip_vision_model)", cfg_path);
  const nlohmann::json& v = nested ? top["vision_config"] : top;
  ClipConfig c;
  c.width = json_int(v, "hidden_size", cfg_path, 768);
  c.ffn_dim = json_int(v, "intermediate_size", cfg_path, 3072);
  c.n_layers = json_int(v, "num_hidden_layers", cfg_path, 12);
  c.n_heads = json_int(v, "num_attention_heads", cfg_path, 12);
  c.image_size = json_int(v, "image_size", cfg_path, 224);
  c.patch_size = json_int(v, "patch_size", cfg_path, 32);
  c.eps = static_cast<float>(json_num(v, "layer_norm_eps", 1e-5, cfg_path));
  c.embed_dim = json_int(nested ? top : v, "projection_dim", cfg_path, json_int(v, "projection_dim", cfg_path, 512));
  if (json_int(v, "num_channels", cfg_path, 3) != 3)
    fail("{}: only 3-channel (RGB) CLIP models are supported", cfg_path);
  const std::string act =
      v.contains("hidden_act") && v["hidden_act"].is_string() ? v["hidden_act"].get<std::string>() : "quick_gelu";
  if (act == "quick_gelu")
    c.act = ClipAct::QuickGelu;
  else if (act == "gelu")
    c.act = ClipAct::Gelu;
  else
    fail("{}: hidden_act '{}' is not supported (quick_gelu or gelu)", cfg_path, printable(act));
  c.validate(cfg_path);
  return c;
}

namespace {

std::unique_ptr<ClipWeights> load_hf_clip(const std::string& dir) {
  const std::string cfg_path = dir + "/config.json";
  if (!file_exists(cfg_path)) fail("{}: not a CLIP directory: config.json is missing", dir);
  auto w = std::make_unique<ClipWeights>();
  w->path = dir;
  w->format = "hf-clip";
  w->config = clip_config_from_hf(read_json_object(cfg_path), cfg_path);
  const ClipConfig& c = w->config;
  w->layers.resize(static_cast<size_t>(c.n_layers));
  const HfTensors tensors(dir);
  w->files = tensors.files();
  for_each_tensor(*w, [&](const ClipTensor& t, int64_t layer, WeightMatrix* m, const float** vec) {
    const std::string name = hf_name(t, layer);
    const int64_t rows = cdim(t.rows, c), cols = cdim(t.cols, c);
    if (m)
      *m = tensors.matrix(name, rows, cols);
    else
      *vec = as_f32(*w, tensors.vector(name, rows * cols, /*flat_ok=*/rows > 1));
  });
  return w;
}

std::unique_ptr<ClipWeights> load_gguf_clip(const std::string& path) {
  GgufFile f = GgufFile::open(path);
  auto w = std::make_unique<ClipWeights>();
  w->path = path;
  w->format = "gguf-clip";
  w->files.push_back(f.file());
  if (const GgufValue* v = f.find("clip.has_vision_encoder");
      v && !(v->type == GgufType::BOOL && std::get<bool>(v->scalar)))
    fail("{}: this CLIP GGUF has no vision encoder (clip.has_vision_encoder)", path);
  if (!f.has("clip.vision.embedding_length")) fail("{}: not a CLIP GGUF (no clip.vision.* metadata)", path);
  ClipConfig& c = w->config;
  c.width = f.get_int("clip.vision.embedding_length");
  c.ffn_dim = f.get_int("clip.vision.feed_forward_length");
  c.n_layers = f.get_int("clip.vision.block_count");
  c.n_heads = f.get_int("clip.vision.attention.head_count");
  c.image_size = f.get_int("clip.vision.image_size");
  c.patch_size = f.get_int("clip.vision.patch_size");
  c.embed_dim = f.get_int("clip.vision.projection_dim");
  c.eps = static_cast<float>(f.get_float("clip.vision.attention.layer_norm_epsilon"));
  const GgufValue* gelu = f.find("clip.use_gelu");
  c.act = gelu && gelu->type == GgufType::BOOL && std::get<bool>(gelu->scalar) ? ClipAct::Gelu : ClipAct::QuickGelu;
  for (const char* key : {"clip.vision.image_mean", "clip.vision.image_std"}) {
    const GgufValue* v = f.find(key);
    if (!v) continue;
    if (!v->is_array() || v->numbers.size() != 3) fail("{}: {} must be an array of 3 numbers", path, key);
    auto& dst = std::string(key).ends_with("mean") ? c.norm.mean : c.norm.std;
    for (size_t i = 0; i < 3; ++i) dst[i] = static_cast<float>(v->numbers[i]);
  }
  c.validate(path);
  w->layers.resize(static_cast<size_t>(c.n_layers));
  auto get = [&](const std::string& name) {
    const GgufTensor* t = f.find_tensor(name);
    if (!t) fail("{}: missing tensor '{}'", path, name);
    return t;
  };
  for_each_tensor(*w, [&](const ClipTensor& t, int64_t layer, WeightMatrix* m, const float** vec) {
    std::string name = gguf_name(t, layer);
    int64_t rows = cdim(t.rows, c), cols = cdim(t.cols, c);
    // The MLP's two matrices and biases: "ffn_up" is fc1 in llama.cpp's current naming and fc2 in
    // its older converters'; the one whose rows are the FFN width is fc1.
    if (t.per_layer() && std::string_view(t.gguf).starts_with("ffn_") && c.ffn_dim != c.width) {
      const bool fc1 = t.layer_matrix ? t.rows == CDim::Ffn : t.cols == CDim::Ffn;
      const std::string up = fmt::format("v.blk.{}.ffn_up.weight", layer);
      const bool up_is_fc1 = get(up)->dims.size() == 2 && get(up)->dims[1] == c.ffn_dim;
      const char* stem = fc1 == up_is_fc1 ? "ffn_up" : "ffn_down";
      name = fmt::format("v.blk.{}.{}{}", layer, stem, t.layer_matrix ? ".weight" : ".bias");
    }
    const GgufTensor* g = get(name);
    if (m) {
      if (g->numel() != rows * cols || g->dims[0] != (t.cols == CDim::Patch ? c.patch_size : cols))
        fail("{}: tensor '{}' has dims [{}], the metadata needs {} x {}", path, name, fmt::join(g->dims, ", "), rows,
             cols);
      *m = WeightMatrix{g->type, g->data, rows, cols};
    } else {
      if (g->numel() != rows * cols || dtype_is_quantized(g->type))
        fail("{}: tensor '{}' must hold {} float values", path, name, rows * cols);
      *vec = as_f32(*w, WeightMatrix{g->type, g->data, 1, rows * cols});
    }
  });
  return w;
}

}  // namespace

std::unique_ptr<ClipWeights> load_clip(const std::string& path) {
  std::unique_ptr<ClipWeights> w;
  if (is_directory(path)) {
    w = load_hf_clip(path);
  } else {
    auto f = MappedFile::open(path);
    if (f->size() < 4 || std::memcmp(f->data(), "GGUF", 4) != 0)
      fail("{}: not a CLIP model (a Hugging Face CLIP directory or a CLIP GGUF file)", path);
    w = load_gguf_clip(path);
  }
  // Without our blocked GEMM (no AVX2) an F16/BF16 product widens its weight to f32 block by
  // block for SGEMM on every call: for CLIP, every image. Widening once here costs twice those
  // matrices' memory and makes each encode as fast as from f32 (measured: 2.2x faster on
  // ViT-L/14, docs/PERFORMANCE.md). With it the F16 weight is widened while packed, as fast as an
  // f32 one: ViT-L/14's products at 257 rows, AVX2 build, 153-169 against 158-163 GFLOP/s.
  if (!gemm_available()) w->widen_half_matrices();
  return w;
}

void save_clip_gguf(const ClipWeights& src, DType type, const std::string& path) {
  if (type != DType::F32 && type != DType::F16 && type != DType::Q8_0)
    fail("{}: CLIP GGUF matrices can be F32, F16 or Q8_0, not {}", path, dtype_name(type));
  const ClipConfig& c = src.config;
  GgufWriter g;
  g.set_string("general.architecture", "clip");
  g.set_string("general.name", "CLIP vision tower");
  g.set_bool("clip.has_text_encoder", false);
  g.set_bool("clip.has_vision_encoder", true);
  g.set_bool("clip.has_llava_projector", false);
  g.set_bool("clip.use_gelu", c.act == ClipAct::Gelu);
  g.set_u32("clip.vision.image_size", static_cast<uint32_t>(c.image_size));
  g.set_u32("clip.vision.patch_size", static_cast<uint32_t>(c.patch_size));
  g.set_u32("clip.vision.embedding_length", static_cast<uint32_t>(c.width));
  g.set_u32("clip.vision.feed_forward_length", static_cast<uint32_t>(c.ffn_dim));
  g.set_u32("clip.vision.projection_dim", static_cast<uint32_t>(c.embed_dim));
  g.set_u32("clip.vision.block_count", static_cast<uint32_t>(c.n_layers));
  g.set_u32("clip.vision.attention.head_count", static_cast<uint32_t>(c.n_heads));
  g.set_f32("clip.vision.attention.layer_norm_epsilon", c.eps);
  g.set_f32s("clip.vision.image_mean", {c.norm.mean.begin(), c.norm.mean.end()});
  g.set_f32s("clip.vision.image_std", {c.norm.std.begin(), c.norm.std.end()});
  auto& w = const_cast<ClipWeights&>(src);  // for_each_tensor only reads here
  for_each_tensor(w, [&](const ClipTensor& t, int64_t layer, WeightMatrix* m, const float** vec) {
    const std::string name = gguf_name(t, layer);
    const int64_t rows = cdim(t.rows, c), cols = cdim(t.cols, c);
    std::vector<int64_t> dims = {cols, rows};
    if (t.cols == CDim::Patch) dims = {c.patch_size, c.patch_size, 3, rows};
    if (rows == 1) dims = {cols};
    if (m) {
      const WeightMatrix x = *m;
      // The patch kernel is 4-D in GGUF, its rows p values long: quantised blocks cannot tile it.
      const DType to = t.cols == CDim::Patch && dtype_is_quantized(type)
                           ? DType::F16
                           : converted_type(x, type, DType::F16, name, path);
      g.add_tensor(name, dims, to, static_cast<size_t>(x.rows) * dtype_row_bytes(to, x.cols),
                   [x, to](uint8_t* dst) { convert_matrix_to(x, to, dst); });
    } else {
      const float* p = *vec;
      const auto n = static_cast<size_t>(rows * cols);
      g.add_tensor(name, dims, DType::F32, n * 4, [p, n](uint8_t* dst) { std::memcpy(dst, p, n * 4); });
    }
  });
  g.write(path);
}

}  // namespace la
