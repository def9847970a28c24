#include "la/kernels/gemm.h"

#include <omp.h>
#include <xmmintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "la/core/cpu.h"
#include "la/core/error.h"
#include "la/core/memory.h"
#include "la/core/runtime.h"
#include "la/kernels/isa/gemm_kernels.h"

namespace la {

namespace {

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// Most bytes of packed A a thread keeps for all its column blocks. Past L2 the kept blocks are
// read back from L3, still less than packing them again from there (the training head: 512 rows
// x 768 in f32, 1.5 MiB, over 31 column blocks per thread).
constexpr size_t kKeepPackedA = size_t{4} << 20;

// Brings the stored weight rows of the next block into L2 a few lines at a time while the kernels
// work on this one. Packing is otherwise bound by how many cache misses one core keeps in flight
// (~10 GB/s: 0.2 ns per f16 element from memory, 0.1 from L2), while the memory system idles
// during the kernels.
class NextBlockPrefetch {
 public:
  // `rows` rows of `bytes` bytes each, `stride` apart from `base`, over about `calls` steps.
  void start(const void* base, size_t stride, int64_t rows, size_t bytes, int64_t calls) {
    base_ = static_cast<const char*>(base);
    stride_ = stride;
    rows_ = rows;
    lines_ = static_cast<int64_t>((bytes + 63) / 64);
    row_ = line_ = 0;
    per_call_ = calls > 0 ? (rows * lines_ + calls - 1) / calls : rows * lines_;
  }
  void step() {
    for (int64_t n = 0; n < per_call_ && row_ < rows_; ++n) {
      _mm_prefetch(base_ + static_cast<size_t>(row_) * stride_ + static_cast<size_t>(line_) * 64, _MM_HINT_T1);
      if (++line_ == lines_) line_ = 0, ++row_;
    }
  }

