// Hugging Face LLaMA directories: config.json + model.safetensors, or shards listed in
// model.safetensors.index.json. q_proj/k_proj stay in their stored (rotate-half) row order and
// are used zero-copy with RopeStyle::Half, which gives the same attention as the Meta layout.
#include <map>
#include <nlohmann/json.hpp>

#include "la/core/error.h"
#include "la/io/hf_files.h"
#include "la/io/loader.h"
#include "la/io/tensor_names.h"

namespace la {

std::unique_ptr<ModelWeights> load_hf_directory(const std::string& dir) {
  auto m = std::make_unique<ModelWeights>();
  m->path = dir;
  m->format = "hf-safetensors";
  const std::string cfg_path = dir + "/config.json";
  if (!file_exists(cfg_path))
    fail("{}: not a model directory: neither config.json (Hugging Face) nor params.json (Meta) is in it", dir);
  const nlohmann::json cfg = read_json_object(cfg_path);
  if (cfg.contains("model_type") && cfg["model_type"].is_string()) {
    const std::string t = cfg["model_type"].get<std::string>();
    if (t != "llama" && t != "mistral") fail("{}: model_type '{}' is not a LLaMA-family model", cfg_path, t);
  }
  ModelConfig& c = m->config;
  c.dim = json_int(cfg, "hidden_size", cfg_path);
  c.hidden_dim = json_int(cfg, "intermediate_size", cfg_path);
  c.n_layers = json_int(cfg, "num_hidden_layers", cfg_path);
  c.n_heads = json_int(cfg, "num_attention_heads", cfg_path);
  c.n_kv_heads = json_int(cfg, "num_key_value_heads", cfg_path, c.n_heads > 0 ? c.n_heads : 1);
  c.vocab_size = json_int(cfg, "vocab_size", cfg_path);
  c.max_seq_len = json_int(cfg, "max_position_embeddings", cfg_path, 2048);
  c.norm_eps = static_cast<float>(json_num(cfg, "rms_norm_eps", 1e-6, cfg_path));
  c.rope_theta = static_cast<float>(json_num(cfg, "rope_theta", 10000.0, cfg_path));
  // transformers 5 writes {"rope_parameters": {"rope_type": "default", "rope_theta": ...}} instead.
  if (cfg.contains("rope_parameters") && !cfg["rope_parameters"].is_null()) {
    const nlohmann::json& rope = cfg["rope_parameters"];
    if (!rope.is_object()) fail("{}: rope_parameters is not an object", cfg_path);
    if (rope.contains("rope_type") && rope["rope_type"] != nlohmann::json("default"))
      fail("{}: rope_parameters.rope_type {} is not supported (plain RoPE only)", cfg_path,
           printable(rope["rope_type"].dump()));
    c.rope_theta = static_cast<float>(json_num(rope, "rope_theta", c.rope_theta, cfg_path));
  }
  c.tied_classifier = cfg.contains("tie_word_embeddings") && cfg["tie_word_embeddings"].is_boolean() &&
                      cfg["tie_word_embeddings"].get<bool>();
  c.rope_style = RopeStyle::Half;
  if (cfg.contains("rope_scaling") && !cfg["rope_scaling"].is_null())
    fail("{}: rope_scaling is not supported", cfg_path);
  c.validate(cfg_path);

  const HfTensors tensors(dir);
  m->files = tensors.files();
  auto matrix = [&](const std::string& name, int64_t rows, int64_t cols) { return tensors.matrix(name, rows, cols); };
  auto vector = [&](const std::string& name, int64_t n) {
    const WeightMatrix w = tensors.vector(name, n);
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
  if (tensors.has(names.output)) {
    m->output = matrix(names.output, V, D);
    c.tied_classifier = false;
  } else {
    m->output = m->tok_embeddings;
    c.tied_classifier = true;
  }
  return m;
}

}  // namespace la
