// The integer GEMM for Q8_0 / Q4_0 weights against 8-bit activations (quant_dot.h's scheme) that
// quant_matmul_nt uses for prefill on CPUs with AVX512-VNNI (isa/quant_gemm_avx512vnni.cpp).
// Internal to quant_dot.cpp and tests.
//
// Weights are repacked per call, 32 rows at a time, into a panel that vpdpbusd reads directly:
// for each block of 32 columns, 16-lane registers whose lane l holds 4 consecutive unsigned
// weight bytes of row l (Q4_0: the raw nibble bytes, low and high nibbles being two 4-column
// steps; Q8_0: q + 128; Q4_K: the sub-block's nibbles 0..15 as bytes; Q6_K: its 6-bit q 0..63,
// 16 columns per block), and the 32 row scales as f32 (Q4_K: d·sc of the sub-block, then
// dmin·m; Q6_K: d·sc of the group). A register tile of MR activation rows x 32
// weight rows then accumulates each block's integer sum exactly in s32:
//   isum[m,n,b] = Σ_j u_w[n,b,j] q_x[m,b,j] + corr[m,b],
//   corr = -8 Σ_j q_x (Q4_0), -128 Σ_j q_x (Q8_0), 0 (Q4_K), -32 Σ_j q_x (Q6_K, over its 16)
// which is Σ_j q_w q_x exactly, and the float result is one fma per block, blocks in order:
//   y[m,n] = fma(float(isum[m,n,b]), fl(d_w[n,b] · d_x[m,b]), y[m,n])     for b = 0, 1, ...
// (Q6_K: d_x of the block of 32 holding the group)
// and for Q4_K then the min term:  y[m,n] = fma(-mw[n,b], fl(d_x[m,b] · float(bsum[m,b])), y[m,n]),
// so every output is a fixed sequence of operations, independent of M, MR and the threads.
#pragma once
#include <cstdint>

#include "la/tensor/dtype.h"

namespace la::quant_gemm_detail {

constexpr int64_t kNR = 32;  // weight rows per panel: two 16-lane halves
constexpr int kMR = 6;       // activation rows per register tile (12 s32 + 12 f32 accumulators)

// Bytes of one packed block column (32 f32 scales, then the quants) and of a panel of nb blocks.
// Q6_K's panel blocks are its 16-column groups (one scale each), two per block of 32.
inline int64_t panel_block_bytes(DType t) {
  return t == DType::Q4_0   ? kNR * 4 + kNR * 16
         : t == DType::Q8_0 ? kNR * 4 + kNR * 32
         : t == DType::Q4_K ? kNR * 8 + kNR * 32
                            : kNR * 4 + kNR * 16;
}
inline int64_t panel_blocks(DType t, int64_t nb) {  // nb: blocks of 32 columns
  return t == DType::Q6_K ? 2 * nb : nb;
}
inline int64_t panel_bytes(DType t, int64_t nb) {
  return panel_blocks(t, nb) * panel_block_bytes(t);
}

// Q8_0, Q4_0, Q4_K and Q6_K.
inline bool quant_gemm_type(DType t) {
  return t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q4_K || t == DType::Q6_K;
}
// The offset of the unsigned weight bytes: corr = -offset x (the panel block's Σ q_x).
inline int32_t quant_gemm_offset(DType t) {
  return t == DType::Q8_0 ? 128 : t == DType::Q4_0 ? 8 : t == DType::Q6_K ? 32 : 0;
}

// Rows [n0, n0 + nr) of w (nr <= kNR) -> panel (64-byte aligned, panel_bytes). Rows past nr get
// zero quants and zero scales.
void pack_panel(const WeightMatrix& w, int64_t n0, int64_t nr, void* panel);

// out[m * ldo + j] = y[m, j] for m < M, j < nr, with row m of the activations at qs + m * K,
// its block scales at d + m * nb, block sums at bsum + m * nb (K = 32 nb) and corrections at
// corr + m * panel_blocks(t, nb).
void panel_product(DType t, const void* panel, int64_t nb, const int8_t* qs, const float* d, const int32_t* corr,
                   const int32_t* bsum, int64_t M, float* out, int64_t ldo, int nr);

}  // namespace la::quant_gemm_detail
