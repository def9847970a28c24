#include "la/kernels/gemv.h"

#include "la/core/cpu.h"
#include "la/core/error.h"
#include "la/core/runtime.h"

namespace la {

// The per-ISA builds of src/la/kernels/isa/gemv_impl.inc.
using GemvRows = void (*)(float*, int64_t, const WeightMatrix&, int64_t, int64_t, const float*, int64_t);
namespace avx2 {
void rows_prefill(float*, int64_t, const WeightMatrix&, int64_t, int64_t, const float*, int64_t);  // avx2 only
}
#define LA_DECLARE_GEMV(isa, prefill)                                                       \
  namespace isa {                                                                           \
  void rows(float*, int64_t, const WeightMatrix&, int64_t, int64_t, const float*, int64_t); \
  const GemvKernels kGemv{#isa, rows, prefill};                                             \
  }
LA_DECLARE_GEMV(generic, nullptr)
LA_DECLARE_GEMV(avx2, rows_prefill)
LA_DECLARE_GEMV(avx512, nullptr)

namespace {

constexpr int64_t kRowChunk = 12;  // weight rows per task: whole tiles of 3 and 4 (avx2) and 4 (avx512) rows

}  // namespace

bool gemv_supports(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16;
}

std::vector<const GemvKernels*> gemv_variants() {
  return isa_variants(&generic::kGemv, &avx2::kGemv, &avx512::kGemv);
}

const GemvKernels& gemv_kernels() {
  return *isa_pick(&generic::kGemv, &avx2::kGemv, &avx512::kGemv);
}

namespace {

// Static schedule: each thread streams one contiguous slice of W. Small matrices stay on one
// thread (waking the team costs more than a 64x64 product), as in gemv_f32.
void split_rows(GemvRows rows, float* out, const float* x, const WeightMatrix& w, int64_t M) {
  const int64_t N = w.rows, K = w.cols;
  if (M <= 0 || N <= 0) return;
  const int64_t chunks = (N + kRowChunk - 1) / kRowChunk;
#pragma omp parallel for schedule(static) if (N * K >= (1 << 16))
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t n0 = c * kRowChunk, n1 = n0 + kRowChunk < N ? n0 + kRowChunk : N;
    rows(out, N, w, n0, n1, x, M);
  }
}

}  // namespace

void gemv_nt(float* out, const float* x, const WeightMatrix& w, int64_t M) {
  split_rows(gemv_kernels().rows, out, x, w, M);
}

bool gemv_prefill_available(DType t) {
  return (t == DType::F16 || t == DType::BF16) && gemv_kernels().rows_prefill;
}

void gemv_prefill_nt(float* out, const float* x, const WeightMatrix& w, int64_t M) {
  if (!gemv_prefill_available(w.type)) fail("gemv_prefill_nt: needs F16/BF16 weights and the avx2 kernels");
  split_rows(gemv_kernels().rows_prefill, out, x, w, M);
}

}  // namespace la
