#include "la/kernels/quant_dot.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "la/core/cpu.h"
#include "la/core/error.h"
#include "la/core/memory.h"
#include "la/core/runtime.h"
#include "la/kernels/isa/quant_gemm_kernels.h"
#include "la/kernels/quant.h"

namespace la {

// The per-ISA builds of src/la/kernels/isa/quant_dot_impl.inc.
#define LA_DECLARE_QUANT_DOT(isa)                                                                      \
  namespace isa {                                                                                      \
  void quantize_row(const float*, const Q8Activations&);                                               \
  void block_dots(DType, const void*, const Q8Activations&, int32_t*);                                 \
  void rows(float*, int64_t, const WeightMatrix&, int64_t, int64_t, const Q8Activations&, int64_t);    \
  void rows_x8(float*, int64_t, const WeightMatrix&, int64_t, int64_t, const Q8Activations&, int64_t); \
  const QuantDotKernels kQuantDot{#isa, quantize_row, block_dots, rows, rows_x8};                      \
  }
LA_DECLARE_QUANT_DOT(generic)
LA_DECLARE_QUANT_DOT(avx2)
LA_DECLARE_QUANT_DOT(avx512)
LA_DECLARE_QUANT_DOT(avx512vnni)

namespace {

thread_local bool t_quantized_activations = true;

constexpr int64_t kRowChunk = 16;  // weight rows per task (~50 KiB of Q4_0 at K = 5632)

// The integer GEMM (isa/quant_gemm_kernels.h) on activations already quantised into `a`:
// 32-row panels of W split over threads, each packed once and used by all M rows.
void quant_gemm_nt(float* out, const Q8Activations& a, const WeightMatrix& w, int64_t M) {
  namespace qg = quant_gemm_detail;
  const int64_t N = w.rows, K = w.cols, nb = K / kQ8ActBlock;
  // corr[m,b] = -offset x Σ_j q_x: turns the unsigned weight bytes back into the signed q_w.
  const int64_t nbp = qg::panel_blocks(w.type, nb);  // Q6_K: groups of 16
  thread_local std::vector<int32_t> corr;
  if (corr.size() < static_cast<size_t>(M * nbp)) corr.resize(static_cast<size_t>(M * nbp));
  const int32_t offset = qg::quant_gemm_offset(w.type);
  if (nbp == nb) {
    for (int64_t i = 0; i < M * nb; ++i) corr[static_cast<size_t>(i)] = -offset * a.bsum[i];
  } else {
    for (int64_t i = 0; i < M * nbp; ++i) {
      int32_t s = 0;
      for (int64_t j = 0; j < 16; ++j) s += a.qs[i * 16 + j];
      corr[static_cast<size_t>(i)] = -offset * s;
    }
  }
  const int64_t panels = (N + qg::kNR - 1) / qg::kNR;
  const size_t bytes = static_cast<size_t>(qg::panel_bytes(w.type, nb));
  const int32_t* c = corr.data();
  const int threads = static_cast<int>(std::min<int64_t>(omp_get_max_threads(), panels));
#pragma omp parallel num_threads(threads) if (threads > 1 && M * N * K >= (1 << 20))
  {
    thread_local AlignedScratch panel;
    void* p = panel.get<uint8_t>(bytes);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < panels; ++i) {
      const int64_t n0 = i * qg::kNR, nr = std::min(qg::kNR, N - n0);
      qg::pack_panel(w, n0, nr, p);
      qg::panel_product(w.type, p, nb, a.qs, a.d, c, a.bsum, M, out + n0, N, static_cast<int>(nr));
    }
  }
}

}  // namespace

bool x8_packable(const WeightMatrix& w) {
  return quant_dot_supports(w.type) && w.rows > 0 && w.rows % kX8Rows == 0 && w.cols % dtype_block_size(w.type) == 0;
}

size_t x8_bytes(const WeightMatrix& w) {
  return static_cast<size_t>(w.rows / kX8Rows * (w.cols / dtype_block_size(w.type)) * x8_block_bytes(w.type));
}

namespace {

// Row n (0..7) of a group's block -> its place in the x8 block o (layouts in quant_dot.h).
void pack_x8_row(const BlockQ4_0& blk, int64_t n, uint8_t* o) {
  std::memcpy(o + 2 * n, &blk.d, 2);
  for (int i = 0; i < 4; ++i) std::memcpy(o + 16 + 32 * i + 4 * n, blk.qs + 4 * i, 4);
}

void pack_x8_row(const BlockQ8_0& blk, int64_t n, uint8_t* o) {
  std::memcpy(o + 2 * n, &blk.d, 2);
  for (int i = 0; i < 8; ++i) std::memcpy(o + 16 + 32 * i + 4 * n, blk.qs + 4 * i, 4);
}

void pack_x8_row(const BlockQ4_K& blk, int64_t n, uint8_t* o) {
  std::memcpy(o + 2 * n, &blk.d, 2);
  std::memcpy(o + 16 + 2 * n, &blk.dmin, 2);
  const uint8_t* q = blk.scales;  // the 6-bit scale and min of sub-block s (quant.h)
  for (int sb = 0; sb < 8; ++sb) {
    o[32 + 8 * sb + n] = static_cast<uint8_t>(sb < 4 ? q[sb] & 63 : (q[sb + 4] & 0x0F) | ((q[sb - 4] >> 6) << 4));
    o[96 + 8 * sb + n] = static_cast<uint8_t>(sb < 4 ? q[sb + 4] & 63 : (q[sb + 4] >> 4) | ((q[sb] >> 6) << 4));
  }
  for (int p = 0; p < 4; ++p)
    for (int i = 0; i < 8; ++i) std::memcpy(o + 160 + 256 * p + 32 * i + 4 * n, blk.qs + 32 * p + 4 * i, 4);
}

void pack_x8_row(const BlockQ6_K& blk, int64_t n, uint8_t* o) {
  std::memcpy(o + 2 * n, &blk.d, 2);
  // Element e's 6-bit value, in quant.h's layout: each half of 128 keeps elements l, l+32 in the
  // low nibbles of ql bytes l, l+32 and l+64, l+96 in their high ones; qh byte l their top bits.
  const auto low4 = [&](int e) {
    const int h = e / 128, r = e % 128, l = r % 32, quarter = r / 32;
    const uint8_t v = blk.ql[64 * h + l + (quarter % 2) * 32];
    return quarter < 2 ? v & 0x0F : v >> 4;
  };
  const auto high2 = [&](int e) {
    const int h = e / 128, r = e % 128;
    return (blk.qh[32 * h + r % 32] >> (2 * (r / 32))) & 3;
  };
  for (int g = 0; g < 16; ++g) {
    uint8_t* og = o + 16 + 104 * g;
    og[n] = static_cast<uint8_t>(blk.scales[g]);
    for (int t = 0; t < 4; ++t) {
      const int e = 16 * g + t;
      og[8 + 4 * n + t] = static_cast<uint8_t>(low4(e) | (low4(e + 4) << 4));
      og[40 + 4 * n + t] = static_cast<uint8_t>(low4(e + 8) | (low4(e + 12) << 4));
      og[72 + 4 * n + t] =
          static_cast<uint8_t>(high2(e) | (high2(e + 4) << 2) | (high2(e + 8) << 4) | (high2(e + 12) << 6));
    }
  }
}

template <class Block>
void pack_x8_t(const WeightMatrix& w, uint8_t* out) {
  const int64_t nb = w.cols / dtype_block_size(w.type), groups = w.rows / kX8Rows, bb = x8_block_bytes(w.type);
  const auto* W = static_cast<const Block*>(w.data);
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t b = 0; b < nb; ++b)
      for (int64_t n = 0; n < kX8Rows; ++n) pack_x8_row(W[(g * kX8Rows + n) * nb + b], n, out + (g * nb + b) * bb);
}

}  // namespace

