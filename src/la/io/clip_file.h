// CLIP image-tower files (SPEC §8): Hugging Face CLIP directories and GGUF in llama.cpp's CLIP
// naming, read into ClipWeights (matrices mapped in their stored type, small vectors as f32), and
// CLIP GGUF written from any of them (F32, F16 or Q8_0 matrices). Text towers are ignored.
//
// One table (clip_file.cpp: kClipTensors) names every tensor in both formats.
//   Hugging Face                                          GGUF (llama.cpp)
//   vision_model.embeddings.patch_embedding.weight        v.patch_embd.weight [W,3,p,p]
//   vision_model.embeddings.class_embedding               v.class_embd [W]
//   vision_model.embeddings.position_embedding.weight     v.position_embd.weight [T,W]
//   vision_model.pre_layrnorm.{weight,bias}               v.pre_ln.{weight,bias}
//   vision_model.encoder.layers.{i}.self_attn.{q,k,v,out}_proj.{weight,bias}
//                                                         v.blk.{i}.attn_{q,k,v,out}.{weight,bias}
//   ....layer_norm{1,2}.{weight,bias}                     v.blk.{i}.ln{1,2}.{weight,bias}
//   ....mlp.fc1.{weight,bias}, mlp.fc2.{weight,bias}      v.blk.{i}.ffn_up / ffn_down (older converters wrote
//                                                         them the other way round: told apart by shape)
//   vision_model.post_layernorm.{weight,bias}             v.post_ln.{weight,bias}
//   visual_projection.weight [E,W]                        visual_projection.weight
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "la/tensor/dtype.h"
#include "la/vision/clip.h"

namespace la {

// A directory is a Hugging Face CLIP (config.json with vision_config, or a vision-only config);
// a file starting with "GGUF" is a CLIP GGUF. Anything else is an error naming the path. On a
// CPU without AVX-512, F16/BF16 matrices are widened to f32 copies once (ClipWeights::
// widen_half_matrices): the BLAS path would otherwise widen them for every image.
std::unique_ptr<ClipWeights> load_clip(const std::string& path);
// The image tower's shape from a Hugging Face config.json (`top`; read from `path`): a full CLIP's
// vision_config + projection_dim, or a vision-only config; absent fields take CLIPVisionConfig's
// defaults. Throws la::Error naming the path.
ClipConfig clip_config_from_hf(const nlohmann::json& top, const std::string& path);
// Writes w as a CLIP GGUF: matrices in `type` (F32, F16 or Q8_0; with Q8_0 the patch kernel, 4-D
// in GGUF with rows of p values, and any matrix whose rows do not fill whole blocks are F16),
// vectors and embeddings F32.
// Atomic.
void save_clip_gguf(const ClipWeights& w, DType type, const std::string& path);

}  // namespace la
