// ggml's block formats (see quant.h for the layouts). Dequantisation follows ggml's
// dequantize_row_* exactly, including the order of the float operations, so a matrix read from a
// GGUF file gives the same f32 values llama.cpp computes. Quantisation:
//   Q8_0, Q4_0: exactly ggml's quantize_row_q8_0_ref / quantize_row_q4_0_ref (bit-identical
//               blocks): Q8_0 d = amax/127, q = roundf(x/d) (half away from zero); Q4_0
//               d = max/-8 with max the signed value of largest magnitude (first one on ties),
//               q = min(15, (int8)(x/d + 8.5)) (truncation).
//   Q4_K, Q6_K: a plain round-to-nearest quantiser in ggml's structure, without the scale searches
//               of ggml's make_qkx2_quants / make_qx_quants (so the blocks are valid and close to,
//               but not bit-identical with, llama.cpp's):
//               Q4_K: each 32-value sub-block takes scale (max - min)/15 and min min(min(x), 0);
//                     scales and mins are quantised to 6 bits against the super-block's largest
//                     (d = max_scale/63, dmin = max_min/63), then every value is re-quantised
//                     against the stored (rounded) sub-block scale and min.
//               Q6_K: each 16-value sub-block takes scale -max/32 (max signed, as ggml's
//                     make_qx_quants with rmse_type 0), the 16 scales are quantised to int8 against
//                     the largest (d = -max_scale/128), then values are re-quantised against the
//                     stored scales.
#include "la/kernels/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "la/core/error.h"
#include "la/core/half.h"

namespace la {

namespace {

// Round half to even (the default rounding mode), like ggml's nearest_int.
inline int nearest_int(float v) {
  return static_cast<int>(std::nearbyint(v));
}

// ---------------------------------------------------------------------------------------- Q8_0

void dequantize_q8_0(const BlockQ8_0* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(x[i].d);
    for (int64_t j = 0; j < kQK8_0; ++j) y[i * kQK8_0 + j] = static_cast<float>(x[i].qs[j]) * d;
  }
}

void quantize_q8_0(const float* x, BlockQ8_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + i * kQK8_0;
    float amax = 0.0f;
    for (int64_t j = 0; j < kQK8_0; ++j) {
      const float a = std::fabs(xb[j]);
      amax = amax > a ? amax : a;
    }
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = f32_to_f16(d);
    for (int64_t j = 0; j < kQK8_0; ++j) y[i].qs[j] = static_cast<int8_t>(std::round(xb[j] * id));
  }
}

// ---------------------------------------------------------------------------------------- Q4_0

void dequantize_q4_0(const BlockQ4_0* x, float* y, int64_t nb) {
  constexpr int64_t half = kQK4_0 / 2;
  for (int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(x[i].d);
    for (int64_t j = 0; j < half; ++j) {
      const int x0 = (x[i].qs[j] & 0x0F) - 8;
      const int x1 = (x[i].qs[j] >> 4) - 8;
      y[i * kQK4_0 + j] = static_cast<float>(x0) * d;
      y[i * kQK4_0 + j + half] = static_cast<float>(x1) * d;
    }
  }
}

void quantize_q4_0(const float* x, BlockQ4_0* y, int64_t nb) {
  constexpr int64_t half = kQK4_0 / 2;
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + i * kQK4_0;
    float amax = 0.0f, max = 0.0f;
    for (int64_t j = 0; j < kQK4_0; ++j)
      if (amax < std::fabs(xb[j])) {
        amax = std::fabs(xb[j]);
        max = xb[j];
      }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = f32_to_f16(d);
    for (int64_t j = 0; j < half; ++j) {
      // (int8_t) truncates toward zero; the argument lies in [0, 16.5] for finite input.
      const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(xb[j] * id + 8.5f)));
      const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(xb[j + half] * id + 8.5f)));
      y[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

// ---------------------------------------------------------------------------------------- Q4_K

// Sub-block j's 6-bit scale and min from the 12 packed bytes: sub-blocks 0-3 keep theirs in the
// low 6 bits of bytes j (scale) and j+4 (min); sub-blocks 4-7 keep their low 4 bits in the
// nibbles of byte j+4 and their high 2 bits in the top bits of bytes j-4 (scale) and j (min).
inline void q4k_scale_min(int j, const uint8_t* q, int* sc, int* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

void dequantize_q4_k(const BlockQ4_K* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* q = x[i].qs;
    const float d = f16_to_f32(x[i].d);
    const float dmin = f16_to_f32(x[i].dmin);
    // 64 values per 32 bytes: sub-block 2p in the low nibbles, 2p+1 in the high nibbles.
    for (int p = 0; p < 4; ++p) {
      int sc, m;
      q4k_scale_min(2 * p, x[i].scales, &sc, &m);
      const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
      q4k_scale_min(2 * p + 1, x[i].scales, &sc, &m);
      const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0x0F) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
      q += 32;
    }
  }
}

