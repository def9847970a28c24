#include "la/kernels/rowwise.h"

#include <cstdlib>
#include <string>

#include "la/core/cpu.h"

namespace la {

// The per-ISA builds of src/la/kernels/isa/rowwise_impl.inc.
#define LA_DECLARE_ROWWISE(isa)                                                              \
  namespace isa {                                                                            \
  void swiglu_forward(float*, const float*, const float*, int64_t);                          \
  void swiglu_backward(float*, float*, const float*, const float*, const float*, int64_t);   \
  double cross_entropy(float*, int64_t, int64_t, float, bool);                               \
  const RowwiseKernels kRowwise{#isa, swiglu_forward, swiglu_backward, cross_entropy};       \
  }
LA_DECLARE_ROWWISE(generic)
LA_DECLARE_ROWWISE(avx2)
LA_DECLARE_ROWWISE(avx512)

std::vector<const RowwiseKernels*> rowwise_variants() {
  const CpuFeatures& f = cpu_features();
  const bool has2 = f.avx2 && f.fma && f.f16c;
  const bool has512 = has2 && f.avx512f && f.avx512bw && f.avx512vl;
  std::vector<const RowwiseKernels*> v{&generic::kRowwise};
  if (has2) v.push_back(&avx2::kRowwise);
  if (has512) v.push_back(&avx512::kRowwise);
  return v;
}

const RowwiseKernels& rowwise_kernels() {
  static const RowwiseKernels* k = [] {
    const auto v = rowwise_variants();
    const char* forced = std::getenv("LA_ISA");
    if (forced)
      for (const RowwiseKernels* c : v)
        if (std::string(c->name) == forced) return c;
    return v.back();
  }();
  return *k;
}

}  // namespace la