void pack_x8(const WeightMatrix& w, void* dst) {
  if (!x8_packable(w)) fail("pack_x8: a Q8_0, Q4_0, Q4_K or Q6_K matrix with a multiple of 8 rows is needed");
  auto* out = static_cast<uint8_t*>(dst);
  switch (w.type) {
    case DType::Q4_0: return pack_x8_t<BlockQ4_0>(w, out);
    case DType::Q8_0: return pack_x8_t<BlockQ8_0>(w, out);
    case DType::Q4_K: return pack_x8_t<BlockQ4_K>(w, out);
    default: return pack_x8_t<BlockQ6_K>(w, out);
  }
}

bool quant_dot_supports(DType t) {
  return t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q4_K || t == DType::Q6_K;
}

bool quantized_activations_allowed() {
  return t_quantized_activations;
}
ExactActivations::ExactActivations() : saved_(t_quantized_activations) {
  t_quantized_activations = false;
}
ExactActivations::~ExactActivations() {
  t_quantized_activations = saved_;
}

std::vector<const QuantDotKernels*> quant_dot_variants() {
  auto v = isa_variants(&generic::kQuantDot, &avx2::kQuantDot, &avx512::kQuantDot);
  if (cpu_runs_avx512_build() && cpu_features().avx512_vnni) v.push_back(&avx512vnni::kQuantDot);
  return v;
}

