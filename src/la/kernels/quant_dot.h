// Products of Q8_0 / Q4_0 weight matrices with activations quantised to 8 bits on the fly: the
// scheme of llama.cpp's ggml_vec_dot_q8_0_q8_0 / ggml_vec_dot_q4_0_q8_0, and matmul_nt's path for
// inference on such weights (decode and prefill). Per 32 activations (one block):
//   d_x = amax / 127,   q_x = round(x / d_x) in [-127, 127]          (round half to even)
//   y[n] = Σ_b d_w[n,b] d_x[b] · Σ_{j<32} q_w[n,b,j] q_x[b,j]         (Q4_0: q_w = nibble - 8)
// The inner sums are exact int32 (|Σ| <= 32·128·127), done with integer SIMD; only the scaling of
// each block and the sum over blocks are float. Against the exact product of the stored weights
// with the f32 activations the error is |Δy| <= Σ_b d_x[b]/2 · Σ_j |w_j| plus float rounding,
// since each q_x·d_x is within half a step of its x.
#pragma once
#include <cstdint>
#include <vector>

#include "la/tensor/dtype.h"

namespace la {

constexpr int64_t kQ8ActBlock = 32;

// matmul_nt takes this path for Q8_0/Q4_0 weights at any number of rows (decode and prefill)
// unless ExactActivations is in force (training, evaluation): integer dots read the weights in
// their stored form, and a weight row's unpacked blocks serve several activation rows at once.

// Q8_0, Q4_0, Q4_K and Q6_K.
bool quant_dot_supports(DType t);

// Weights interleaved by 8 rows ("x8"): the layouts the inference kernels read when a model was
// prepared for inference (ModelWeights::pack_interleaved sets WeightMatrix::packed). One 32-byte
// load then holds in its s32 lane n 4 weight bytes of row 8g+n, so one vpmaddubsw against an
// activation row's 4 bytes broadcast serves 8 weight rows and whole-block integer sums need no
// horizontal adds. Each layout holds the stored bits and takes the stored size (scales and
// quants only move). Groups of 8 rows g follow each other; within a group, its blocks in order:
//   Q4_0x8, per block b of 32 (144 bytes):
//     bytes  0..15    the 8 rows' f16 scales, row 8g first
//     bytes 16..143   for i = 0..3, the 8 rows' stored bytes qs[4i .. 4i+3], row by row: lane n
//                     holds row n's elements 4i..4i+3 (low nibbles) and 16+4i..19+4i (high)
//   Q8_0x8, per block b of 32 (272 bytes):
//     bytes  0..15    the 8 rows' f16 scales
//     bytes 16..271   for i = 0..7, the 8 rows' qs[4i .. 4i+3] (lane n: row n's elements 4i..4i+3)
//   Q4_Kx8, per super-block of 256 (1184 bytes, 8 x 148 against the stored 8 x 144):
//     bytes   0..15   the 8 rows' f16 d;  16..31 their f16 dmin
//     bytes  32..95   sub-block s's 6-bit scales, 8 bytes (one per row) for s = 0..7
//     bytes  96..159  the same for the mins
//     bytes 160..     for p = 0..3, i = 0..7, the 8 rows' stored bytes qs[32p + 4i .. +3]: lane n
//                     holds row n's elements 4i..4i+3 of sub-block 2p (low nibbles) and 2p+1 (high)
//   Q6_Kx8, per super-block of 256 (1680 bytes = 8 x 210):
//     bytes   0..15   the 8 rows' f16 d
//     then per group g = 0..15 of 16 elements (104 bytes each, at 16 + 104 g):
//       bytes  0..7   the 8 rows' int8 scales of group g
//       bytes  8..39  lane n byte t: low 4 bits of row n's element 16g+t (low nibble), 16g+4+t (high)
//       bytes 40..71  the same for elements 16g+8+t and 16g+12+t
//       bytes 72..103 lane n byte t: the 2 high bits of elements 16g+t, +4+t, +8+t, +12+t in bits
//                     0-1, 2-3, 4-5, 6-7
// Products on them follow the integer GEMM's sequence (isa/quant_gemm_kernels.h) for every output:
//   y[m,n] = fma(float(isum[m,n,b]), fl(d_w[n,b] · d_x[m,b]), y[m,n])   for b = 0, 1, ... from 0
// (Q4_K: d_w = fl(d·sc), then y = fma(-fl(dmin·m), fl(d_x · float(bsum)), y) each block; Q6_K:
// per group of 16, d_w = fl(d·sc_g) and d_x of the block of 32 holding it) with
// isum = Σ_j q_w q_x exact, so a row's result is the same bits alone, in a batch of any size, in
// the GEMM and on every instruction set.
constexpr int64_t kX8Rows = 8;
// Bytes of one interleaved block (Q4_0, Q8_0: 32 columns; Q4_K, Q6_K: 256) of a group of 8 rows.
inline int64_t x8_block_bytes(DType t) {
  return t == DType::Q4_0 ? 144 : t == DType::Q8_0 ? 272 : t == DType::Q4_K ? 1184 : 1680;
}
// Q8_0, Q4_0, Q4_K or Q6_K with a multiple of 8 rows.
bool x8_packable(const WeightMatrix& w);
// The interleaved size of w (x8_packable).
size_t x8_bytes(const WeightMatrix& w);
// w (x8_packable) -> dst, x8_bytes(w) bytes; threaded.
void pack_x8(const WeightMatrix& w, void* dst);

// Quantised activations, M rows of `cols` values stored back to back, nb = cols / 32 blocks a
// row. Row m has
//   qs   [m*cols, (m+1)*cols)       the int8 values
//   d    [m*nb, (m+1)*nb)           the scale of each block
//   d8   [m*cols/4, (m+1)*cols/4)   each d repeated 8 times (one per s32 lane of the SIMD kernels)
//   off4 [m*cols/4, (m+1)*cols/4)   -8 x the sum of each 4 consecutive q: Q4_0's per-lane offset,
//                                   Σ (nibble - 8) q = Σ nibble q + off4 (|off4| <= 4064)
//   bsum [m*nb, (m+1)*nb)           the sum of each block's 32 q (Q4_K's mins, the integer GEMM)
// The kernels only read it; quantize_row writes one row.
struct Q8Activations {
  int8_t* qs = nullptr;
  float* d = nullptr;
  float* d8 = nullptr;
  int16_t* off4 = nullptr;
  int32_t* bsum = nullptr;
  int64_t cols = 0;
};

// out[m*N + n] = x[m,:] · W[n,:] for m < M with x quantised as above (once per call, into
// per-thread scratch that only grows), weight rows split over threads. W is Q8_0, Q4_0, Q4_K or
// Q6_K; a matrix with w.packed takes the x8 kernels below the integer GEMM's rows.
// From quant_gemm_min_rows(type) rows on, where quant_gemm_available(), the products are an integer GEMM
// on weights repacked per call (isa/quant_gemm_kernels.h: each block's integer sum whole, then
// one fma per block); below, or without VNNI, the kernels of quant_dot_kernels() (per-lane sums).
// Both are within the bound above; they differ only in float rounding.
void quant_matmul_nt(float* out, const float* x, const WeightMatrix& w, int64_t M);

// Several products of one input, outs[i][M, ws[i]->rows] = x · W_i^T (every W_i with x's
// columns, i < n <= kMaxSharedProducts): the same bits as quant_matmul_nt on each, with x
// quantised once and the interleaved products in one parallel loop (a layer's q, k and v; its
// w1 and w3).
constexpr int64_t kMaxSharedProducts = 4;
void quant_matmul_nt_shared(const float* x, int64_t M, float* const* outs, const WeightMatrix* const* ws, int64_t n);

// Where the integer GEMM's per-call repacking pays (measured at K = N = 2048, one thread: Q4_0
// 0.9x the per-row kernels at 4 rows, 2.0x at 6, 4.1x at 64; Q8_0, twice the bytes to repack,
// 0.93x at 11 rows, 1.9x at 12, 3.0x at 64; Q4_K 1.0x at 8, 2.6x at 64).
inline int64_t quant_gemm_min_rows(DType t) {
  return t == DType::Q8_0 ? 12 : t == DType::Q4_0 ? 6 : 8;  // Q4_K, Q6_K: 8
}
// The instruction set in force is avx512vnni (core/runtime.h; AVX512-F/BW/VL + VNNI + F16C).
bool quant_gemm_available();

// Whether matmul_nt may quantise activations (per thread; on by default). Training must turn it
// off around its passes (TrainGraph::run: the adapter prompt projections have M = adapter length
// and the last logits chunk may be short) so that the forward is the exact product the backward
// differentiates: finite differences of a rounded function are steps, not derivatives.
bool quantized_activations_allowed();
class ExactActivations {  // RAII: exact products on this thread while it lives
 public:
  ExactActivations();
  ~ExactActivations();
  ExactActivations(const ExactActivations&) = delete;
  ExactActivations& operator=(const ExactActivations&) = delete;

