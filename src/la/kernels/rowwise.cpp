#include "la/kernels/rowwise.h"

#include "la/core/cpu.h"
#include "la/core/runtime.h"

namespace la {

// The per-ISA builds of src/la/kernels/isa/rowwise_impl.inc.
#define LA_DECLARE_ROWWISE(isa)                                                            \
  namespace isa {                                                                          \
  void swiglu_forward(float*, const float*, const float*, int64_t);                        \
  void swiglu_backward(float*, float*, const float*, const float*, const float*, int64_t); \
  double cross_entropy(float*, int64_t, int64_t, float, bool);                             \
  float softmax(float*, int64_t, int64_t, float);                                          \
  void softmax_backward(float*, float*, int64_t, int64_t, float, float);                   \
  void layernorm(float*, const float*, const float*, const float*, int64_t, float);        \
  void quick_gelu(float*, int64_t);                                                        \
  const RowwiseKernels kRowwise{#isa,    swiglu_forward,   swiglu_backward, cross_entropy, \
                                softmax, softmax_backward, layernorm,       quick_gelu};   \
  }
LA_DECLARE_ROWWISE(generic)
LA_DECLARE_ROWWISE(avx2)
LA_DECLARE_ROWWISE(avx512)

std::vector<const RowwiseKernels*> rowwise_variants() {
  return isa_variants(&generic::kRowwise, &avx2::kRowwise, &avx512::kRowwise);
}

const RowwiseKernels& rowwise_kernels() {
  return *isa_pick(&generic::kRowwise, &avx2::kRowwise, &avx512::kRowwise);
}

}  // namespace la
