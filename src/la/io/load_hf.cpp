// Hugging Face LLaMA directories: config.json + model.safetensors, or shards listed in
// model.safetensors.index.json. q_proj/k_proj stay in their stored (rotate-half) row order and
// are used zero-copy with RopeStyle::Half, which gives the same attention as the Meta layout.
#include <map>
#include <nlohmann/json.hpp>

#include "la/core/error.h"
#include "la/formats/safetensors.h"
#include "la/io/loader.h"
#include "la/io/tensor_names.h"

namespace la {

namespace {

int64_t get_int(const nlohmann::json& j, const char* key, const std::string& path, int64_t fallback = -1) {
  if (!j.contains(key) || j[key].is_null()) {
    if (fallback >= 0) return fallback;
    fail("{}: missing integer field '{}'", path, key);
  }
  if (!j[key].is_number_integer()) fail("{}: field '{}' is not an integer", path, key);
  return j[key].get<int64_t>();
}

double get_num(const nlohmann::json& j, const char* key, double fallback, const std::string& path) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_number()) fail("{}: field '{}' is not a number", path, key);
  return j[key].get<double>();
}

}  // namespace

std::unique_ptr<ModelWeights> load_hf_directory(const std::string& dir) {
  auto m = std::make_unique<ModelWeights>();
  m->path = dir;
  m->format = "hf-safetensors";
  const std::string cfg_path = dir + "/config.json";
  if (!file_exists(cfg_path)) fail("{}: not a model directory: config.json is missing", dir);
  const std::string cfg_text = read_file(cfg_path);
  nlohmann::json cfg = nlohmann::json::parse(cfg_text, nullptr, false);
  if (cfg.is_discarded() || !cfg.is_object()) fail("{}: invalid JSON", cfg_path);
  if (cfg.contains("model_type") && cfg["model_type"].is_string()) {
    const std::string t = cfg["model_type"].get<std::string>();
    if (t != "llama" && t != "mistral") fail("{}: model_type '{}' is not a LLaMA-family model", cfg_path, t);
  }
  ModelConfig& c = m->config;
  c.dim = get_int(cfg, "hidden_size", cfg_path);
  c.hidden_dim = get_int(cfg, "intermediate_size", cfg_path);
  c.n_layers = get_int(cfg, "num_hidden_layers", cfg_path);
  c.n_heads = get_int(cfg, "num_attention_heads", cfg_path);
  c.n_kv_heads = get_int(cfg, "num_key_value_heads", cfg_path, c.n_heads > 0 ? c.n_heads : 1);
  c.vocab_size = get_int(cfg, "vocab_size", cfg_path);
  c.max_seq_len = get_int(cfg, "max_position_embeddings", cfg_path, 2048);
  c.norm_eps = static_cast<float>(get_num(cfg, "rms_norm_eps", 1e-6, cfg_path));
  c.rope_theta = static_cast<float>(get_num(cfg, "rope_theta", 10000.0, cfg_path));
  c.tied_classifier = cfg.contains("tie_word_embeddings") && cfg["tie_word_embeddings"].is_boolean() &&
                      cfg["tie_word_embeddings"].get<bool>();
  c.rope_style = RopeStyle::Half;
  if (cfg.contains("rope_scaling") && !cfg["rope_scaling"].is_null())
    fail("{}: rope_scaling is not supported", cfg_path);
  c.validate(cfg_path);

  // Tensor name -> shard file.
  std::vector<SafetensorsFile> shards;
  std::map<std::string, size_t> where;
  const std::string single = dir + "/model.safetensors";
  const std::string index_path = dir + "/model.safetensors.index.json";
  auto add_shard = [&](const std::string& p) {
    shards.push_back(SafetensorsFile::open(p));
    m->files.push_back(shards.back().file());
    for (const auto& t : shards.back().tensors()) where[t.name] = shards.size() - 1;
  };
  if (file_exists(single)) {
    add_shard(single);
  } else if (file_exists(index_path)) {
    nlohmann::json idx = nlohmann::json::parse(read_file(index_path), nullptr, false);
    if (idx.is_discarded() || !idx.is_object() || !idx.contains("weight_map") || !idx["weight_map"].is_object())
      fail("{}: invalid index (needs a weight_map object)", index_path);
    std::map<std::string, bool> seen;
    for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) {
      if (!it.value().is_string()) fail("{}: weight_map entry '{}' is not a file name", index_path, it.key());
      const std::string shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos || shard.find("..") != std::string::npos)
        fail("{}: weight_map names a file outside the directory: '{}'", index_path, shard);
      if (!seen[shard]) {
        seen[shard] = true;
        add_shard(dir + "/" + shard);
      }
    }
  } else {
    fail("{}: neither model.safetensors nor model.safetensors.index.json is present", dir);
  }

  auto tensor = [&](const std::string& name) -> std::pair<const SafetensorsFile*, const SafeTensor*> {
    auto it = where.find(name);
    if (it == where.end()) fail("{}: missing tensor '{}'", dir, name);
    const SafetensorsFile& f = shards[it->second];
    return {&f, f.find(name)};
  };
  auto matrix = [&](const std::string& name, int64_t rows, int64_t cols) {
    auto [f, t] = tensor(name);
    WeightMatrix w = f->matrix(*t);
    if (t->shape.size() != 2 || w.rows != rows || w.cols != cols)
      fail("{}: tensor '{}' has shape [{}], config.json needs [{}, {}]", f->path(), name, fmt::join(t->shape, ", "),
           rows, cols);
    return w;
  };
  auto vector = [&](const std::string& name, int64_t n) {
    auto [f, t] = tensor(name);
    WeightMatrix w = f->matrix(*t);
    if (t->shape.size() != 1 || w.cols != n)
      fail("{}: tensor '{}' has shape [{}], config.json needs [{}]", f->path(), name, fmt::join(t->shape, ", "), n);
    // Norm weights are tiny: keep f32 copies unless already f32.
    return w.type == DType::F32 ? static_cast<const float*>(w.data) : m->own_f32(w.type, w.data, n);
  };

  const TensorNames& names = kHfTensorNames;
  const int64_t D = c.dim, V = c.vocab_size;
  m->tok_embeddings = matrix(names.token_embeddings, V, D);
  m->layers.resize(static_cast<size_t>(c.n_layers));
  for (int64_t i = 0; i < c.n_layers; ++i) {
    LayerWeights& l = m->layers[static_cast<size_t>(i)];
    for (const LayerTensor& t : kLayerTensors) {
      const std::string name = names.layer_tensor(i, t);
      if (t.is_matrix())
        l.*t.matrix = matrix(name, t.rows(c), t.cols(c));
      else
        l.*t.norm = vector(name, D);
    }
  }
  m->rms_final = vector(names.final_norm, D);
  if (where.count(names.output)) {
    m->output = matrix(names.output, V, D);
    c.tied_classifier = false;
  } else {
    m->output = m->tok_embeddings;
    c.tied_classifier = true;
  }
  return m;
}

}  // namespace la
