// The integer Q8_0 / Q4_0 / Q4_K / Q6_K GEMM of quant_gemm_kernels.h, built with the AVX-512
// flags plus AVX512-VNNI (src/CMakeLists.txt, *_avx512vnni.cpp); quant_dot.cpp calls it only
// where CPUID reports AVX512-VNNI. Only intrinsics and plain loops here (no std:: templates: code
// instantiated with these flags must not leak into other translation units).
// GCC 12 warns about the deliberately undefined upper lanes inside its own AVX-512 intrinsics
// (GCC bug 105593, fixed in 13) wherever they are inlined: off for this file.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <cstddef>
#include <cstring>

#include "la/kernels/isa/quant_gemm_kernels.h"
#include "la/kernels/quant.h"

namespace la::quant_gemm_detail {

namespace {

#include "la/kernels/isa/avx512_helpers.inc"

inline int32_t load32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// One 16-row half of a block column: for each 4-byte step s < steps, the register whose lane l is
// the 4 bytes at byte offset `first + 4 s` of row l's block (rows at `stride` bytes, `valid` mask).
inline void gather_half(const uint8_t* block0, int64_t stride, __mmask16 valid, int steps, int first, bool flip,
                        uint8_t* dst) {
  const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                         _mm512_set1_epi32(static_cast<int>(stride)));
  const __m512i x80 = _mm512_set1_epi32(static_cast<int>(0x80808080u));
  for (int s = 0; s < steps; ++s) {
    __m512i v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), valid, idx, block0 + first + 4 * s, 1);
    if (flip) v = _mm512_mask_xor_epi32(v, valid, v, x80);  // q + 128 as unsigned bytes
    _mm512_store_si512(dst + s * 64, v);
  }
}

// The same for a full half without gathers (half the time): each row's 16-byte chunks loaded
// four rows to a register (register i, 128-bit lane j: row 4j + i), then a 4 x 4 dword transpose
// inside every 128-bit lane, which puts row 4j + i in lane 4j + i of each step's register.
inline void transpose_half(const uint8_t* block0, int64_t stride, int steps, int first, bool flip, uint8_t* dst) {
  const __m512i x80 = _mm512_set1_epi32(static_cast<int>(0x80808080u));
  for (int c = 0; c < steps / 4; ++c) {  // chunk c holds steps 4c .. 4c + 3
    __m512i y[4];
    for (int i = 0; i < 4; ++i) {
      const uint8_t* p = block0 + first + 16 * c + i * stride;
      __m512i v = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
      v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 4 * stride)), 1);
      v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8 * stride)), 2);
      y[i] = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 12 * stride)), 3);
    }
    const __m512i t0 = _mm512_unpacklo_epi32(y[0], y[1]), t1 = _mm512_unpackhi_epi32(y[0], y[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(y[2], y[3]), t3 = _mm512_unpackhi_epi32(y[2], y[3]);
    __m512i o[4] = {_mm512_unpacklo_epi64(t0, t2), _mm512_unpackhi_epi64(t0, t2), _mm512_unpacklo_epi64(t1, t3),
                    _mm512_unpackhi_epi64(t1, t3)};
    for (int s = 0; s < 4; ++s) {
      if (flip) o[s] = _mm512_xor_si512(o[s], x80);
      _mm512_store_si512(dst + (4 * c + s) * 64, o[s]);
    }
  }
}

