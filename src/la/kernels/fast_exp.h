// exp(x) in float for the element-wise loops (SiLU, softmax, the cross-entropy), written so that
// plain loops vectorise at any instruction set: x = n ln2 + r with n rounded to nearest by the
// 1.5 * 2^23 trick, |r| <= ln2/2 (Cody-Waite split of ln2), e^r by a degree-6 polynomial, 2^n
// through the exponent bits. Relative error ~2e-7. Below -87 the result is 0 (so a masked -inf
// gives exactly 0), above 88 it stays at exp(88) ~ 1.65e38: no infinities, no denormals.
// `static`: every translation unit gets its own copy, compiled with its own instruction set
// (kernels/isa/ files include it too), so no copy built with AVX-512 can stand in for another.
#pragma once
#include <cstdint>
#include <cstring>

namespace la {

static inline float fast_exp(float x_in) {
  const float x = x_in < -87.0f ? -87.0f : x_in > 88.0f ? 88.0f : x_in;
  const float big = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  const float n = (x * 1.44269504088896341f + big) - big;
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t e = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &e, 4);
  return x_in < -87.0f ? 0.0f : p * scale;
}

}  // namespace la
