#include "la/io/shapes.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <vector>

#include "la/core/error.h"
#include "la/io/tensor_names.h"
#include "la/kernels/quant.h"
#include "la/model/adapter.h"

namespace la {

namespace {

struct Named {
  const char* name;
  int64_t dim, hidden, layers, heads, kv_heads, vocab, seq;
};

constexpr Named kShapes[] = {
    {"stories260k", 64, 172, 5, 8, 4, 512, 512},  {"stories15m", 288, 768, 6, 6, 6, 32000, 256},
    {"110m", 768, 2048, 12, 12, 12, 32000, 1024}, {"tinyllama-1.1b", 2048, 5632, 22, 32, 4, 32000, 2048},
    {"7b", 4096, 11008, 32, 32, 32, 32000, 2048},
};

}  // namespace

std::optional<ModelConfig> named_shape(const std::string& name) {
  std::string n = name;
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char ch) { return std::tolower(ch); });
  for (const auto& s : kShapes) {
    if (n != s.name) continue;
    ModelConfig c;
    c.dim = s.dim;
    c.hidden_dim = s.hidden;
    c.n_layers = s.layers;
    c.n_heads = s.heads;
    c.n_kv_heads = s.kv_heads;
    c.vocab_size = s.vocab;
    c.max_seq_len = s.seq;
    c.tied_classifier = false;
    return c;
  }
  return std::nullopt;
}

std::vector<std::string> shape_names() {
  std::vector<std::string> v;
  for (const auto& s : kShapes) v.emplace_back(s.name);
  return v;
}

std::unique_ptr<ModelWeights> random_model(const ModelConfig& c, uint64_t seed, DType type) {
  c.validate("random model");
  auto m = std::make_unique<ModelWeights>();
  m->config = c;
  m->format = "random";
  m->path = fmt::format("random:{}", c.shape_string());
  uint64_t s = seed;
  auto matrix = [&](int64_t rows, int64_t cols) {
    if (cols % dtype_block_size(type) != 0)
      fail("random model: rows of {} values do not fill {} blocks", cols, dtype_name(type));
    const size_t row_bytes = dtype_row_bytes(type, cols);
    m->owned.emplace_back((static_cast<size_t>(rows) * row_bytes + 3) / 4);
    auto* dst = reinterpret_cast<uint8_t*>(m->owned.back().data());
    const uint64_t base = s++;
#pragma omp parallel
    {
      std::vector<float> row(static_cast<size_t>(cols));
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        // One seed per row keeps the values independent of the thread count.
        fill_normal(row.data(), cols, base * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(r));
        for (float& x : row) x *= 0.02f;
        quantize(type, row.data(), dst + static_cast<size_t>(r) * row_bytes, cols);
      }
    }
    return WeightMatrix{type, dst, rows, cols};
  };
  auto ones = [&](int64_t n) {
    m->owned.emplace_back(static_cast<size_t>(n), 1.0f);
    return static_cast<const float*>(m->owned.back().data());
  };
  const int64_t D = c.dim;
  m->tok_embeddings = matrix(c.vocab_size, D);
  m->layers.resize(static_cast<size_t>(c.n_layers));
  for (auto& l : m->layers)
    for (const LayerTensor& t : kLayerTensors) {
      if (t.is_matrix())
        l.*t.matrix = matrix(t.rows(c), t.cols(c));
      else
        l.*t.norm = ones(D);
    }
  m->rms_final = ones(D);
  m->output = c.tied_classifier ? m->tok_embeddings : matrix(c.vocab_size, D);
  return m;
}

void save_llama2c(const ModelWeights& m, const std::string& path) {
  const ModelConfig& c = m.config;
  if (c.rope_style != RopeStyle::Interleaved)
    fail("{}: llama2.c files use interleaved RoPE; convert rotate-half (Hugging Face) weights first", path);
  std::string out;
  auto put_i32 = [&](int64_t v) {
    const auto x = static_cast<int32_t>(v);
    out.append(reinterpret_cast<const char*>(&x), 4);
  };
  auto put_f32 = [&](const float* p, int64_t n) {
    out.append(reinterpret_cast<const char*>(p), static_cast<size_t>(n) * 4);
  };
  std::vector<float> row;
  auto put_matrix = [&](const WeightMatrix& w) {
    row.resize(static_cast<size_t>(w.cols));
    for (int64_t r = 0; r < w.rows; ++r) {
      dequantize_row(w, r, row.data());
      put_f32(row.data(), w.cols);
    }
  };
  put_i32(c.dim);
  put_i32(c.hidden_dim);
  put_i32(c.n_layers);
  put_i32(c.n_heads);
  put_i32(c.n_kv_heads);
  put_i32(c.tied_classifier ? c.vocab_size : -c.vocab_size);
  put_i32(c.max_seq_len);
  // RoPE tables as llama2.c's exporter writes them (cos, then sin), in float.
  auto put_rope_tables = [&] {
    const int64_t half = c.head_dim() / 2;
    std::vector<float> cs(static_cast<size_t>(c.max_seq_len * half)), sn(cs.size());
    for (int64_t p = 0; p < c.max_seq_len; ++p)
      for (int64_t i = 0; i < half; ++i) {
        const double f = std::pow(static_cast<double>(c.rope_theta),
                                  -2.0 * static_cast<double>(i) / static_cast<double>(c.head_dim()));
        cs[static_cast<size_t>(p * half + i)] = static_cast<float>(std::cos(static_cast<double>(p) * f));
        sn[static_cast<size_t>(p * half + i)] = static_cast<float>(std::sin(static_cast<double>(p) * f));
      }
    put_f32(cs.data(), static_cast<int64_t>(cs.size()));
    put_f32(sn.data(), static_cast<int64_t>(sn.size()));
  };
  for (const Llama2cSection& s : llama2c_order(false)) {
    switch (s.kind) {
      case Llama2cSection::TokenEmbeddings: put_matrix(m.tok_embeddings); break;
      case Llama2cSection::Layer:
        for (const auto& l : m.layers) {
          if (s.tensor->is_matrix())
            put_matrix(l.*s.tensor->matrix);
          else
            put_f32(l.*s.tensor->norm, c.dim);
        }
        break;
      case Llama2cSection::FinalNorm: put_f32(m.rms_final, c.dim); break;
      case Llama2cSection::RopeTables: put_rope_tables(); break;
      case Llama2cSection::Output:
        if (!c.tied_classifier) put_matrix(m.output);
        break;
    }
  }
  write_file_atomic(path, out.data(), out.size());
}

}  // namespace la