void quantize_q4_k(const float* x, BlockQ4_K* y, int64_t nb) {
  constexpr int kSub = static_cast<int>(kQK_K / 32);
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    float scales[kSub], mins[kSub];
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < kSub; ++j) {
      const float* xs = x + 32 * j;
      float lo = xs[0], hi = xs[0];
      for (int l = 1; l < 32; ++l) {
        lo = std::min(lo, xs[l]);
        hi = std::max(hi, xs[l]);
      }
      if (lo > 0.0f) lo = 0.0f;  // the min term only ever subtracts
      scales[j] = hi > lo ? (hi - lo) / 15.0f : 0.0f;
      mins[j] = -lo;
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
    BlockQ4_K& b = y[i];
    std::memset(b.scales, 0, sizeof(b.scales));
    for (int j = 0; j < kSub; ++j) {
      const int ls = std::clamp(nearest_int(inv_scale * scales[j]), 0, 63);
      const int lm = std::clamp(nearest_int(inv_min * mins[j]), 0, 63);
      if (j < 4) {
        b.scales[j] = static_cast<uint8_t>(ls);
        b.scales[j + 4] = static_cast<uint8_t>(lm);
      } else {
        b.scales[j + 4] = static_cast<uint8_t>((ls & 0x0F) | ((lm & 0x0F) << 4));
        b.scales[j - 4] = static_cast<uint8_t>(b.scales[j - 4] | ((ls >> 4) << 6));
        b.scales[j] = static_cast<uint8_t>(b.scales[j] | ((lm >> 4) << 6));
      }
    }
    b.d = f32_to_f16(max_scale / 63.0f);
    b.dmin = f32_to_f16(max_min / 63.0f);
    // Re-quantise against what a reader will actually use.
    uint8_t L[kQK_K];
    const float d_all = f16_to_f32(b.d), dmin_all = f16_to_f32(b.dmin);
    for (int j = 0; j < kSub; ++j) {
      int sc, m;
      q4k_scale_min(j, b.scales, &sc, &m);
      const float d = d_all * static_cast<float>(sc);
      const float dm = dmin_all * static_cast<float>(m);
      for (int l = 0; l < 32; ++l)
        L[32 * j + l] = d != 0.0f ? static_cast<uint8_t>(std::clamp(nearest_int((x[32 * j + l] + dm) / d), 0, 15)) : 0;
    }
    uint8_t* q = b.qs;
    for (int j = 0; j < kQK_K; j += 64, q += 32)
      for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
  }
}

// ---------------------------------------------------------------------------------------- Q6_K

void dequantize_q6_k(const BlockQ6_K* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(x[i].d);
    const uint8_t* ql = x[i].ql;
    const uint8_t* qh = x[i].qh;
    const int8_t* sc = x[i].scales;
    // Each half of 128 values: 64 bytes of ql (values l and l+64 share byte l, l+32 and l+96
    // share byte l+32; low nibble first), 32 bytes of qh (2 bits each for l, l+32, l+64, l+96),
    // 8 scales (one per 16 values).
    for (int n = 0; n < kQK_K; n += 128) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
        y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
        y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
        y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
      }
      y += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}

