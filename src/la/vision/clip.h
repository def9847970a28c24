// CLIP's image tower (SPEC §8; openai/CLIP's VisionTransformer), frozen, on our kernels:
//   patches (conv, kernel = stride = patch, no bias) -> [class; patches] + positions -> ln_pre
//   -> N blocks: x += attn(ln_1(x)) (full attention, q/k/v/out biases, scale 1/sqrt(head_dim)),
//                x += fc2(act(fc1(ln_2(x)))), act = QuickGELU x*sigmoid(1.702x) (or GELU, by config)
//   -> ln_post(class token) -> proj (no bias).
// Multi-scale global features: the class token after blocks {ceil(N/3), ceil(2N/3), N}, each
// through ln_post and proj, concatenated (M*E values); the last of them is the image embedding.
#pragma once
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "la/core/mapped_file.h"
#include "la/tensor/dtype.h"
#include "la/vision/preprocess.h"

namespace la {

enum class ClipAct : uint8_t { QuickGelu, Gelu };

struct ClipConfig {
  int64_t image_size = 224, patch_size = 14, width = 1024, n_layers = 24, n_heads = 16, ffn_dim = 4096, embed_dim = 768;
  float eps = 1e-5f;
  ClipAct act = ClipAct::QuickGelu;
  ImageNorm norm;
  int64_t grid() const { return image_size / patch_size; }
  int64_t tokens() const { return grid() * grid() + 1; }
  int64_t head_dim() const { return width / n_heads; }
  int64_t patch_values() const { return 3 * patch_size * patch_size; }
  // 1-based blocks whose class token makes the multi-scale features: {ceil(N/3), ceil(2N/3), N}.
  std::vector<int64_t> feature_layers() const;
  std::string feature_layers_string() const;  // "8,16,24"
  int64_t feature_dim() const { return static_cast<int64_t>(feature_layers().size()) * embed_dim; }
  std::string shape_string() const;  // "image 224/14, width 1024, 24 layers, 16 heads, ffn 4096, embed 768"
  void validate(const std::string& source) const;  // throws la::Error naming source
};

struct ClipLayer {
  const float *ln1_w = nullptr, *ln1_b = nullptr, *ln2_w = nullptr, *ln2_b = nullptr;
  WeightMatrix wq, wk, wv, wo;  // [width, width]
  const float *bq = nullptr, *bk = nullptr, *bv = nullptr, *bo = nullptr;
  WeightMatrix fc1, fc2;  // [ffn, width], [width, ffn]
  const float *b1 = nullptr, *b2 = nullptr;
};

struct ClipWeights {
  ClipConfig config;
  WeightMatrix patch;                      // [width, 3*p*p]: the convolution's kernel, (channel, y, x) per row
  const float* class_embedding = nullptr;  // [width]
  const float* positions = nullptr;        // [tokens, width]
  const float *pre_ln_w = nullptr, *pre_ln_b = nullptr, *post_ln_w = nullptr, *post_ln_b = nullptr;
  std::vector<ClipLayer> layers;
  WeightMatrix proj;  // [embed_dim, width] (Hugging Face's visual_projection; OpenAI's proj^T)

  std::string path, format;  // where it came from; "hf-clip", "gguf-clip"
  std::vector<std::shared_ptr<MappedFile>> files;
  std::deque<std::vector<float>> owned;
  const float* own_f32(DType t, const void* src, int64_t n);  // an f32 copy kept alive here
  // F16/BF16 matrices as f32 copies (twice their memory): for CPUs whose products on them would
  // widen every weight again for every image (load_clip decides).
  void widen_half_matrices();
};

struct ClipOutput {
  std::vector<float> embedding;  // [E]
  std::vector<float> features;   // [M*E]
};

// One image, preprocessed ([3, S, S], clip_preprocess), through the tower.
ClipOutput clip_encode(const ClipWeights& w, const float* pixels);

}  // namespace la
