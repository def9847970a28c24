#include "la/kernels/convert.h"

#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "la/core/cpu.h"
#include "la/core/half.h"
#include "la/kernels/quant.h"

namespace la {

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

namespace {

// First index i < n (stride `stride` bytes from `base`) whose 16-bit value has all of `mask` set.
int64_t first_u16_with(const uint8_t* base, size_t stride, int64_t n, uint16_t mask) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t v;
    std::memcpy(&v, base + static_cast<size_t>(i) * stride, 2);
    if ((v & mask) == mask) return i;
  }
  return -1;
}

// The same for n consecutive values: branch-free over chunks, so that the compiler vectorises the
// scan (a 2 GiB F16 model's check at load took ~0.65 s with a branch per element).
int64_t first_contiguous_u16_with(const uint16_t* u, int64_t n, uint16_t mask) {
  constexpr int64_t kChunk = 8192;
  for (int64_t c = 0; c < n; c += kChunk) {
    const int64_t e = std::min(n, c + kChunk);
    uint16_t bad = 0;
    for (int64_t i = c; i < e; ++i) bad |= static_cast<uint16_t>((u[i] & mask) == mask);
    if (bad) return c + first_u16_with(reinterpret_cast<const uint8_t*>(u + c), 2, e - c, mask);
  }
  return -1;
}

}  // namespace

int64_t first_non_finite(DType t, const void* src, int64_t n) {
  const auto* b = static_cast<const uint8_t*>(src);
  switch (t) {
    case DType::F32: {
      // Branch-free over chunks so the scan runs at memory speed; locate the index afterwards.
      const auto* u = static_cast<const uint32_t*>(src);
      constexpr int64_t kChunk = 4096;
      for (int64_t c = 0; c < n; c += kChunk) {
        const int64_t e = std::min(n, c + kChunk);
        uint32_t bad = 0;
        for (int64_t i = c; i < e; ++i) bad |= static_cast<uint32_t>((u[i] & 0x7f800000u) == 0x7f800000u);
        if (bad)
          for (int64_t i = c; i < e; ++i)
            if ((u[i] & 0x7f800000u) == 0x7f800000u) return i;
      }
      return -1;
    }
    case DType::F16: return first_contiguous_u16_with(static_cast<const uint16_t*>(src), n, 0x7c00);
    case DType::BF16: return first_contiguous_u16_with(static_cast<const uint16_t*>(src), n, 0x7f80);
    case DType::Q8_0: {
      const int64_t i = first_u16_with(b + offsetof(BlockQ8_0, d), sizeof(BlockQ8_0), n / kQK8_0, 0x7c00);
      return i < 0 ? -1 : i * kQK8_0;
    }
    case DType::Q4_0: {
      const int64_t i = first_u16_with(b + offsetof(BlockQ4_0, d), sizeof(BlockQ4_0), n / kQK4_0, 0x7c00);
      return i < 0 ? -1 : i * kQK4_0;
    }
    case DType::Q4_K: {
      const int64_t nb = n / kQK_K;
      const int64_t i = first_u16_with(b + offsetof(BlockQ4_K, d), sizeof(BlockQ4_K), nb, 0x7c00);
      const int64_t j = first_u16_with(b + offsetof(BlockQ4_K, dmin), sizeof(BlockQ4_K), nb, 0x7c00);
      const int64_t k = i < 0 ? j : j < 0 ? i : std::min(i, j);
      return k < 0 ? -1 : k * kQK_K;
    }
    case DType::Q6_K: {
      const int64_t i = first_u16_with(b + offsetof(BlockQ6_K, d), sizeof(BlockQ6_K), n / kQK_K, 0x7c00);
      return i < 0 ? -1 : i * kQK_K;
    }
  }
  return -1;
}

}  // namespace la
