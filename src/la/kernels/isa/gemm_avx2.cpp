// AVX2 packing and register-tile kernel of the blocked GEMM (see gemm.h, isa/gemm_kernels.h): a
// 6 x 16 tile (12 ymm accumulators, two B vectors and one broadcast: 15 of the 16 registers),
// 8 x 8 transposes for packing. No weight-broadcast form. Plain loops and intrinsics only, as in
// gemm_avx512.cpp: code built with AVX2 flags must not be picked by the linker for other
// translation units.
#include <immintrin.h>

#include <cstdint>

#include "la/kernels/convert.h"
#include "la/kernels/isa/gemm_kernels.h"

namespace la::gemm_detail {

namespace {

// Tile 6 x 16; blocks: A 96 x 256 (96 KiB), B 256 x 512 (512 KiB) in a 1 MiB L2, as the AVX-512
// build's B block.
constexpr int MR = 6, NR = 16;
constexpr int64_t KC = 256, MC = 16 * MR, NC = 512;

#include "la/kernels/isa/gemm_pack_impl.inc"

// 8 stored elements from p (type t: F32, F16 or BF16) as f32.
inline __m256 load8_full(DType t, const void* p) {
  if (t == DType::F32) return _mm256_loadu_ps(static_cast<const float*>(p));
  const __m128i h = _mm_loadu_si128(static_cast<const __m128i*>(p));
  if (t == DType::F16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));  // BF16
}

// Up to 8 elements; lanes past n are 0.
inline __m256 load8(DType t, const void* p, int64_t n) {
  if (n >= 8) return load8_full(t, p);
  alignas(32) uint8_t buf[32] = {};
  if (n > 0) __builtin_memcpy(buf, p, static_cast<size_t>(n) * elem_bytes(t));
  return load8_full(t, buf);
}

// 8 x 8 transpose of 32-bit elements held in 8 ymm registers: r[j] lane i <- r[i] lane j.
inline void transpose8_regs(__m256 r[8]) {
  __m256 t[8], s[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // s[4h + c]: columns c and c + 4 (128-bit lanes) of rows 4h .. 4h+3.
  for (int h = 0; h < 2; ++h) {
    const __m256* u = t + 4 * h;
    s[4 * h] = _mm256_shuffle_ps(u[0], u[2], 0x44);
    s[4 * h + 1] = _mm256_shuffle_ps(u[0], u[2], 0xEE);
    s[4 * h + 2] = _mm256_shuffle_ps(u[1], u[3], 0x44);
    s[4 * h + 3] = _mm256_shuffle_ps(u[1], u[3], 0xEE);
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm256_permute2f128_ps(s[c], s[4 + c], 0x20);
    r[4 + c] = _mm256_permute2f128_ps(s[c], s[4 + c], 0x31);
  }
}

// Rows of 6 gathered 8 at a time through the transpose (2 zero rows, not stored).
void pack_a(const float* A, int64_t lda, int64_t mc, int64_t kc, float* ap) {
  for (int64_t i0 = 0; i0 < mc; i0 += MR, ap += kc * MR) {
    const int64_t rows = mc - i0 < MR ? mc - i0 : MR;
    for (int64_t kk = 0; kk < kc; kk += 8) {
      const int64_t n = kc - kk < 8 ? kc - kk : 8;
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = i < rows ? load8(DType::F32, A + (i0 + i) * lda + kk, n) : _mm256_setzero_ps();
      transpose8_regs(r);
      for (int64_t j = 0; j < n; ++j) {
        float* d = ap + (kk + j) * MR;
        _mm_storeu_ps(d, _mm256_castps256_ps128(r[j]));
        _mm_storel_pi(reinterpret_cast<__m64*>(d + 4), _mm256_extractf128_ps(r[j], 1));
      }
    }
  }
}

// The vector type of the shared B packings (gemm_pack_impl.inc).
struct Vec {
  using T = __m256;
  static constexpr int kWidth = 8;
  static T load(DType t, const void* p, int64_t n) { return load8(t, p, n); }
  static T zero() { return _mm256_setzero_ps(); }
  static void store(float* p, T v) { _mm256_storeu_ps(p, v); }
  static void transpose(T* r) { transpose8_regs(r); }
};

// R rows of the MR-row tile (rows past R are the panel's padding): a short last tile costs R rows
// of FMAs, not MR. C (+)= acc, nr columns.
template <int R>
void kernel_rows(int64_t kc, const float* a, const float* b, float* C, int64_t ldc, int nr, bool add) {
  // Every loop over r is unrolled: an accumulator indexed at run time would live in memory.
  __m256 c0[R], c1[R];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) c0[r] = c1[r] = _mm256_setzero_ps();
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k, a += MR, b += NR) {
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m256 av = _mm256_broadcast_ss(a + r);
      c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    float* c = C + r * ldc;
    if (nr == NR) {
      if (add) {
        c0[r] = _mm256_add_ps(c0[r], _mm256_loadu_ps(c));
        c1[r] = _mm256_add_ps(c1[r], _mm256_loadu_ps(c + 8));
      }
      _mm256_storeu_ps(c, c0[r]);
      _mm256_storeu_ps(c + 8, c1[r]);
    } else {
      alignas(32) float buf[NR];
      _mm256_store_ps(buf, c0[r]);
      _mm256_store_ps(buf + 8, c1[r]);
      for (int j = 0; j < nr; ++j) c[j] = add ? buf[j] + c[j] : buf[j];
    }
  }
}

template <int... R>
struct RowCounts {};
template <class Counts>
struct Specialisations;
template <int... R>
struct Specialisations<RowCounts<R...>> {
  static constexpr void (*kernel[])(int64_t, const float*, const float*, float*, int64_t, int,
                                    bool) = {kernel_rows<R>...};
};
using ByRows = Specialisations<RowCounts<1, 2, 3, 4, 5, 6>>;
static_assert(MR == 6, "ByRows covers the packed tile");

void kernel(int64_t kc, const float* a, const float* b, float* C, int64_t ldc, int mr, int nr, bool add) {
  ByRows::kernel[mr - 1](kc, a, b, C, ldc, nr, add);
}

const Kernels kAvx2{"avx2",           MR,     NR,      KC,     MC, NC, 0, 0, pack_a, pack_b_nt_t<Vec>,
                    pack_b_nn_t<Vec>, kernel, nullptr, nullptr};

}  // namespace

const Kernels& avx2_kernels() {
  return kAvx2;
}

}  // namespace la::gemm_detail
