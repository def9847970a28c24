// Named model shapes (for `info`, `bench` and tests) and random models of any shape.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "la/model/weights.h"

namespace la {

// "stories260k", "stories15m", "110m", "tinyllama-1.1b", "7b" (LLaMA-7B: dim 4096, 32 layers,
// 32 heads, hidden 11008, vocab 32000). Case-insensitive. nullopt for an unknown name.
std::optional<ModelConfig> named_shape(const std::string& name);
std::vector<std::string> shape_names();

// A model of shape `c` with weights drawn from N(0, 0.02) (norm weights 1), seeded: used for
// benchmarks, the embedded demo and tests. Owns its memory. Matrices are stored in `type`,
// generated and quantised row by row (a 7B-shaped Q4_0 model needs ~3.8 GB, never its f32 size).
std::unique_ptr<ModelWeights> random_model(const ModelConfig& c, uint64_t seed, DType type = DType::F32);

// Writes a model as a llama2.c legacy checkpoint (f32; the RoPE tables included so llama2.c's
// run.c reads it too). Atomic.
void save_llama2c(const ModelWeights& m, const std::string& path);

}  // namespace la