 private:
  const char* base_ = nullptr;
  size_t stride_ = 0;
  int64_t rows_ = 0, lines_ = 0, row_ = 0, line_ = 0, per_call_ = 0;
};

void gemm(bool nt, float* C, const float* A, const WeightMatrix& w, int64_t M, bool accumulate) {
  using namespace gemm_detail;
  const Kernels& k = kernels();
  const int64_t MR = k.mr, NR = k.nr, KC = k.kc, MC = k.mc, NC = k.nc;
  const int64_t Ng = nt ? w.rows : w.cols, Kg = nt ? w.cols : w.rows;
  if (M <= 0 || Ng <= 0) return;
  if (Kg <= 0) {
    if (!accumulate) std::memset(C, 0, static_cast<size_t>(M * Ng) * sizeof(float));
    return;
  }
  // Columns are split between threads in contiguous ranges; for nn on block-quantised weights a
  // range must start on a block of the stored rows (packing dequantises whole blocks).
  const int64_t align = !nt && dtype_is_quantized(w.type) ? std::max<int64_t>(NR, dtype_block_size(w.type)) : NR;
  const int64_t units = ceil_div(Ng, align);
  const bool big = static_cast<double>(M) * Ng * Kg >= 4e6;  // smaller ones are not worth a thread team
  const int threads = big ? static_cast<int>(std::min<int64_t>(omp_get_max_threads(), units)) : 1;
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int t = omp_get_thread_num(), nth = omp_get_num_threads();
    const int64_t lo = std::min(Ng, units * t / nth * align), hi = std::min(Ng, units * (t + 1) / nth * align);
    thread_local AlignedScratch bp_s, ap_s, tmp_s;
    float* bp = bp_s.get<float>(static_cast<size_t>(NC * KC));
    // As in gemm_bf16: A packed whole once for several column blocks, block (ic, pc) at
    // pc * m_pad + ic * kc.
    const int64_t m_pad = ceil_div(M, MR) * MR;
    const bool keep_a = hi - lo > NC && static_cast<size_t>(m_pad * Kg) * sizeof(float) <= kKeepPackedA;
    float* ap = ap_s.get<float>(static_cast<size_t>(keep_a ? m_pad * Kg : MC * KC));
    float* tmp = tmp_s.get<float>(static_cast<size_t>(std::max(NR * KC, NC)));
    for (int64_t jc = lo; jc < hi; jc += NC) {
      const int64_t nc = std::min(NC, hi - jc), panels = ceil_div(nc, NR);
      for (int64_t pc = 0; pc < Kg; pc += KC) {
        const int64_t kc = std::min(KC, Kg - pc);
        if (nt)
          for (int64_t p = 0; p < panels; ++p)
            k.pack_b_nt(w, jc + p * NR, std::min(NR, nc - p * NR), pc, kc, bp + p * kc * NR, tmp);
        else
          k.pack_b_nn(w, pc, kc, jc, nc, bp, tmp);
        const bool add = accumulate || pc > 0;
        // Prefill-sized nt on F16/BF16 (f32 weights take gemm_nt_wb there): the next block's rows
        // of W, the next k span or else the next columns. With many rows of A packing is a small
        // share, and the extra 256 KiB would crowd the packed blocks out of L2.
        NextBlockPrefetch pf;
        if (nt && M <= 2 * MC && (w.type == DType::F16 || w.type == DType::BF16)) {
          const int64_t npc = pc + KC < Kg ? pc + KC : 0, njc = pc + KC < Kg ? jc : jc + NC;
          if (njc < hi) {
            const size_t eb = dtype_row_bytes(w.type, 1), row_bytes = dtype_row_bytes(w.type, w.cols);
            pf.start(static_cast<const char*>(w.data) + static_cast<size_t>(njc) * row_bytes + npc * eb, row_bytes,
                     std::min(NC, hi - njc), static_cast<size_t>(std::min(KC, Kg - npc)) * eb,
                     ceil_div(M, MR) * panels);
          }
        }
        for (int64_t ic = 0; ic < M; ic += MC) {
          const int64_t mc = std::min(MC, M - ic);
          float* a = keep_a ? ap + pc * m_pad + ic * kc : ap;
          if (!keep_a || jc == lo) k.pack_a(A + ic * Kg + pc, Kg, mc, kc, a);
          for (int64_t i = 0; i < mc; i += MR)
            for (int64_t p = 0; p < panels; ++p) {
              pf.step();
              k.kernel(kc, a + i * kc, bp + p * kc * NR, C + (ic + i) * Ng + jc + p * NR, Ng,
                       static_cast<int>(std::min(MR, mc - i)), static_cast<int>(std::min(NR, nc - p * NR)), add);
            }
        }
      }
    }
  }
}

// The weight-broadcast form (isa/gemm_kernels.h) for nt with few rows of A and an f32 weight:
// A^T is packed per KC block (M x KC, cheap) and the weight rows are broadcast where they are.
// Same KC blocks and per-element operation order as gemm(), so the two give the same bits.
// (F16/BF16 weights widened row by row this way measured slower than packing them: 132 vs 161
// GFLOP/s at M = 64 on one core, the widening waiting on memory.)
void gemm_nt_wb(float* C, const float* A, const WeightMatrix& w, int64_t M, bool accumulate) {
  using namespace gemm_detail;
  const Kernels& k = kernels();
  const int64_t WR = k.wr, WM = k.wm, KC = k.kc;
  const int64_t N = w.rows, K = w.cols, ldat = ceil_div(M, WM) * WM;
  const int64_t units = ceil_div(N, WR);
  const bool big = static_cast<double>(M) * N * K >= 4e6;
  const int threads = big ? static_cast<int>(std::min<int64_t>(omp_get_max_threads(), units)) : 1;
  const auto* W = static_cast<const float*>(w.data);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int t = omp_get_thread_num(), nth = omp_get_num_threads();
    const int64_t lo = std::min(N, units * t / nth * WR), hi = std::min(N, units * (t + 1) / nth * WR);
    thread_local AlignedScratch at_s;
    float* at = at_s.get<float>(static_cast<size_t>(ldat * KC));
    for (int64_t pc = 0; pc < K && lo < hi; pc += KC) {
      const int64_t kc = std::min(KC, K - pc);
      k.pack_at(A, K, M, pc, kc, at, ldat);
      for (int64_t n0 = lo; n0 < hi; n0 += WR) {
        const int nr = static_cast<int>(std::min(WR, hi - n0));
        // The next group's span of the weight while this one computes: 14 short row segments are
        // too many streams for the hardware prefetchers.
        const int64_t next_rows = std::min(WR, hi - n0 - WR);
        for (int64_t r = 0; r < next_rows; ++r)
          for (int64_t off = 0; off < kc; off += 16) _mm_prefetch(W + (n0 + WR + r) * K + pc + off, _MM_HINT_T0);
        for (int64_t m0 = 0; m0 < M; m0 += WM)
          k.kernel_wb(kc, W + n0 * K + pc, K, nr, at + m0, ldat, C + m0 * N + n0, N,
                      static_cast<int>(std::min(WM, M - m0)), accumulate || pc > 0);
      }
    }
  }
}

