// LLaMA models in GGUF (llama.cpp's container): metadata llama.*, tensors named as in
// kGgufTensorNames (io/tensor_names.h: token_embd, blk.{i}.attn_q, ...). GGUF stores q/k in the
// Meta (interleaved-RoPE) layout; matrices are used in place in their stored type (F32, F16,
// BF16, Q8_0, Q4_0, Q4_K, Q6_K).
#include "la/io/gguf_model.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>

#include "la/core/error.h"
#include "la/formats/gguf.h"
#include "la/io/convert.h"
#include "la/io/loader.h"
#include "la/io/tensor_names.h"
#include "la/tokenizer/gguf_vocab.h"

namespace la {

std::unique_ptr<ModelWeights> load_gguf(const std::string& path) {
  GgufFile f = GgufFile::open(path);
  auto m = std::make_unique<ModelWeights>();
  m->path = path;
  m->format = "gguf";
  m->files.push_back(f.file());
  if (!f.has("general.architecture")) fail("{}: general.architecture is missing", path);
  const std::string arch = f.get_string("general.architecture");
  if (arch != "llama") fail("{}: architecture '{}' is not supported (only llama)", path, arch);
  if (f.tensors().empty()) fail("{}: a vocabulary-only GGUF file: it has no model weights", path);
  ModelConfig& c = m->config;
  c.dim = f.get_int("llama.embedding_length");
  c.hidden_dim = f.get_int("llama.feed_forward_length");
  c.n_layers = f.get_int("llama.block_count");
  c.n_heads = f.get_int("llama.attention.head_count");
  c.n_kv_heads = f.has("llama.attention.head_count_kv") ? f.get_int("llama.attention.head_count_kv") : c.n_heads;
  c.max_seq_len = f.get_int("llama.context_length");
  c.norm_eps = f.has("llama.attention.layer_norm_rms_epsilon")
                   ? static_cast<float>(f.get_float("llama.attention.layer_norm_rms_epsilon"))
                   : 1e-5f;
  c.rope_theta = f.has("llama.rope.freq_base") ? static_cast<float>(f.get_float("llama.rope.freq_base")) : 10000.0f;
  c.rope_style = RopeStyle::Interleaved;
  const TensorNames& names = kGgufTensorNames;
  const GgufTensor* emb = f.find_tensor(names.token_embeddings);
  if (!emb) fail("{}: missing tensor '{}'", path, names.token_embeddings);
  if (emb->dims.size() != 2) fail("{}: {} must be 2-D", path, names.token_embeddings);
  c.vocab_size = f.has("llama.vocab_size") ? f.get_int("llama.vocab_size") : emb->dims[1];
  if (f.has("llama.rope.dimension_count") &&
      f.get_int("llama.rope.dimension_count") != c.dim / std::max<int64_t>(1, c.n_heads))
    fail("{}: partial rotary embeddings (rope.dimension_count {}) are not supported", path,
         f.get_int("llama.rope.dimension_count"));
  c.validate(path);

  auto matrix = [&](const std::string& name, int64_t rows, int64_t cols) {
    const GgufTensor* t = f.find_tensor(name);
    if (!t) fail("{}: missing tensor '{}'", path, name);
    // ggml order: dims[0] is the row length.
    if (t->dims.size() != 2 || t->dims[0] != cols || t->dims[1] != rows)
      fail("{}: tensor '{}' has dims [{}], the metadata needs [{}, {}]", path, name, fmt::join(t->dims, ", "), cols,
           rows);
    return WeightMatrix{t->type, t->data, rows, cols};
  };
  auto vector = [&](const std::string& name, int64_t n) -> const float* {
    const GgufTensor* t = f.find_tensor(name);
    if (!t) fail("{}: missing tensor '{}'", path, name);
    if (t->numel() != n || dtype_is_quantized(t->type))
      fail("{}: tensor '{}' must hold {} float values", path, name, n);
    if (t->type == DType::F32) return reinterpret_cast<const float*>(t->data);
    return m->own_f32(t->type, t->data, n);
  };
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
  c.tied_classifier = f.find_tensor(names.output) == nullptr;
  m->output = c.tied_classifier ? m->tok_embeddings : matrix(names.output, V, D);
  return m;
}

namespace {

// llama.cpp's general.file_type (enum llama_ftype) for a file whose matrices are mostly `t`;
// without the key llama.cpp labels the file's type "(guessed)".
uint32_t llama_file_type(DType t) {
  switch (t) {
    case DType::F32: return 0;    // LLAMA_FTYPE_ALL_F32
    case DType::F16: return 1;    // LLAMA_FTYPE_MOSTLY_F16
    case DType::Q4_0: return 2;   // LLAMA_FTYPE_MOSTLY_Q4_0
    case DType::Q8_0: return 7;   // LLAMA_FTYPE_MOSTLY_Q8_0
    case DType::Q4_K: return 15;  // LLAMA_FTYPE_MOSTLY_Q4_K_M, as llama.cpp guesses for mostly Q4_K
    case DType::Q6_K: return 18;  // LLAMA_FTYPE_MOSTLY_Q6_K
    case DType::BF16: return 32;  // LLAMA_FTYPE_MOSTLY_BF16
  }
  fail("internal error: no llama.cpp file type for {}", dtype_name(t));
}

// save_gguf and convert_to_gguf: matrices in their stored types, or each converted to `type`
// (or `fallback`) as the file is written.
void write_gguf(const ModelWeights& m, const BpeVocab* vocab, const std::string& path, const std::string& name,
                std::optional<DType> type, std::optional<DType> fallback) {
  const ModelConfig& c = m.config;
  const std::string source = m.path.empty() ? std::string("model") : m.path;
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_string("general.name", name);
  w.set_u32("general.alignment", 32);
  w.set_u32("general.file_type", 0);  // here in the key order; its value once the matrices' types are known
  w.set_u32("llama.context_length", static_cast<uint32_t>(c.max_seq_len));
  w.set_u32("llama.embedding_length", static_cast<uint32_t>(c.dim));
  w.set_u32("llama.block_count", static_cast<uint32_t>(c.n_layers));
  w.set_u32("llama.feed_forward_length", static_cast<uint32_t>(c.hidden_dim));
  w.set_u32("llama.attention.head_count", static_cast<uint32_t>(c.n_heads));
  w.set_u32("llama.attention.head_count_kv", static_cast<uint32_t>(c.n_kv_heads));
  w.set_u32("llama.rope.dimension_count", static_cast<uint32_t>(c.head_dim()));
  w.set_f32("llama.attention.layer_norm_rms_epsilon", c.norm_eps);
  w.set_f32("llama.rope.freq_base", c.rope_theta);
  w.set_u32("llama.vocab_size", static_cast<uint32_t>(c.vocab_size));
  if (vocab) write_gguf_vocab(w, *vocab);
  std::map<DType, int64_t> matrices_of_type;
  // `what` names the matrix in errors as convert_weights does. Rows move from the rotate-half
  // to the Meta order when `rope_rows` (q and k of a Hugging Face model).
  auto put = [&](const std::string& tensor, const WeightMatrix& x, const std::string& what, bool rope_rows = false) {
    const DType t = type ? converted_type(x, *type, fallback, what, source) : x.type;
    ++matrices_of_type[t];
    std::function<int64_t(int64_t)> source_row;
    if (rope_rows && c.rope_style == RopeStyle::Half)
      source_row = [hd = c.head_dim()](int64_t r) { return hf_row_of_meta_row(r, hd); };
    w.add_tensor(tensor, {x.cols, x.rows}, t, static_cast<size_t>(x.rows) * dtype_row_bytes(t, x.cols),
                 [x, t, source_row](uint8_t* dst) { convert_matrix_to(x, t, dst, source_row); });
  };
  auto put_vec = [&](const std::string& tensor, const float* p) {
    w.add_tensor(tensor, {c.dim}, DType::F32, static_cast<size_t>(c.dim) * 4,
                 [p, n = static_cast<size_t>(c.dim)](uint8_t* dst) { std::memcpy(dst, p, n * 4); });
  };
  const TensorNames& names = kGgufTensorNames;
  put(names.token_embeddings, m.tok_embeddings, "tok_embeddings");
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const LayerWeights& l = m.layers[static_cast<size_t>(i)];
    for (const LayerTensor& t : kLayerTensors) {
      if (t.is_matrix())
        put(names.layer_tensor(i, t), l.*t.matrix, fmt::format("layers.{}.{}", i, t.name), t.roped);
      else
        put_vec(names.layer_tensor(i, t), l.*t.norm);
    }
  }
  put_vec(names.final_norm, m.rms_final);
  if (!c.tied_classifier) put(names.output, m.output, "output");
  // The type most matrices are in (the first of equals in DType order), as llama.cpp guesses a
  // file type when the key is missing -- counting matrices only, norms are f32 in every file.
  const auto most = std::max_element(matrices_of_type.begin(), matrices_of_type.end(),
                                     [](const auto& a, const auto& b) { return a.second < b.second; });
  w.set_u32("general.file_type", llama_file_type(most->first));
  w.write(path);  // one tensor in memory at a time
}

}  // namespace

void save_gguf(const ModelWeights& m, const BpeVocab* vocab, const std::string& path, const std::string& name) {
  write_gguf(m, vocab, path, name, std::nullopt, std::nullopt);
}

void convert_to_gguf(const ModelWeights& m, DType type, std::optional<DType> fallback, const BpeVocab* vocab,
                     const std::string& path, const std::string& name) {
  write_gguf(m, vocab, path, name, type, fallback);
}

}  // namespace la
