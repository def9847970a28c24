// Re-storing a model's matrices in another type (quantising, or back to f32 for references).
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "la/model/weights.h"
#include "la/tensor/dtype.h"

namespace la {

// A new model with the same config whose every 2-D matrix (tok_embeddings, each layer's matrices
// of kLayerTensors, output) is stored in `type`, in memory the new object owns (it does not refer
// to `src` afterwards). Norm vectors stay f32. A tied output stays tied (the same storage as the
// embeddings). keep_embeddings_f32: tok_embeddings stays f32 -- and so does a tied output.
// Matrices already in `type` are copied as they are (never re-quantised). Each row is quantised
// on its own (ggml's row-major blocks), so a row length that is not a multiple of the type's
// block size throws la::Error naming the matrix, its shape and the block size.
// With `fallback`, such matrices are stored in the fallback type instead of failing.
std::unique_ptr<ModelWeights> convert_weights(const ModelWeights& src, DType type, bool keep_embeddings_f32 = false,
                                              std::optional<DType> fallback = std::nullopt);

// One matrix: the type a matrix `w` named `name` is stored in by convert_weights(type, fallback)
// -- `type`, or `fallback` when its rows do not fill whole `type` blocks; without a fallback that
// throws la::Error naming `source`, the matrix, its shape and the block size.
DType converted_type(const WeightMatrix& w, DType type, std::optional<DType> fallback, const std::string& name,
                     const std::string& source);

// Writes `w` stored as `type` to `dst` (w.rows * dtype_row_bytes(type, w.cols) bytes; the row
// length must fill whole blocks). Each row is converted on its own, so the output's row r may be
// taken from another row of `w`: `source_row(r)` (default: r). Rows already in `type` are copied
// as they are.
void convert_matrix_to(const WeightMatrix& w, DType type, void* dst,
                       const std::function<int64_t(int64_t)>& source_row = nullptr);

// Every matrix as f32 (the exact values the kernels compute with): a reference for tests.
std::unique_ptr<ModelWeights> dequantized_copy(const ModelWeights& src);

}  // namespace la
