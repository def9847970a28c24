// AVX-512 packing and register-tile kernels of the blocked GEMM (see gemm.h, isa/gemm_kernels.h).
// Plain loops and intrinsics only (no std:: templates or inline library helpers): code built with
// AVX-512 flags must not be picked by the linker for other translation units.
#include <cstdint>

// GCC 12 warns about the deliberately undefined upper lanes inside its own AVX-512 intrinsics
// (_mm512_undefined_*; GCC bug 105593, fixed in 13) wherever they are inlined: off for this file.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include "la/kernels/convert.h"
#include "la/kernels/isa/gemm_kernels.h"

namespace la::gemm_detail {

namespace {

// Tile 14 x 32; blocks: A 112 x 256 (~112 KiB, stays in L2), B 256 x 512 (512 KiB); the
// weight-broadcast tile 14 weight rows x 32 rows of A.
constexpr int MR = 14, NR = 32;
constexpr int64_t KC = 256, MC = 8 * MR, NC = 512, kWR = 14, kWM = 32;

#include "la/kernels/isa/avx512_helpers.inc"
#include "la/kernels/isa/gemm_pack_impl.inc"

// Up to 16 stored elements from p (type t: F32, F16 or BF16) as f32; lanes past n are 0.
inline __m512 load16(DType t, const void* p, int64_t n) {
  const __mmask16 m = first16(n);
  if (t == DType::F32) return _mm512_maskz_loadu_ps(m, p);
  const __m256i h = _mm256_maskz_loadu_epi16(m, p);
  if (t == DType::F16) return _mm512_cvtph_ps(h);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));  // BF16
}

// Rows of 14 are gathered 16 at a time through the transpose (the 2 extra rows are zero and not
// stored): 16 loads, 64 shuffles and 16 stores per 224 elements.
void pack_a(const float* A, int64_t lda, int64_t mc, int64_t kc, float* ap) {
  static_assert(MR <= 16, "one transpose covers a panel's rows");
  const __mmask16 row_mask = first16(MR);
  for (int64_t i0 = 0; i0 < mc; i0 += MR, ap += kc * MR) {
    const int64_t rows = mc - i0 < MR ? mc - i0 : MR;
    for (int64_t kk = 0; kk < kc; kk += 16) {
      const int64_t n = kc - kk < 16 ? kc - kk : 16;
      __m512 r[16];
      for (int i = 0; i < 16; ++i)
        r[i] = i < rows ? _mm512_maskz_loadu_ps(first16(n), A + (i0 + i) * lda + kk) : _mm512_setzero_ps();
      transpose16_regs(r);
      for (int64_t j = 0; j < n; ++j) _mm512_mask_storeu_ps(ap + (kk + j) * MR, row_mask, r[j]);
    }
  }
}

// The vector type of the shared B packings (gemm_pack_impl.inc).
struct Vec {
  using T = __m512;
  static constexpr int kWidth = 16;
  static T load(DType t, const void* p, int64_t n) { return load16(t, p, n); }
  static T zero() { return _mm512_setzero_ps(); }
  static void store(float* p, T v) { _mm512_storeu_ps(p, v); }
  static void transpose(T* r) { transpose16_regs(r); }
};

// R rows of the MR-row tile (the packed A panel is always MR wide; rows past R are padding):
// a short last tile costs R rows of FMAs, not MR (M = 64: 5 tiles of 70 rows' work before).
template <int R>
void kernel_rows(int64_t kc, const float* a, const float* b, float* C, int64_t ldc, int nr, bool add) {
  __m512 c0[R], c1[R];
  for (int r = 0; r < R; ++r) c0[r] = c1[r] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k, a += MR, b += NR) {
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 14
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(a[r]);
      c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
    }
  }
  store_tile(C, ldc, c0, c1, R, nr, add);
}

