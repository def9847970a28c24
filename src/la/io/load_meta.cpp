// Meta's reference checkpoints (facebookresearch/llama): a directory with params.json and one
// consolidated.NN.pth per model-parallel rank (tokenizer.model inside it or in its parent).
// q/k rows are in the Meta layout, so RoPE is interleaved, as for llama2.c. One shard is used
// zero-copy from its mapping; several are joined along the axis each tensor was split on
// (io/tensor_names.h's kMetaSplits), in their stored type, and their files are then let go.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "la/core/error.h"
#include "la/formats/pth.h"
#include "la/io/hf_files.h"
#include "la/io/loader.h"
#include "la/io/tensor_names.h"

namespace la {

namespace {

size_t element_size(DType t) {
  return dtype_row_bytes(t, 1);
}

// consolidated.NN.pth, by rank; the ranks must be 0, 1, ..., n-1.
std::vector<std::string> shard_paths(const std::string& dir) {
  std::map<int, std::string> by_rank;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    constexpr std::string_view head = "consolidated.", tail = ".pth";
    if (name.size() <= head.size() + tail.size() || !name.starts_with(head) || !name.ends_with(tail)) continue;
    const std::string digits = name.substr(head.size(), name.size() - head.size() - tail.size());
    if (digits.size() > 4 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    by_rank[std::stoi(digits)] = e.path().string();
  }
  if (ec) fail("{}: cannot list the directory: {}", dir, ec.message());
  std::vector<std::string> paths;
  for (const auto& [rank, p] : by_rank) {
    if (rank != static_cast<int>(paths.size()))
      fail("{}: model-parallel shard {} is missing (consolidated.{:02d}.pth)", dir, paths.size(), paths.size());
    paths.push_back(p);
  }
  if (paths.empty()) fail("{}: params.json without consolidated.00.pth", dir);
  return paths;
}

// facebookresearch/llama's FeedForward width: 2/3 of 4*dim, times ffn_dim_multiplier, rounded
// up to a multiple of multiple_of (integer truncation where Python's int() truncates).
int64_t meta_ffn_hidden(int64_t dim, int64_t multiple_of, double multiplier) {
  int64_t hidden = 2 * (4 * dim) / 3;
  if (multiplier > 0) hidden = static_cast<int64_t>(multiplier * static_cast<double>(hidden));
  return multiple_of * ((hidden + multiple_of - 1) / multiple_of);
}

// Copies the 2-D (or 1-D: one row) tensor `t`, in any strides, into the row-major matrix `dst`
// of `dst_cols` columns at (row0, col0).
void gather(const PthTensor& t, uint8_t* dst, int64_t dst_cols, int64_t row0, int64_t col0) {
  const size_t es = element_size(t.dtype);
  const int64_t rows = t.shape.size() == 2 ? t.shape[0] : 1, cols = t.shape.back();
  const int64_t rs = t.shape.size() == 2 ? t.strides[0] : 0, cs = t.strides.back();
  const auto* src = static_cast<const uint8_t*>(t.data);
  for (int64_t i = 0; i < rows; ++i) {
    uint8_t* d = dst + (static_cast<size_t>((row0 + i) * dst_cols + col0)) * es;
    const uint8_t* s = src + static_cast<size_t>(i * rs) * es;
    if (cs == 1) {
      std::memcpy(d, s, static_cast<size_t>(cols) * es);
    } else {
      for (int64_t j = 0; j < cols; ++j)
        std::memcpy(d + static_cast<size_t>(j) * es, s + static_cast<size_t>(j * cs) * es, es);
    }
  }
}

class MetaShards {
 public:
  MetaShards(const std::string& dir, ModelWeights& m) : dir_(dir), m_(m) {
    for (const std::string& p : shard_paths(dir)) shards_.push_back(PthFile::open(p));
  }
  size_t count() const { return shards_.size(); }
  bool has(const std::string& name) const { return shards_[0]->find(name) != nullptr; }
  // A one-shard checkpoint's weights stay in its mapping.
  void keep_mapping() { m_.files.push_back(shards_[0]->file()); }

