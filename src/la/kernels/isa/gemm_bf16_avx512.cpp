// AVX512-BF16 packing and register-tile kernel of the bf16-arithmetic GEMM (see gemm.h,
// isa/gemm_kernels.h). Built with the AVX-512 flags plus -mavx512bf16 (src/CMakeLists.txt);
// gemm.cpp calls it only where CPUID reports AVX512_BF16.
// Plain loops and intrinsics only (no std:: templates or inline library helpers): code built with
// these flags must not be picked by the linker for other translation units.
#include <cstdint>

// GCC 12 warns about the deliberately undefined upper lanes inside its own AVX-512 intrinsics
// (_mm512_undefined_*; GCC bug 105593, fixed in 13) wherever they are inlined: off for this file.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include "la/kernels/isa/gemm_kernels.h"

namespace la::gemm_detail {

namespace {

constexpr int MR = static_cast<int>(kBf16MR), NR = static_cast<int>(kBf16NR);

inline __mmask32 first32(int64_t n) {  // mask of the first n (0..32+) 16-bit lanes
  return n >= 32 ? static_cast<__mmask32>(0xFFFFFFFFu) : static_cast<__mmask32>((1u << (n > 0 ? n : 0)) - 1u);
}

inline __m512 as_ps(__m512i v) {
  return _mm512_castsi512_ps(v);
}

#include "la/kernels/isa/avx512_helpers.inc"

// 16 rows x 32 values: each row is rounded to 16 pairs in one vcvtne2ps2bf16, then the 16 x 16
// transpose of the 32-bit pairs gives one k-pair of all rows per register.
void pack_a(const float* A, int64_t lda, int64_t mc, int64_t kc, uint32_t* ap) {
  static_assert(MR <= 16, "one transpose covers a panel's rows");
  const __mmask16 row_mask = first16(MR);
  const int64_t kp = (kc + 1) / 2;
  for (int64_t i0 = 0; i0 < mc; i0 += MR, ap += kp * MR) {
    const int64_t rows = mc - i0 < MR ? mc - i0 : MR;
    for (int64_t kk = 0; kk < kc; kk += 32) {
      const int64_t n = kc - kk < 32 ? kc - kk : 32;
      __m512 r[16];
      for (int i = 0; i < 16; ++i) {
        if (i < rows) {
          const float* a = A + (i0 + i) * lda + kk;
          const __m512 lo = _mm512_maskz_loadu_ps(first16(n), a), hi = _mm512_maskz_loadu_ps(first16(n - 16), a + 16);
          r[i] = as_ps((__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        } else {
          r[i] = _mm512_setzero_ps();
        }
      }
      transpose16_regs(r);
      const int64_t pairs = (n + 1) / 2;
      for (int64_t j = 0; j < pairs; ++j)
        _mm512_mask_storeu_ps(reinterpret_cast<float*>(ap + (kk / 2 + j) * MR), row_mask, r[j]);
    }
  }
}

// A weight row's bf16 values are already pairs along k: 16 rows x 64 bytes go through the
// transpose unchanged (no conversion, half the bytes of the f32 packing).
void pack_b_nt(const WeightMatrix& w, int64_t n0, int64_t nr, int64_t k0, int64_t kc, uint32_t* panel) {
  const size_t row_bytes = static_cast<size_t>(w.cols) * 2;
  const auto* base = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(k0) * 2;
  // The next panel's rows, spread over the steps (as in the f32 packing: 32 short row segments
  // are too many streams for the hardware prefetchers).
  const uint8_t* next = base + static_cast<size_t>(n0 + NR) * row_bytes;
  const bool prefetch = n0 + 2 * NR <= w.rows;
  const int64_t lines = (kc * 2 + 63) / 64, steps = (kc + 31) / 32;
  for (int64_t kk = 0; kk < kc; kk += 32) {
    const int64_t n = kc - kk < 32 ? kc - kk : 32, step = kk / 32;
    if (prefetch)
      for (int64_t l = step * NR * lines / steps; l < (step + 1) * NR * lines / steps; ++l)
        _mm_prefetch(reinterpret_cast<const char*>(next + static_cast<size_t>(l / lines) * row_bytes +
                                                   static_cast<size_t>(l % lines) * 64),
                     _MM_HINT_T0);
    const __mmask32 m = first32(n);
    const int64_t pairs = (n + 1) / 2;
    for (int half = 0; half < 2; ++half) {
      __m512 r[16];
      for (int i = 0; i < 16; ++i) {
        const int64_t row = half * 16 + i;
        r[i] = row < nr ? as_ps(_mm512_maskz_loadu_epi16(m, base + static_cast<size_t>(n0 + row) * row_bytes + kk * 2))
                        : _mm512_setzero_ps();
      }
      transpose16_regs(r);
      for (int64_t j = 0; j < pairs; ++j)
        _mm512_storeu_ps(reinterpret_cast<float*>(panel + (kk / 2 + j) * NR + half * 16), r[j]);
    }
  }
}

// Two stored rows k, k+1 are interleaved column by column: widen each 16-bit value to 32 bits
// and put row k+1's in the high half.
void pack_b_nn(const WeightMatrix& w, int64_t k0, int64_t kc, int64_t n0, int64_t nc, uint32_t* bp) {
  const size_t row_bytes = static_cast<size_t>(w.cols) * 2;
  const auto* base = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(n0) * 2;
  const int64_t panels = (nc + NR - 1) / NR, kp = (kc + 1) / 2;
  for (int64_t p2 = 0; p2 < kp; ++p2) {
    const uint8_t* row0 = base + static_cast<size_t>(k0 + 2 * p2) * row_bytes;
    const bool has1 = 2 * p2 + 1 < kc;
    for (int64_t p = 0; p < panels; ++p) {
      uint32_t* dst = bp + (p * kp + p2) * NR;
      for (int half = 0; half < 2; ++half) {
        const int64_t j = p * NR + half * 16;
        const __mmask16 m = first16(nc - j);
        const __m512i lo = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, row0 + j * 2));
        const __m512i hi = has1 ? _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, row0 + row_bytes + j * 2))
                                : _mm512_setzero_si512();
        _mm512_storeu_si512(dst + half * 16, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
      }
    }
  }
}

void kernel(int64_t kp, const uint32_t* a, const uint32_t* b, float* C, int64_t ldc, int mr, int nr, bool add) {
  __m512 c0[MR], c1[MR];
  for (int r = 0; r < MR; ++r) c0[r] = c1[r] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kp; ++k, a += MR, b += NR) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b), b1 = (__m512bh)_mm512_loadu_si512(b + 16);
#pragma GCC unroll 14
    for (int r = 0; r < MR; ++r) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[r]));
      c0[r] = _mm512_dpbf16_ps(c0[r], av, b0);
      c1[r] = _mm512_dpbf16_ps(c1[r], av, b1);
    }
  }
  store_tile(C, ldc, c0, c1, mr, nr, add);
}

const Bf16Kernels kBf16{pack_a, pack_b_nt, pack_b_nn, kernel};

}  // namespace

const Bf16Kernels& bf16_kernels() {
  return kBf16;
}

}  // namespace la::gemm_detail