// The same blocking with the bf16 kernels (isa/gemm_kernels.h): packed elements are k-pairs, so a
// block of depth kc holds ceil(kc/2) of them; W is BF16.
void gemm_bf16(bool nt, float* C, const float* A, const WeightMatrix& w, int64_t M, bool accumulate,
               const Bf16Panels* panels) {
  using namespace gemm_detail;
  constexpr int64_t MR = kBf16MR, NR = kBf16NR, KC = kBf16KC, MC = kBf16MC, NC = kBf16NC;
  const int64_t Ng = nt ? w.rows : w.cols, Kg = nt ? w.cols : w.rows;
  if (M <= 0 || Ng <= 0) return;
  if (Kg <= 0) {
    if (!accumulate) std::memset(C, 0, static_cast<size_t>(M * Ng) * sizeof(float));
    return;
  }
  const int64_t units = ceil_div(Ng, NR);
  const bool big = static_cast<double>(M) * Ng * Kg >= 4e6;
  const int threads = big ? static_cast<int>(std::min<int64_t>(omp_get_max_threads(), units)) : 1;
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int t = omp_get_thread_num(), nth = omp_get_num_threads();
    const int64_t lo = std::min(Ng, units * t / nth * NR), hi = std::min(Ng, units * (t + 1) / nth * NR);
    thread_local AlignedScratch bp_s, ap_s;
    uint32_t* bp = bp_s.get<uint32_t>(static_cast<size_t>(NC * KC / 2));
    // A packed whole once when this thread has several column blocks (the output head) and it
    // is small: block (ic, pc) at (pc/2) * m_pad + ic * kp.
    const int64_t m_pad = ceil_div(M, MR) * MR, kp_all = ceil_div(Kg, 2);
    const bool keep_a = hi - lo > NC && static_cast<size_t>(m_pad * kp_all) * 4 <= kKeepPackedA;
    uint32_t* ap = ap_s.get<uint32_t>(static_cast<size_t>(keep_a ? m_pad * kp_all : MC * KC / 2));
    const Bf16Kernels& k = bf16_kernels();
    // Pre-packed panels (whole depth each): the block is read where it lies.
    const std::vector<uint32_t>* whole = panels ? (nt ? &panels->nt : &panels->nn) : nullptr;
    for (int64_t jc = lo; jc < hi; jc += NC) {
      const int64_t nc = std::min(NC, hi - jc), panels = ceil_div(nc, NR);
      for (int64_t pc = 0; pc < Kg; pc += KC) {
        const int64_t kc = std::min(KC, Kg - pc), kp = ceil_div(kc, 2);
        const uint32_t* b = bp;
        int64_t panel_stride = kp * NR;
        if (whole) {
          b = whole->data() + ((jc / NR) * kp_all + pc / 2) * NR;
          panel_stride = kp_all * NR;
        } else if (nt) {
          for (int64_t p = 0; p < panels; ++p)
            k.pack_b_nt(w, jc + p * NR, std::min(NR, nc - p * NR), pc, kc, bp + p * kp * NR);
        } else {
          k.pack_b_nn(w, pc, kc, jc, nc, bp);
        }
        const bool add = accumulate || pc > 0;
        for (int64_t ic = 0; ic < M; ic += MC) {
          const int64_t mc = std::min(MC, M - ic);
          uint32_t* a = keep_a ? ap + (pc / 2) * m_pad + ic * kp : ap;
          if (!keep_a || jc == lo) k.pack_a(A + ic * Kg + pc, Kg, mc, kc, a);
          for (int64_t i = 0; i < mc; i += MR)
            for (int64_t p = 0; p < panels; ++p)
              k.kernel(kp, a + i * kp, b + p * panel_stride, C + (ic + i) * Ng + jc + p * NR, Ng,
                       static_cast<int>(std::min(MR, mc - i)), static_cast<int>(std::min(NR, nc - p * NR)), add);
        }
      }
    }
  }
}

}  // namespace

