// Re-storing a model's matrices in another type (quantising, or back to f32 for references).
#pragma once
#include <memory>
#include <optional>

#include "la/kernels/dtype.h"
#include "la/model/weights.h"

namespace la {

// A new model with the same config whose every 2-D matrix (tok_embeddings, wq, wk, wv, wo, w1,
// w2, w3, output) is stored in `type`, in memory the new object owns (it does not refer to `src`
// afterwards). Norm vectors stay f32. A tied output stays tied (the same storage as the
// embeddings). keep_embeddings_f32: tok_embeddings stays f32 -- and so does a tied output.
// Matrices already in `type` are copied as they are (never re-quantised). Each row is quantised
// on its own (ggml's row-major blocks), so a row length that is not a multiple of the type's
// block size throws la::Error naming the matrix, its shape and the block size.
// With `fallback`, such matrices are stored in the fallback type instead of failing.
std::unique_ptr<ModelWeights> convert_weights(const ModelWeights& src, DType type, bool keep_embeddings_f32 = false,
                                             std::optional<DType> fallback = std::nullopt);

// Every matrix as f32 (the exact values the kernels compute with): a reference for tests.
std::unique_ptr<ModelWeights> dequantized_copy(const ModelWeights& src);

}  // namespace la
