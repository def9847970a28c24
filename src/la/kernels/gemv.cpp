#include "la/kernels/gemv.h"

#include "la/core/cpu.h"
#include "la/core/runtime.h"

namespace la {

// The per-ISA builds of src/la/kernels/isa/gemv_impl.inc.
#define LA_DECLARE_GEMV(isa)                                                                \
  namespace isa {                                                                           \
  void rows(float*, int64_t, const WeightMatrix&, int64_t, int64_t, const float*, int64_t); \
  const GemvKernels kGemv{#isa, rows};                                                      \
  }
LA_DECLARE_GEMV(generic)
LA_DECLARE_GEMV(avx2)
LA_DECLARE_GEMV(avx512)

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

void gemv_nt(float* out, const float* x, const WeightMatrix& w, int64_t M) {
  const int64_t N = w.rows, K = w.cols;
  if (M <= 0 || N <= 0) return;
  const GemvKernels& k = gemv_kernels();
  // Static schedule: each thread streams one contiguous slice of W. Small matrices stay on one
  // thread (waking the team costs more than a 64x64 product), as in gemv_f32.
  const int64_t chunks = (N + kRowChunk - 1) / kRowChunk;
#pragma omp parallel for schedule(static) if (N * K >= (1 << 16))
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t n0 = c * kRowChunk, n1 = n0 + kRowChunk < N ? n0 + kRowChunk : N;
    k.rows(out, N, w, n0, n1, x, M);
  }
}

}  // namespace la