  // Shard k's tensor `name`: a float tensor of `rank` dimensions, of the type of shard 0's.
  const PthTensor& get(size_t k, const std::string& name, size_t rank) const {
    const PthTensor* t = shards_[k]->find(name);
    if (!t) fail("{}: missing tensor '{}'", shards_[k]->path(), name);
    if (t->shape.size() != rank)
      fail("{}: tensor '{}' has shape [{}], expected {} dimensions", shards_[k]->path(), name,
           fmt::join(t->shape, ", "), rank);
    const PthTensor* first = shards_[0]->find(name);
    if (first && t->dtype != first->dtype)
      fail("{}: tensor '{}' is {} here and {} in {}", shards_[k]->path(), name, dtype_name(t->dtype),
           dtype_name(first->dtype), shards_[0]->path());
    return *t;
  }

  // The [rows, cols] matrix `name`, split over the shards as `split` says.
  WeightMatrix matrix(const std::string& name, MetaSplit split, int64_t rows, int64_t cols) {
    const size_t n = shards_.size();
    std::vector<const PthTensor*> parts;
    int64_t sum = 0;
    for (size_t k = 0; k < n; ++k) {
      const PthTensor& t = get(k, name, 2);
      // A shard holds a block of the split axis (its total is checked below) and all of the other.
      const bool split_rows = n > 1 && split == MetaSplit::Rows, split_cols = n > 1 && split == MetaSplit::Cols;
      if ((!split_rows && t.shape[0] != rows) || (!split_cols && t.shape[1] != cols))
        fail("{}: tensor '{}' has shape [{}], params.json needs [{}, {}]{}", shards_[k]->path(), name,
             fmt::join(t.shape, ", "), rows, cols, n > 1 ? fmt::format(" split over {} shards", n) : "");
      sum += split_rows ? t.shape[0] : t.shape[1];
      parts.push_back(&t);
    }
    if (n > 1 && split != MetaSplit::Whole && sum != (split == MetaSplit::Rows ? rows : cols))
      fail("{}: tensor '{}' is split into {} {} over {} shards, params.json needs {}", dir_, name, sum,
           split == MetaSplit::Rows ? "rows" : "columns", n, split == MetaSplit::Rows ? rows : cols);
    const DType type = parts[0]->dtype;
    if (n == 1 && parts[0]->contiguous()) return WeightMatrix{type, parts[0]->data, rows, cols};
    if (n > 1 && split == MetaSplit::Whole) fail("internal error: matrix '{}' is not split", name);
    // 64-byte aligned, as torch aligns storages in the file: the kernels see the same layout
    // whether a matrix was mapped or joined.
    std::vector<uint8_t>& bytes = m_.assembled.emplace_back(static_cast<size_t>(rows * cols) * element_size(type) + 63);
    uint8_t* dst = bytes.data() + (64 - reinterpret_cast<uintptr_t>(bytes.data()) % 64) % 64;
    int64_t at = 0;
    for (const PthTensor* t : parts) {
      const bool by_rows = n == 1 || split == MetaSplit::Rows;
      gather(*t, dst, cols, by_rows ? at : 0, by_rows ? 0 : at);
      at += by_rows ? t->shape[0] : t->shape[1];
    }
    return WeightMatrix{type, dst, rows, cols};
  }

  // The norm vector `name` of n values as f32: whole on every shard, and the same on each.
  const float* vector(const std::string& name, int64_t n_values) {
    const PthTensor& t = get(0, name, 1);
    if (t.shape[0] != n_values)
      fail("{}: tensor '{}' has shape [{}], params.json needs [{}]", shards_[0]->path(), name, t.shape[0], n_values);
    std::vector<uint8_t> first(t.nbytes()), other(t.nbytes());
    gather(t, first.data(), n_values, 0, 0);
    for (size_t k = 1; k < shards_.size(); ++k) {
      const PthTensor& u = get(k, name, 1);
      if (u.shape[0] != n_values)
        fail("{}: tensor '{}' has shape [{}], expected [{}]", shards_[k]->path(), name, u.shape[0], n_values);
      gather(u, other.data(), n_values, 0, 0);
      if (other != first)
        fail("{}: tensor '{}' differs from the one in {}; model-parallel shards hold the same norms",
             shards_[k]->path(), name, shards_[0]->path());
    }
    if (shards_.size() == 1 && t.dtype == DType::F32 && t.contiguous()) return static_cast<const float*>(t.data);
    return m_.own_f32(t.dtype, first.data(), n_values);  // norms are tiny
  }