void pack_at(const float* A, int64_t lda, int64_t M, int64_t k0, int64_t kc, float* at, int64_t ldat) {
  for (int64_t m0 = 0; m0 < ldat; m0 += 16)
    for (int64_t kk = 0; kk < kc; kk += 16) {
      const int64_t n = kc - kk < 16 ? kc - kk : 16;
      __m512 r[16];
      for (int i = 0; i < 16; ++i)
        r[i] = m0 + i < M ? _mm512_maskz_loadu_ps(first16(n), A + (m0 + i) * lda + k0 + kk) : _mm512_setzero_ps();
      transpose16_regs(r);
      for (int64_t j = 0; j < n; ++j) _mm512_storeu_ps(at + (kk + j) * ldat + m0, r[j]);
    }
}

// R weight rows (broadcast) x 32 rows of A (two vectors of A^T): 2R accumulators; the tile is
// transposed back through two 16 x 16 transposes when stored.
template <int R>
void kernel_wb_rows(int64_t kc, const float* w, int64_t ldw, const float* at, int64_t ldat, float* C, int64_t ldc,
                    int mr, bool add) {
  __m512 c0[R], c1[R];
  for (int r = 0; r < R; ++r) c0[r] = c1[r] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k, at += ldat) {
    const __m512 a0 = _mm512_loadu_ps(at), a1 = _mm512_loadu_ps(at + 16);
#pragma GCC unroll 14
    for (int r = 0; r < R; ++r) {
      const __m512 wv = _mm512_set1_ps(w[r * ldw + k]);
      c0[r] = _mm512_fmadd_ps(wv, a0, c0[r]);
      c1[r] = _mm512_fmadd_ps(wv, a1, c1[r]);
    }
  }
  const __mmask16 cols = first16(R);
  for (int h = 0; h < 2; ++h) {
    __m512 t[16];
    for (int r = 0; r < 16; ++r) t[r] = r < R ? (h == 0 ? c0[r] : c1[r]) : _mm512_setzero_ps();
    transpose16_regs(t);
    for (int j = 0; j < 16 && 16 * h + j < mr; ++j) {
      float* c = C + (16 * h + j) * ldc;
      const __m512 v = add ? _mm512_add_ps(t[j], _mm512_maskz_loadu_ps(cols, c)) : t[j];
      _mm512_mask_storeu_ps(c, cols, v);
    }
  }
}

// Both kernels are specialised for each count 1 .. 14 of their broadcast rows; one table per
// kernel picks the specialisation (index count - 1).
template <int... R>
struct RowCounts {};
template <class Counts>
struct Specialisations;
template <int... R>
struct Specialisations<RowCounts<R...>> {
  static constexpr void (*kernel[])(int64_t, const float*, const float*, float*, int64_t, int,
                                    bool) = {kernel_rows<R>...};
  static constexpr void (*kernel_wb[])(int64_t, const float*, int64_t, const float*, int64_t, float*, int64_t, int,
                                       bool) = {kernel_wb_rows<R>...};
};
using ByRows = Specialisations<RowCounts<1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14>>;
static_assert(MR == 14 && kWR == 14 && kWM == 32, "ByRows covers the packed tile and the broadcast rows");

void kernel(int64_t kc, const float* a, const float* b, float* C, int64_t ldc, int mr, int nr, bool add) {
  ByRows::kernel[mr - 1](kc, a, b, C, ldc, nr, add);
}

void kernel_wb(int64_t kc, const float* w, int64_t ldw, int nr, const float* at, int64_t ldat, float* C, int64_t ldc,
               int mr, bool add) {
  ByRows::kernel_wb[nr - 1](kc, w, ldw, at, ldat, C, ldc, mr, add);
}

const Kernels kAvx512{"avx512",         MR,     NR,      KC,       MC, NC, kWR, kWM, pack_a, pack_b_nt_t<Vec>,
                      pack_b_nn_t<Vec>, kernel, pack_at, kernel_wb};

}  // namespace

const Kernels& avx512_kernels() {
  return kAvx512;
}

void transpose16(const float* src, int64_t lds, float* dst, int64_t ldd) {
  __m512 r[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * lds);
  transpose16_regs(r);
  for (int j = 0; j < 16; ++j) _mm512_storeu_ps(dst + j * ldd, r[j]);
}

}  // namespace la::gemm_detail