template <class Block, bool Q4>
void pack_t(const WeightMatrix& w, int64_t n0, int64_t nr, uint8_t* panel) {
  const int64_t nb = w.cols / 32;
  const auto* W = static_cast<const Block*>(w.data);
  const int64_t row_bytes = nb * static_cast<int64_t>(sizeof(Block));
  constexpr int steps = Q4 ? 4 : 8;  // 4-byte steps per block per half
  constexpr int64_t block_bytes = kNR * 4 + kNR * (Q4 ? 16 : 32);
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* pb = panel + b * block_bytes;
    auto* scales = reinterpret_cast<float*>(pb);
    if (nr == kNR) {  // the f16 scales at offset 0 of each row's block, 16 rows per gather
      const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                             _mm512_set1_epi32(static_cast<int>(row_bytes)));
      for (int h = 0; h < 2; ++h) {
        const __m512i raw = _mm512_i32gather_epi32(idx, W + (n0 + 16 * h) * nb + b, 1);
        _mm512_store_ps(scales + 16 * h, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(raw)));
      }
    } else {
      for (int64_t j = 0; j < kNR; ++j) scales[j] = j < nr ? _cvtsh_ss(W[(n0 + j) * nb + b].d) : 0.0f;
    }
    for (int h = 0; h < 2; ++h) {
      const int64_t rows = nr - 16 * h;
      const __mmask16 valid = first16(rows);
      uint8_t* dst = pb + kNR * 4 + h * steps * 64;
      if (valid == 0) {
        std::memset(dst, 0, static_cast<size_t>(steps) * 64);
        continue;
      }
      const auto* block0 = reinterpret_cast<const uint8_t*>(W + (n0 + 16 * h) * nb + b);
      const int first = static_cast<int>(offsetof(Block, qs));
      if (valid == 0xFFFF)
        transpose_half(block0, row_bytes, steps, first, !Q4, dst);
      else
        gather_half(block0, row_bytes, valid, steps, first, !Q4, dst);
    }
  }
}

// The K-quant packers read 32 rows a super-block at a time: 32 interleaved streams, too many for
// the hardware prefetchers. Each row's super-block two ahead is requested while this one is
// unpacked (`left`: super-blocks left in the row, this one included).
template <class Block>
inline void prefetch_ahead(const Block* blk, int64_t left) {
  if (left <= 2) return;
  const char* p = reinterpret_cast<const char*>(blk + 2);
  for (size_t off = 0; off < sizeof(Block); off += 64) _mm_prefetch(p + off, _MM_HINT_T0);
  _mm_prefetch(p + sizeof(Block) - 1, _MM_HINT_T0);
}

// Q4_K: per super-block (8 blocks of 32), each row's scales d·sc and mins dmin·m, and its
// nibbles widened to one byte each in a 32-row scratch, from which each block is transposed as
// Q8_0's bytes are (rows past nr stay zero).
void pack_q4k(const WeightMatrix& w, int64_t n0, int64_t nr, uint8_t* panel) {
  const int64_t nsb = w.cols / 256;
  const auto* W = static_cast<const BlockQ4_K*>(w.data);
  constexpr int64_t block_bytes = kNR * 8 + kNR * 32;
  alignas(64) uint8_t bytes[8][kNR][32];
  if (nr < kNR) std::memset(bytes, 0, sizeof(bytes));  // rows past nr stay zero; the rest is rewritten
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  for (int64_t i = 0; i < nsb; ++i) {
    uint8_t* pb0 = panel + 8 * i * block_bytes;
    for (int64_t j = 0; j < kNR; ++j) {
      float* dw = reinterpret_cast<float*>(pb0) + j;  // block s: dw at s * block_bytes, mw 32 floats on
      if (j >= nr) {
        for (int s = 0; s < 8; ++s) dw[s * block_bytes / 4] = dw[s * block_bytes / 4 + kNR] = 0.0f;
        continue;
      }
      const BlockQ4_K& blk = W[(n0 + j) * nsb + i];
      prefetch_ahead(&blk, nsb - i);
      const float d = _cvtsh_ss(blk.d), dmin = _cvtsh_ss(blk.dmin);
      const uint8_t* q = blk.scales;
      for (int s = 0; s < 8; ++s) {
        const int sc = s < 4 ? q[s] & 63 : (q[s + 4] & 0x0F) | ((q[s - 4] >> 6) << 4);
        const int m = s < 4 ? q[s + 4] & 63 : (q[s + 4] >> 4) | ((q[s] >> 6) << 4);
        dw[s * block_bytes / 4] = d * static_cast<float>(sc);
        dw[s * block_bytes / 4 + kNR] = dmin * static_cast<float>(m);
      }
      for (int p = 0; p < 4; ++p) {  // sub-block 2p in the low nibbles of 32 bytes, 2p+1 in the high
        const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qs + 32 * p));
        _mm256_store_si256(reinterpret_cast<__m256i*>(bytes[2 * p][j]), _mm256_and_si256(raw, low4));
        _mm256_store_si256(reinterpret_cast<__m256i*>(bytes[2 * p + 1][j]),
                           _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4));
      }
    }
    for (int s = 0; s < 8; ++s)
      for (int h = 0; h < 2; ++h)
        transpose_half(bytes[s][16 * h], 32, 8, 0, false, pb0 + s * block_bytes + kNR * 8 + h * 8 * 64);
  }
}

