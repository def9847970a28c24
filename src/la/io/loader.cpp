#include "la/io/loader.h"

#include <cstring>
#include <filesystem>

#include "la/core/error.h"
#include "la/io/gguf_model.h"
#include "la/io/shapes.h"
#include "la/model/validate.h"

namespace la {

namespace {

std::unique_ptr<ModelWeights> load_by_content(const std::string& path) {
  if (is_directory(path)) return is_meta_directory(path) ? load_meta_directory(path) : load_hf_directory(path);
  auto f = MappedFile::open(path);
  if (f->size() >= 4) {
    if (std::memcmp(f->data(), "GGUF", 4) == 0) return load_gguf(path);
    uint64_t hdr = 0;
    if (f->size() >= 8) std::memcpy(&hdr, f->data(), 8);
    if (f->data()[0] == '{' || (f->size() >= 9 && f->data()[8] == '{' && hdr < f->size()))
      fail("{}: a lone safetensors/JSON file; pass the Hugging Face model directory (config.json beside it)", path);
  }
  return load_llama2c(path);
}

}  // namespace

std::unique_ptr<ModelWeights> load_model(const std::string& path) {
  auto w = load_by_content(path);
  check_finite_weights(*w);  // a NaN weight would turn every output into NaN
  return w;
}

void save_model(const ModelWeights& m, const BpeVocab* vocab, const std::string& path) {
  const std::string ext = std::filesystem::path(path).extension().string();
  if (ext == ".gguf")
    save_gguf(m, vocab, path, std::filesystem::path(path).stem().string());
  else if (ext == ".bin")
    save_llama2c(m, path);
  else
    fail("{}: a model is written as .gguf or .bin (llama2.c), not '{}'", path, ext);
}

void permute_meta_to_hf(const float* src, float* dst, int64_t n_heads, int64_t head_dim, int64_t cols) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t c = 0; c < 2; ++c)
      for (int64_t i = 0; i < half; ++i)
        std::memcpy(dst + (h * head_dim + c * half + i) * cols, src + (h * head_dim + 2 * i + c) * cols,
                    static_cast<size_t>(cols) * sizeof(float));
}

void permute_hf_to_meta(const float* src, float* dst, int64_t n_heads, int64_t head_dim, int64_t cols) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t c = 0; c < 2; ++c)
      for (int64_t i = 0; i < half; ++i)
        std::memcpy(dst + (h * head_dim + 2 * i + c) * cols, src + (h * head_dim + c * half + i) * cols,
                    static_cast<size_t>(cols) * sizeof(float));
}

int64_t hf_row_of_meta_row(int64_t r, int64_t head_dim) {
  // Meta row h*hd + 2i + c  <-  HF row h*hd + c*hd/2 + i.
  const int64_t h = r / head_dim, j = r % head_dim;
  return h * head_dim + (j % 2) * (head_dim / 2) + j / 2;
}

}  // namespace la