bool quant_gemm_available() {
  return runtime_isa() == Isa::Avx512Vnni;
}

const QuantDotKernels& quant_dot_kernels() {
  return *isa_pick(&generic::kQuantDot, &avx2::kQuantDot, &avx512::kQuantDot, &avx512vnni::kQuantDot);
}

void quant_matmul_nt(float* out, const float* x, const WeightMatrix& w, int64_t M) {
  const WeightMatrix* ws[1] = {&w};
  quant_matmul_nt_shared(x, M, &out, ws, 1);
}

void quant_matmul_nt_shared(const float* x, int64_t M, float* const* outs, const WeightMatrix* const* ws, int64_t n) {
  if (M <= 0 || n <= 0) return;
  if (n > kMaxSharedProducts) fail("quant_matmul_nt_shared: {} products, at most {}", n, kMaxSharedProducts);
  const int64_t K = ws[0]->cols, nb = K / kQ8ActBlock;
  for (int64_t i = 1; i < n; ++i)
    if (ws[i]->cols != K) fail("quant_matmul_nt_shared: weights of {} and {} columns share one input", K, ws[i]->cols);
  const QuantDotKernels& k = quant_dot_kernels();
  // Scratch per calling thread (a server may run several models at once); it only grows.
  thread_local std::vector<int8_t> qs;
  thread_local std::vector<float> d, d8;
  thread_local std::vector<int16_t> off4;
  thread_local std::vector<int32_t> bsum;
  if (qs.size() < static_cast<size_t>(M * K)) {
    qs.resize(static_cast<size_t>(M * K));
    d.resize(static_cast<size_t>(M * nb));
    d8.resize(static_cast<size_t>(M * K / 4));
    off4.resize(static_cast<size_t>(M * K / 4));
    bsum.resize(static_cast<size_t>(M * nb));
  }
  for (int64_t m = 0; m < M; ++m)
    k.quantize_row(x + m * K, {qs.data() + m * K, d.data() + m * nb, d8.data() + m * K / 4, off4.data() + m * K / 4,
                               bsum.data() + m * nb, K});
  const Q8Activations a{qs.data(), d.data(), d8.data(), off4.data(), bsum.data(), K};
  // The x8 products of every matrix in one loop: one barrier for all of them, and a small
  // matrix (a GQA model's keys and values) does not leave a thread idle at its own.
  const int64_t per = kRowChunk / kX8Rows;
  int64_t tasks = 0;
  int64_t first[kMaxSharedProducts + 1];
  for (int64_t i = 0; i < n; ++i) {
    const WeightMatrix& w = *ws[i];
    const bool gemm =
        quant_gemm_detail::quant_gemm_type(w.type) && M >= quant_gemm_min_rows(w.type) && quant_gemm_available();
    first[i] = tasks;
    if (gemm) {
      quant_gemm_nt(outs[i], a, w, M);
    } else if (w.packed && x8_packable(w)) {
      tasks += (w.rows / kX8Rows + per - 1) / per;
    } else {  // per-row kernels on a matrix not interleaved: a loop of its own
      const int64_t N = w.rows, chunks = (N + kRowChunk - 1) / kRowChunk;
#pragma omp parallel for schedule(guided) if (N * K >= (1 << 16))
      for (int64_t c = 0; c < chunks; ++c) {
        const int64_t n0 = c * kRowChunk, n1 = n0 + kRowChunk < N ? n0 + kRowChunk : N;
        k.rows(outs[i], N, w, n0, n1, a, M);
      }
    }
  }
  first[n] = tasks;
  if (tasks == 0) return;
    // Guided: each thread's first share is large and contiguous (its weight rows stream), the rest
    // goes in shrinking pieces to whichever thread is free, so a thread the host slows down holds
    // the other back less. TinyLlama Q4_0, alternating with static in one binary (4 pairs): 1, 4
    // and 8 sequences 43-50 / 95-106 / 107-123 tok/s with static, 44-51 / 103-113 / 119-122 guided.
#pragma omp parallel for schedule(guided) if (tasks * kRowChunk * K >= (1 << 16))
  for (int64_t t = 0; t < tasks; ++t) {
    int64_t i = 0;
    while (t >= first[i + 1]) ++i;
    const WeightMatrix& w = *ws[i];
    const int64_t c = t - first[i], groups = w.rows / kX8Rows;
    k.rows_x8(outs[i], w.rows, w, c * per, std::min(groups, (c + 1) * per), a, M);
  }
}

}  // namespace la
