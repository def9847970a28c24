#include "la/tensor/dtype.h"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "la/tensor/quant_blocks.h"

namespace la {

namespace {
struct TypeInfo {
  DType type;
  const char* name;
  int64_t block;
  size_t bytes;
};
constexpr TypeInfo kTypes[] = {
    {DType::F32, "F32", 1, 4},
    {DType::F16, "F16", 1, 2},
    {DType::BF16, "BF16", 1, 2},
    {DType::Q8_0, "Q8_0", kQK8_0, sizeof(BlockQ8_0)},
    {DType::Q4_0, "Q4_0", kQK4_0, sizeof(BlockQ4_0)},
    {DType::Q4_K, "Q4_K", kQK_K, sizeof(BlockQ4_K)},
    {DType::Q6_K, "Q6_K", kQK_K, sizeof(BlockQ6_K)},
};
const TypeInfo& info(DType t) {
  return kTypes[static_cast<size_t>(t)];
}
}  // namespace

const char* dtype_name(DType t) {
  return info(t).name;
}
int64_t dtype_block_size(DType t) {
  return info(t).block;
}
size_t dtype_block_bytes(DType t) {
  return info(t).bytes;
}
bool dtype_is_quantized(DType t) {
  return info(t).block > 1;
}

bool parse_dtype(const std::string& name, DType* out) {
  std::string n = name;
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return std::toupper(c); });
  for (const auto& ti : kTypes)
    if (n == ti.name) {
      *out = ti.type;
      return true;
    }
  return false;
}

size_t dtype_row_bytes(DType t, int64_t cols) {
  const TypeInfo& ti = info(t);
  return static_cast<size_t>(cols / ti.block) * ti.bytes;
}

}  // namespace la