 private:
  bool saved_;
};

// One instruction-set variant of the kernels. All variants give bit-identical quantised
// activations and integer block sums; the float results differ only in summation order.
struct QuantDotKernels {
  const char* name;  // "generic", "avx2", "avx512" (AVX512-BW maddubs), "avx512vnni" (vpdpbusd)
  // x[out.cols] -> the first row of `out`; cols % 32 == 0.
  void (*quantize_row)(const float* x, const Q8Activations& out);
  // isum[b] = Σ_j q_w[b,j] q_x[b,j] for the cols/32 blocks of one weight row (Q8_0 or Q4_0) and
  // the first row of x.
  void (*block_dots)(DType t, const void* wrow, const Q8Activations& x, int32_t* isum);
  // out[m*ldo + n] for n in [n0, n1), m < M; serial (quant_matmul_nt does the threading).
  void (*rows)(float* out, int64_t ldo, const WeightMatrix& w, int64_t n0, int64_t n1, const Q8Activations& x,
               int64_t M);
  // The same on w's interleaved copy (w.packed, x8 layouts above) for the row groups [g0, g1):
  // columns 8 g0 .. 8 g1 - 1 of out.
  void (*rows_x8)(float* out, int64_t ldo, const WeightMatrix& w, int64_t g0, int64_t g1, const Q8Activations& x,
                  int64_t M);
};

// The variants this CPU can run, generic first.
std::vector<const QuantDotKernels*> quant_dot_variants();
// The variant quant_matmul_nt uses: the one for the instruction set in force (core/runtime.h: the
// best by CPUID unless LA_ISA says otherwise; avx512 means AVX512-BW without VNNI).
const QuantDotKernels& quant_dot_kernels();

}  // namespace la