// Q6_K: per super-block (16 groups of 16), each row's 256 six-bit values as bytes (the same
// unpacking as quant_dot's Q6_K kernel: 64 bytes of ql and 32 of qh give 128 values) and its
// group scales d·sc; each group is then transposed as 4-byte steps (rows past nr stay zero).
void pack_q6k(const WeightMatrix& w, int64_t n0, int64_t nr, uint8_t* panel) {
  const int64_t nsb = w.cols / 256;
  const auto* W = static_cast<const BlockQ6_K*>(w.data);
  constexpr int64_t block_bytes = kNR * 4 + kNR * 16;
  alignas(64) uint8_t bytes[kNR][256];
  if (nr < kNR) std::memset(bytes, 0, sizeof(bytes));  // rows past nr stay zero; the rest is rewritten
  const __m512i low4 = _mm512_set1_epi8(0x0F), two = _mm512_set1_epi8(3), hi2 = _mm512_set1_epi8(0x30);
  for (int64_t i = 0; i < nsb; ++i) {
    uint8_t* pb0 = panel + 16 * i * block_bytes;
    for (int64_t j = 0; j < kNR; ++j) {
      float* dw = reinterpret_cast<float*>(pb0) + j;  // group g: at g * block_bytes
      if (j >= nr) {
        for (int g = 0; g < 16; ++g) dw[g * block_bytes / 4] = 0.0f;
        continue;
      }
      const BlockQ6_K& blk = W[(n0 + j) * nsb + i];
      prefetch_ahead(&blk, nsb - i);
      const float d = _cvtsh_ss(blk.d);
      for (int g = 0; g < 16; ++g) dw[g * block_bytes / 4] = d * static_cast<float>(blk.scales[g]);
      for (int h = 0; h < 2; ++h) {
        const __m512i ql = _mm512_loadu_si512(blk.ql + 64 * h);
        const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qh + 32 * h));
        const __m512i hv = _mm512_inserti64x4(_mm512_castsi256_si512(qh), qh, 1);
        const __m512i hb = _mm512_mask_srli_epi16(hv, 0xFFFF0000u, hv, 2);
        const __m512i qa = _mm512_or_si512(_mm512_and_si512(ql, low4), _mm512_slli_epi16(_mm512_and_si512(hb, two), 4));
        const __m512i qb = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), low4), _mm512_and_si512(hb, hi2));
        _mm512_store_si512(bytes[j] + 128 * h, qa);
        _mm512_store_si512(bytes[j] + 128 * h + 64, qb);
      }
    }
    for (int g = 0; g < 16; ++g)
      for (int h = 0; h < 2; ++h)
        transpose_half(&bytes[16 * h][16 * g], 256, 4, 0, false, pb0 + g * block_bytes + kNR * 4 + h * 4 * 64);
  }
}