 private:
  std::string dir_;
  ModelWeights& m_;
  std::vector<std::unique_ptr<PthFile>> shards_;
};

}  // namespace

bool is_meta_directory(const std::string& dir) {
  return is_directory(dir) && file_exists(dir + "/params.json") && !file_exists(dir + "/config.json");
}

std::unique_ptr<ModelWeights> load_meta_directory(const std::string& dir) {
  auto m = std::make_unique<ModelWeights>();
  m->path = dir;
  m->format = "meta-pth";
  const std::string params_path = dir + "/params.json";
  const nlohmann::json p = read_json_object(params_path);
  ModelConfig& c = m->config;
  c.dim = json_int(p, "dim", params_path);
  c.n_layers = json_int(p, "n_layers", params_path);
  c.n_heads = json_int(p, "n_heads", params_path);
  c.n_kv_heads = json_int(p, "n_kv_heads", params_path, c.n_heads > 0 ? c.n_heads : 1);
  // Meta's LLaMA 1 and 2 say -1 (the tokenizer decides); the embedding's rows then tell.
  const int64_t vocab =
      p.contains("vocab_size") && !p["vocab_size"].is_null() ? json_int(p, "vocab_size", params_path) : -1;
  // Not part of params.json (Meta's code takes it as an argument): LLaMA 1's 2048 unless given.
  c.max_seq_len = json_int(p, "max_seq_len", params_path, 2048);
  c.norm_eps = static_cast<float>(json_num(p, "norm_eps", 1e-5, params_path));
  c.rope_theta = static_cast<float>(json_num(p, "rope_theta", 10000.0, params_path));
  c.rope_style = RopeStyle::Interleaved;
  if (p.contains("use_scaled_rope") && p["use_scaled_rope"].is_boolean() && p["use_scaled_rope"].get<bool>())
    fail("{}: use_scaled_rope (Llama 3.1's RoPE scaling) is not supported", params_path);
  if (c.dim <= 0 || c.n_heads <= 0) fail("{}: dim and n_heads must be positive", params_path);

  MetaShards shards(dir, *m);
  const TensorNames& names = kMetaTensorNames;
  // The model's sizes the file decides: the vocabulary (embedding rows) and the FFN width (w1's rows).
  c.vocab_size = shards.get(0, names.token_embeddings, 2).shape[0];
  if (vocab > 0 && vocab != c.vocab_size)
    fail("{}: vocab_size is {} but {} has {} rows", params_path, vocab, names.token_embeddings, c.vocab_size);
  const LayerTensor& w1 = kLayerTensors[layer_tensor_index("w1")];
  const std::string w1_name = names.layer_tensor(0, w1);
  c.hidden_dim = 0;
  for (size_t k = 0; k < shards.count(); ++k) c.hidden_dim += shards.get(k, w1_name, 2).shape[0];
  if (p.contains("multiple_of") && !p["multiple_of"].is_null()) {
    const int64_t multiple_of = json_int(p, "multiple_of", params_path);
    const double multiplier = json_num(p, "ffn_dim_multiplier", 0.0, params_path);
    if (multiple_of <= 0) fail("{}: multiple_of must be positive", params_path);
    const int64_t expected = meta_ffn_hidden(c.dim, multiple_of, multiplier);
    if (expected != c.hidden_dim)
      fail("{}: {} has {} rows, but dim {}, multiple_of {} and ffn_dim_multiplier {} give {}", params_path, w1_name,
           c.hidden_dim, c.dim, multiple_of, multiplier, expected);
  }
  c.tied_classifier = !shards.has(names.output);
  c.validate(params_path);
  if (shards.has(names.layer_tensor(c.n_layers, kLayerTensors[0])))
    fail("{}: the checkpoint has more than the {} layers params.json says", params_path, c.n_layers);

  if (shards.count() == 1) shards.keep_mapping();
  const int64_t D = c.dim, V = c.vocab_size;
  m->tok_embeddings = shards.matrix(names.token_embeddings, kMetaSplits.token_embeddings, V, D);
  m->layers.resize(static_cast<size_t>(c.n_layers));
  for (int64_t i = 0; i < c.n_layers; ++i) {
    LayerWeights& l = m->layers[static_cast<size_t>(i)];
    for (size_t k = 0; k < kLayerTensors.size(); ++k) {
      const LayerTensor& t = kLayerTensors[k];
      const std::string name = names.layer_tensor(i, t);
      if (t.is_matrix())
        l.*t.matrix = shards.matrix(name, kMetaSplits.layer[k], t.rows(c), t.cols(c));
      else
        l.*t.norm = shards.vector(name, D);
    }
  }
  m->rms_final = shards.vector(names.final_norm, D);
  m->output = c.tied_classifier ? m->tok_embeddings : shards.matrix(names.output, kMetaSplits.output, V, D);
  return m;
}

}  // namespace la