Bf16Panels pack_bf16_panels(const WeightMatrix& w) {
  using namespace gemm_detail;
  if (w.type != DType::BF16) fail("pack_bf16_panels: the weight is {}, not bf16", dtype_name(w.type));
  if (!gemm_bf16_available()) fail("pack_bf16_panels: this CPU has no AVX512-BF16");
  constexpr int64_t NR = kBf16NR, KC = kBf16KC;
  const Bf16Kernels& k = bf16_kernels();
  Bf16Panels out;
  out.source = w.data;
  out.rows = w.rows;
  out.cols = w.cols;
  // nt: panels over the rows of W (the product's columns), pairs along its columns; nn the other
  // way round. Each panel holds ceil(depth/2) pairs of NR values, packed KC at a time.
  auto fill = [&](std::vector<uint32_t>& dst, bool nt) {
    const int64_t Ng = nt ? w.rows : w.cols, Kg = nt ? w.cols : w.rows;
    const int64_t panels = ceil_div(Ng, NR), kp_all = ceil_div(Kg, 2);
    dst.assign(static_cast<size_t>(panels * kp_all * NR), 0u);
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < panels; ++p)
      for (int64_t pc = 0; pc < Kg; pc += KC) {
        const int64_t kc = std::min(KC, Kg - pc), nr = std::min(NR, Ng - p * NR);
        uint32_t* panel = dst.data() + (p * kp_all + pc / 2) * NR;
        if (nt)
          k.pack_b_nt(w, p * NR, nr, pc, kc, panel);
        else
          k.pack_b_nn(w, pc, kc, p * NR, nr, panel);
      }
  };
  fill(out.nt, true);
  fill(out.nn, false);
  return out;
}

bool gemm_available() {
  return runtime_isa() >= Isa::Avx2;  // set_runtime checked that the CPU runs it
}

const char* gemm_kernels_name() {
  return gemm_available() ? gemm_detail::kernels().name : "none";
}

bool gemm_broadcast_form(int64_t M) {
  if (!gemm_available()) return false;
  const int64_t wm = gemm_detail::kernels().wm;
  if (wm == 0) return false;
  const int64_t pad = (M + wm - 1) / wm * wm - M;
  return M > 0 && M <= kGemmBroadcastMaxRows && (M <= wm || pad * 8 <= M);
}

namespace gemm_detail {
const Kernels& kernels() {
  return runtime_isa() >= Isa::Avx512 ? avx512_kernels() : avx2_kernels();
}
}  // namespace gemm_detail

bool gemm_bf16_available() {
  return gemm_available() && cpu_features().avx512_bf16;
}

namespace {
void check_bf16_operands(const char* what, const WeightMatrix& w, const Bf16Panels* panels) {
  if (w.type != DType::BF16) fail("{}: the weight is {}, not bf16", what, dtype_name(w.type));
  if (panels && (panels->source != w.data || panels->rows != w.rows || panels->cols != w.cols))
    fail("{}: the packed panels are of another matrix ([{}, {}] at {}, not [{}, {}] at {})", what, panels->rows,
         panels->cols, panels->source, w.rows, w.cols, w.data);
}
}  // namespace

void gemm_bf16_nt(float* C, const float* A, const WeightMatrix& w, int64_t M, bool accumulate,
                  const Bf16Panels* panels) {
  check_bf16_operands("gemm_bf16_nt", w, panels);
  gemm_bf16(true, C, A, w, M, accumulate, panels);
}

void gemm_bf16_nn(float* C, const float* A, const WeightMatrix& w, int64_t M, bool accumulate,
                  const Bf16Panels* panels) {
  check_bf16_operands("gemm_bf16_nn", w, panels);
  gemm_bf16(false, C, A, w, M, accumulate, panels);
}

void gemm_nt(float* C, const float* A, const WeightMatrix& w, int64_t M, bool accumulate) {
  if (w.type == DType::F32 && gemm_broadcast_form(M) && w.cols > 0 && w.rows > 0)
    return gemm_nt_wb(C, A, w, M, accumulate);
  gemm(true, C, A, w, M, accumulate);
}

void gemm_nn(float* C, const float* A, const WeightMatrix& w, int64_t M, bool accumulate) {
  gemm(false, C, A, w, M, accumulate);
}

}  // namespace la