// MR activation rows x 32 weight rows over all blocks (see quant_gemm_kernels.h).
enum class Kind { kQ4_0, kQ8_0, kQ4_K, kQ6_K };

template <int MR, Kind kind>
void tile(const uint8_t* panel, int64_t nb, const int8_t* qs, int64_t K, const float* d, const int32_t* corr,
          const int32_t* bsum, float* out, int64_t ldo, int nr) {
  constexpr bool Q4 = kind == Kind::kQ4_0, mins = kind == Kind::kQ4_K, q6 = kind == Kind::kQ6_K;
  constexpr int steps = Q4 || q6 ? 4 : 8;
  constexpr int64_t cols = q6 ? 16 : 32;  // columns of a panel block
  constexpr int64_t scale_bytes = kNR * (mins ? 8 : 4), block_bytes = scale_bytes + kNR * (Q4 || q6 ? 16 : 32);
  const int64_t nbp = q6 ? 2 * nb : nb;  // panel blocks (nb: blocks of 32 columns)
  __m512 f[MR][2];
  for (int r = 0; r < MR; ++r) f[r][0] = f[r][1] = _mm512_setzero_ps();
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  for (int64_t b = 0; b < nbp; ++b) {
    const uint8_t* pb = panel + b * block_bytes;
    const uint8_t* q = pb + scale_bytes;
    __m512i a[MR][2];
    for (int r = 0; r < MR; ++r) a[r][0] = a[r][1] = _mm512_set1_epi32(corr[r * nbp + b]);
    const int8_t* xb = qs + b * cols;
    const int64_t bx = q6 ? b / 2 : b;  // the activation block of 32
    if (Q4) {
      for (int s = 0; s < steps; ++s) {
        const __m512i raw0 = _mm512_load_si512(q + s * 64), raw1 = _mm512_load_si512(q + (steps + s) * 64);
        const __m512i lo0 = _mm512_and_si512(raw0, low4), lo1 = _mm512_and_si512(raw1, low4);
        const __m512i hi0 = _mm512_and_si512(_mm512_srli_epi16(raw0, 4), low4);
        const __m512i hi1 = _mm512_and_si512(_mm512_srli_epi16(raw1, 4), low4);
        for (int r = 0; r < MR; ++r) {
          // Low nibbles are columns 4s..4s+3 of the block, high nibbles 16+4s..16+4s+3.
          const __m512i xl = _mm512_set1_epi32(load32(xb + r * K + 4 * s));
          const __m512i xh = _mm512_set1_epi32(load32(xb + r * K + 16 + 4 * s));
          a[r][0] = _mm512_dpbusd_epi32(a[r][0], lo0, xl);
          a[r][1] = _mm512_dpbusd_epi32(a[r][1], lo1, xl);
          a[r][0] = _mm512_dpbusd_epi32(a[r][0], hi0, xh);
          a[r][1] = _mm512_dpbusd_epi32(a[r][1], hi1, xh);
        }
      }
    } else {
      for (int s = 0; s < steps; ++s) {
        const __m512i w0 = _mm512_load_si512(q + s * 64), w1 = _mm512_load_si512(q + (steps + s) * 64);
        for (int r = 0; r < MR; ++r) {
          const __m512i x = _mm512_set1_epi32(load32(xb + r * K + 4 * s));
          a[r][0] = _mm512_dpbusd_epi32(a[r][0], w0, x);
          a[r][1] = _mm512_dpbusd_epi32(a[r][1], w1, x);
        }
      }
    }
    const __m512 dw0 = _mm512_load_ps(pb), dw1 = _mm512_load_ps(pb + 64);
    for (int r = 0; r < MR; ++r) {
      const __m512 dx = _mm512_set1_ps(d[r * nb + bx]);
      f[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a[r][0]), _mm512_mul_ps(dw0, dx), f[r][0]);
      f[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a[r][1]), _mm512_mul_ps(dw1, dx), f[r][1]);
    }
    if (mins) {
      const __m512 mw0 = _mm512_load_ps(pb + 128), mw1 = _mm512_load_ps(pb + 192);
      for (int r = 0; r < MR; ++r) {
        const __m512 xs = _mm512_set1_ps(d[r * nb + b] * static_cast<float>(bsum[r * nb + b]));
        f[r][0] = _mm512_fnmadd_ps(mw0, xs, f[r][0]);
        f[r][1] = _mm512_fnmadd_ps(mw1, xs, f[r][1]);
      }
    }
  }
  const __mmask16 m0 = first16(nr), m1 = first16(nr - 16);
  for (int r = 0; r < MR; ++r) {
    _mm512_mask_storeu_ps(out + r * ldo, m0, f[r][0]);
    _mm512_mask_storeu_ps(out + r * ldo + 16, m1, f[r][1]);
  }
}

