// The multi-modal adapter's visual projection (SPEC §8) and its backward, llm.c style side by side:
//   pre = fc1 f + b1 [W];  I_p = fc2 gelu(pre) + b2 [dim]
// f: the image's multi-scale CLIP features [M*E]. I_p is added to every prompt row of every
// adapted layer, so in the prompt projections it costs one row per layer through Wk/Wv.
#pragma once
#include <cstdint>

#include "la/model/adapter.h"
#include "la/model/params.h"

namespace la {

// ip [dim] <- I_p; pre [W] <- fc1's output before GELU (kept for the backward; may be null).
void visual_proj_forward(const Adapter& a, const float* features, float* ip, float* pre);
// Given dLoss/dI_p, adds the projection's gradients into grads (laid out by a.params' table).
void visual_proj_backward(const Adapter& a, const float* features, const float* pre, const float* dip, ParamSet& grads);

}  // namespace la
