#include "la/model/visual_proj.h"

#include <vector>

#include "la/core/error.h"
#include "la/kernels/matmul.h"
#include "la/kernels/ops.h"

namespace la {

namespace {
WeightMatrix f32_matrix(std::span<const float> v, int64_t rows, int64_t cols) {
  return WeightMatrix{DType::F32, v.data(), rows, cols};
}
}  // namespace

void visual_proj_forward(const Adapter& a, const float* features, float* ip, float* pre) {
  if (!a.visual.enabled()) fail("the adapter has no visual projection (it is not multi-modal)");
  const int64_t W = a.visual.width, D = a.dim;
  std::vector<float> h(static_cast<size_t>(W));
  matmul_nt(h.data(), features, f32_matrix(a.params["visual_proj.fc1.weight"], W, a.visual.in), 1);
  add_bias(h.data(), a.params["visual_proj.fc1.bias"].data(), 1, W);
  if (pre) std::copy(h.begin(), h.end(), pre);
  gelu_erf(h.data(), W);
  matmul_nt(ip, h.data(), f32_matrix(a.params["visual_proj.fc2.weight"], D, W), 1);
  add_bias(ip, a.params["visual_proj.fc2.bias"].data(), 1, D);
}

void visual_proj_backward(const Adapter& a, const float* features, const float* pre, const float* dip,
                          ParamSet& grads) {
  const int64_t W = a.visual.width, D = a.dim, in = a.visual.in;
  std::vector<float> h(pre, pre + W), dh(static_cast<size_t>(W)), dpre(static_cast<size_t>(W));
  gelu_erf(h.data(), W);
  // I_p = fc2 h + b2:  dW2 += dI_p h^T, db2 += dI_p, dh = W2^T dI_p.
  float* dw2 = grads["visual_proj.fc2.weight"].data();
  float* db2 = grads["visual_proj.fc2.bias"].data();
  for (int64_t d = 0; d < D; ++d) {
    db2[d] += dip[d];
    for (int64_t j = 0; j < W; ++j) dw2[d * W + j] += dip[d] * h[static_cast<size_t>(j)];
  }
  matmul_nn(dh.data(), dip, f32_matrix(a.params["visual_proj.fc2.weight"], D, W), 1, false);
  // h = gelu(pre):  dpre = dh gelu'(pre).
  gelu_erf_backward(dpre.data(), dh.data(), pre, W);
  // pre = fc1 f + b1:  dW1 += dpre f^T, db1 += dpre.
  float* dw1 = grads["visual_proj.fc1.weight"].data();
  float* db1 = grads["visual_proj.fc1.bias"].data();
  for (int64_t j = 0; j < W; ++j) {
    db1[j] += dpre[static_cast<size_t>(j)];
    for (int64_t i = 0; i < in; ++i) dw1[j * in + i] += dpre[static_cast<size_t>(j)] * features[i];
  }
}

}  // namespace la