template <Kind kind>
void product_t(const uint8_t* panel, int64_t nb, const int8_t* qs, const float* d, const int32_t* corr,
               const int32_t* bsum, int64_t M, float* out, int64_t ldo, int nr) {
  const int64_t K = nb * 32;
  const int64_t nbp = kind == Kind::kQ6_K ? 2 * nb : nb;  // corrections per row
  int64_t m = 0;
  for (; m + kMR <= M; m += kMR)
    tile<kMR, kind>(panel, nb, qs + m * K, K, d + m * nb, corr + m * nbp, bsum + m * nb, out + m * ldo, ldo, nr);
  static_assert(kMR == 6, "one case per remainder below");
  const int8_t* xq = qs + m * K;
  const float* xd = d + m * nb;
  const int32_t* xc = corr + m * nbp;
  const int32_t* xs = bsum + m * nb;
  float* o = out + m * ldo;
  switch (M - m) {
    case 1: tile<1, kind>(panel, nb, xq, K, xd, xc, xs, o, ldo, nr); break;
    case 2: tile<2, kind>(panel, nb, xq, K, xd, xc, xs, o, ldo, nr); break;
    case 3: tile<3, kind>(panel, nb, xq, K, xd, xc, xs, o, ldo, nr); break;
    case 4: tile<4, kind>(panel, nb, xq, K, xd, xc, xs, o, ldo, nr); break;
    case 5: tile<5, kind>(panel, nb, xq, K, xd, xc, xs, o, ldo, nr); break;
    default: break;
  }
}

}  // namespace

void pack_panel(const WeightMatrix& w, int64_t n0, int64_t nr, void* panel) {
  auto* p = static_cast<uint8_t*>(panel);
  if (w.type == DType::Q8_0)
    pack_t<BlockQ8_0, false>(w, n0, nr, p);
  else if (w.type == DType::Q4_0)
    pack_t<BlockQ4_0, true>(w, n0, nr, p);
  else if (w.type == DType::Q4_K)
    pack_q4k(w, n0, nr, p);
  else
    pack_q6k(w, n0, nr, p);
}

void panel_product(DType t, const void* panel, int64_t nb, const int8_t* qs, const float* d, const int32_t* corr,
                   const int32_t* bsum, int64_t M, float* out, int64_t ldo, int nr) {
  const auto* p = static_cast<const uint8_t*>(panel);
  if (t == DType::Q8_0)
    product_t<Kind::kQ8_0>(p, nb, qs, d, corr, bsum, M, out, ldo, nr);
  else if (t == DType::Q4_0)
    product_t<Kind::kQ4_0>(p, nb, qs, d, corr, bsum, M, out, ldo, nr);
  else if (t == DType::Q4_K)
    product_t<Kind::kQ4_K>(p, nb, qs, d, corr, bsum, M, out, ldo, nr);
  else
    product_t<Kind::kQ6_K>(p, nb, qs, d, corr, bsum, M, out, ldo, nr);
}

}  // namespace la::quant_gemm_detail