void quantize_q6_k(const float* x, BlockQ6_K* y, int64_t nb) {
  constexpr int kSub = static_cast<int>(kQK_K / 16);
  constexpr float kGroupMaxEps = 1e-15f;  // ggml's GROUP_MAX_EPS: below it a group is all zero
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    BlockQ6_K& b = y[i];
    float scales[kSub];
    float max_scale = 0.0f, max_abs_scale = 0.0f;
    for (int ib = 0; ib < kSub; ++ib) {
      const float* xs = x + 16 * ib;
      float amax = 0.0f, max = 0.0f;
      for (int l = 0; l < 16; ++l)
        if (std::fabs(xs[l]) > amax) {
          amax = std::fabs(xs[l]);
          max = xs[l];
        }
      // The value of largest magnitude maps to -32, the end of [-32, 31] that has room for it.
      scales[ib] = amax < kGroupMaxEps ? 0.0f : max / -32.0f;
      if (std::fabs(scales[ib]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[ib]);
        max_scale = scales[ib];
      }
    }
    if (max_abs_scale < kGroupMaxEps) {  // an all-zero block
      std::memset(&b, 0, sizeof(b));
      continue;
    }
    const float iscale = -128.0f / max_scale;
    b.d = f32_to_f16(1.0f / iscale);
    for (int ib = 0; ib < kSub; ++ib)
      b.scales[ib] = static_cast<int8_t>(std::clamp(nearest_int(iscale * scales[ib]), -128, 127));
    int8_t L[kQK_K];
    const float d_all = f16_to_f32(b.d);
    for (int j = 0; j < kSub; ++j) {
      const float d = d_all * static_cast<float>(b.scales[j]);
      for (int l = 0; l < 16; ++l)
        L[16 * j + l] = static_cast<int8_t>(d != 0.0f ? std::clamp(nearest_int(x[16 * j + l] / d), -32, 31) + 32 : 32);
    }
    uint8_t* ql = b.ql;
    uint8_t* qh = b.qh;
    for (int j = 0; j < kQK_K; j += 128, ql += 64, qh += 32)
      for (int l = 0; l < 32; ++l) {
        const int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
        ql[l] = static_cast<uint8_t>((q1 & 0x0F) | ((q3 & 0x0F) << 4));
        ql[l + 32] = static_cast<uint8_t>((q2 & 0x0F) | ((q4 & 0x0F) << 4));
        qh[l] = static_cast<uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
      }
  }
}

void check_count(const char* what, DType t, int64_t n) {
  const int64_t bs = dtype_block_size(t);
  if (n < 0 || n % bs != 0)
    fail("{}: {} elements of {} are not a whole number of {}-element blocks", what, n, dtype_name(t), bs);
}

}  // namespace

void dequantize(DType t, const void* src, float* dst, int64_t n) {
  check_count("dequantize", t, n);
  switch (t) {
    case DType::Q8_0: return dequantize_q8_0(static_cast<const BlockQ8_0*>(src), dst, n / kQK8_0);
    case DType::Q4_0: return dequantize_q4_0(static_cast<const BlockQ4_0*>(src), dst, n / kQK4_0);
    case DType::Q4_K: return dequantize_q4_k(static_cast<const BlockQ4_K*>(src), dst, n / kQK_K);
    case DType::Q6_K: return dequantize_q6_k(static_cast<const BlockQ6_K*>(src), dst, n / kQK_K);
    case DType::F32:
    case DType::F16:
    case DType::BF16: return convert_to_f32(t, src, dst, n);
  }
}

void quantize(DType t, const float* src, void* dst, int64_t n) {
  check_count("quantize", t, n);
  switch (t) {
    case DType::Q8_0: return quantize_q8_0(src, static_cast<BlockQ8_0*>(dst), n / kQK8_0);
    case DType::Q4_0: return quantize_q4_0(src, static_cast<BlockQ4_0*>(dst), n / kQK4_0);
    case DType::Q4_K: return quantize_q4_k(src, static_cast<BlockQ4_K*>(dst), n / kQK_K);
    case DType::Q6_K: return quantize_q6_k(src, static_cast<BlockQ6_K*>(dst), n / kQK_K);
    case DType::F32: std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float)); return;
    case DType::F16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
      return;
    }
    case DType::BF16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
      return;
    }
  }
}

}  // namespace la
