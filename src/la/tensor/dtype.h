// Storage types of weight matrices and the non-owning view the kernels take.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace la {

// Element types a weight matrix can be stored in; every kernel dispatches on this tag. The
// block-quantised types are ggml's (GGUF files hold them as is): a row of `cols` elements is
// cols / block_size(t) blocks (see kernels/quant.h for the layouts).
enum class DType : uint8_t { F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K };

const char* dtype_name(DType t);
bool parse_dtype(const std::string& name, DType* out);  // "F32", "q8_0", ... (case-insensitive)
int64_t dtype_block_size(DType t);                      // elements per block (1 for float types)
size_t dtype_block_bytes(DType t);                      // bytes per block
bool dtype_is_quantized(DType t);
size_t dtype_row_bytes(DType t, int64_t cols);  // bytes of one stored row; cols % block_size == 0

// A row-major [rows, cols] matrix in its stored type, used in place (often inside an mmap).
// Linear layers store W as [out, in]: y = W x.
struct WeightMatrix {
  DType type = DType::F32;
  const void* data = nullptr;
  int64_t rows = 0, cols = 0;
  // The same weights laid out once more for the inference kernels, or null: the x8 layouts of
  // kernels/quant_dot.h (Q8_0, Q4_0, Q4_K, Q6_K), made by ModelWeights::pack_interleaved. `data` stays valid.
  const void* packed = nullptr;

  const uint8_t* row_ptr(int64_t r) const {
    return static_cast<const uint8_t*>(data) + static_cast<size_t>(r) * dtype_row_bytes(type, cols);
  }
  size_t bytes() const { return static_cast<size_t>(rows) * dtype_row_bytes(type, cols); }
  int64_t numel() const { return rows * cols; }
};

}  // namespace la
