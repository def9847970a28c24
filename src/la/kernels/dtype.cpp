#include "la/kernels/dtype.h"

#include <algorithm>
#include <cctype>
#include <cstring>

#include <immintrin.h>

#include "la/core/cpu.h"
#include "la/core/half.h"
#include "la/kernels/quant.h"

namespace la {

namespace {
struct TypeInfo {
  DType type;
  const char* name;
  int64_t block;
  size_t bytes;
};
constexpr TypeInfo kTypes[] = {
    {DType::F32, "F32", 1, 4},           {DType::F16, "F16", 1, 2},
    {DType::BF16, "BF16", 1, 2},         {DType::Q8_0, "Q8_0", kQK8_0, sizeof(BlockQ8_0)},
    {DType::Q4_0, "Q4_0", kQK4_0, sizeof(BlockQ4_0)}, {DType::Q4_K, "Q4_K", kQK_K, sizeof(BlockQ4_K)},
    {DType::Q6_K, "Q6_K", kQK_K, sizeof(BlockQ6_K)},
};
const TypeInfo& info(DType t) { return kTypes[static_cast<size_t>(t)]; }
}  // namespace

const char* dtype_name(DType t) { return info(t).name; }
int64_t dtype_block_size(DType t) { return info(t).block; }
size_t dtype_block_bytes(DType t) { return info(t).bytes; }
bool dtype_is_quantized(DType t) { return info(t).block > 1; }

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

namespace {

// f16 -> f32 with the F16C instruction (8 at a time), chosen at run time; bit-identical to the
// scalar conversion (both are exact).
__attribute__((target("avx2,f16c"))) void f16_to_f32_f16c(const uint16_t* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
  for (; i < n; ++i) d[i] = f16_to_f32(s[i]);
}

// bf16 -> f32 is a 16-bit shift; written on integers so the compiler vectorises it.
void bf16_to_f32_row(const uint16_t* s, float* d, int64_t n) {
  auto* out = reinterpret_cast<uint32_t*>(d);
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<uint32_t>(s[i]) << 16;
}

}  // namespace

void convert_to_f32(DType t, const void* src, float* dst, int64_t n) {
  switch (t) {
    case DType::F32: std::memcpy(dst, src, static_cast<size_t>(n) * 4); return;
    case DType::F16: {
      const auto* s = static_cast<const uint16_t*>(src);
      static const bool f16c = cpu_features().f16c && cpu_features().avx2;
      if (f16c) return f16_to_f32_f16c(s, dst, n);
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
      return;
    }
    case DType::BF16: bf16_to_f32_row(static_cast<const uint16_t*>(src), dst, n); return;
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_K:
    case DType::Q6_K: dequantize(t, src, dst, n); return;
  }
}

}  // namespace la
