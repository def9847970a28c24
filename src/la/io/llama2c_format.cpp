// llama2.c checkpoints (karpathy/llama2.c run.c format), all f32.
//   legacy:  int dim, hidden, layers, heads, kv_heads, vocab (negative: separate classifier),
//            seq_len; then the tensors in llama2c_order(false) (io/tensor_names.h).
//   version 1 ("ak42"): uint32 magic, int version=1, the 7 ints, uint8 shared_classifier,
//            zero padding to 256 bytes; then the tensors in llama2c_order(true).
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "la/core/error.h"
#include "la/io/loader.h"
#include "la/io/tensor_names.h"

namespace la {

namespace {

constexpr uint32_t kMagicV1 = 0x616b3432;  // "ak42"

struct Cursor {
  const std::string& path;
  const uint8_t* base;
  size_t size;
  size_t off;
  const float* take(int64_t n) {
    const size_t bytes = static_cast<size_t>(n) * 4;
    if (off + bytes > size) fail("{}: truncated llama2.c checkpoint (needs more than {} bytes)", path, size);
    const float* p = reinterpret_cast<const float*>(base + off);
    off += bytes;
    return p;
  }
  WeightMatrix matrix(int64_t rows, int64_t cols) { return WeightMatrix{DType::F32, take(rows * cols), rows, cols}; }
};

}  // namespace

std::unique_ptr<ModelWeights> load_llama2c(const std::string& path) {
  auto m = std::make_unique<ModelWeights>();
  auto file = MappedFile::open(path);
  m->files.push_back(file);
  m->path = path;
  const uint8_t* p = file->data();
  const size_t size = file->size();
  if (size < 28) fail("{}: too short for a llama2.c checkpoint header ({} bytes)", path, size);

  uint32_t magic = 0;
  std::memcpy(&magic, p, 4);
  int32_t h[7];
  size_t data_off;
  bool shared;
  const bool v1 = magic == kMagicV1;
  if (v1) {
    if (size < 256) fail("{}: truncated llama2.c v1 header ({} bytes, needs 256)", path, size);
    int32_t version;
    std::memcpy(&version, p + 4, 4);
    if (version != 1) fail("{}: llama2.c checkpoint version {} is not supported (only version 1, fp32)", path, version);
    std::memcpy(h, p + 8, sizeof h);
    shared = p[36] != 0;
    data_off = 256;
    m->format = "llama2c-v1";
  } else {
    std::memcpy(h, p, sizeof h);
    shared = h[5] > 0;  // negative vocab: separate classifier (negated in 64 bits below: INT32_MIN)
    data_off = 28;
    m->format = "llama2c";
  }
  ModelConfig& c = m->config;
  c.dim = h[0];
  c.hidden_dim = h[1];
  c.n_layers = h[2];
  c.n_heads = h[3];
  c.n_kv_heads = h[4];
  c.vocab_size = v1 ? h[5] : std::abs(static_cast<int64_t>(h[5]));
  c.max_seq_len = h[6];
  c.tied_classifier = shared;
  c.norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.rope_style = RopeStyle::Interleaved;
  try {
    c.validate(path);
  } catch (const Error&) {
    fail("{}: not a llama2.c checkpoint (header ints {} {} {} {} {} {} {} do not describe a model)", path, h[0], h[1],
         h[2], h[3], h[4], h[5], h[6]);
  }

  const int64_t L = c.n_layers, D = c.dim, V = c.vocab_size;
  const int64_t rope_floats = v1 ? 0 : c.max_seq_len * c.head_dim();  // cos and sin tables
  const int64_t floats = V * D + L * layer_numel(c) + D + rope_floats + (shared ? 0 : V * D);
  // validate() keeps `floats` below 2^63, but 4 * floats can still wrap around size_t.
  if (static_cast<uint64_t>(floats) > (SIZE_MAX - data_off) / 4)
    fail("{}: truncated llama2.c checkpoint: {} bytes, the header ({}) needs {} floats", path, size, c.shape_string(),
         floats);
  const size_t expected = data_off + static_cast<size_t>(floats) * 4;
  if (size < expected)
    fail("{}: truncated llama2.c checkpoint: {} bytes, the header ({}) needs {}", path, size, c.shape_string(),
         expected);
  if (size > expected)
    fail("{}: llama2.c checkpoint has {} bytes, the header ({}) needs exactly {}", path, size, c.shape_string(),
         expected);

  Cursor cur{path, p, size, data_off};
  m->layers.resize(static_cast<size_t>(L));
  for (const Llama2cSection& s : llama2c_order(v1)) {
    switch (s.kind) {
      case Llama2cSection::TokenEmbeddings: m->tok_embeddings = cur.matrix(V, D); break;
      case Llama2cSection::Layer:
        for (auto& l : m->layers) {
          if (s.tensor->is_matrix())
            l.*s.tensor->matrix = cur.matrix(s.tensor->rows(c), s.tensor->cols(c));
          else
            l.*s.tensor->norm = cur.take(D);
        }
        break;
      case Llama2cSection::FinalNorm: m->rms_final = cur.take(D); break;
      case Llama2cSection::RopeTables: cur.take(rope_floats); break;  // recomputed, not read
      case Llama2cSection::Output: m->output = shared ? m->tok_embeddings : cur.matrix(V, D); break;
    }
  }
  return m;
}

}  // namespace la
