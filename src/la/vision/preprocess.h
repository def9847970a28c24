// CLIP's image transform, as its reference implementation runs it on a PIL image (SPEC §8):
//   resize (bicubic) so the shorter side is `size` -> centre crop size x size -> /255 -> normalise.
// The resize is PIL's resampling to the bit: separable passes (horizontal first, then vertical),
// each output value a fixed-point (22 fractional bits) weighted sum of the inputs within the
// filter's support, widened by the scale factor when shrinking, rounded and clamped to 8 bits
// after each pass; bicubic with a = -0.5.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "la/vision/image.h"

namespace la {

// PIL's Image.resize(w, h, BICUBIC) of the whole image.
RgbImage resize_bicubic(const RgbImage& in, int64_t width, int64_t height);
// The size CLIP resizes to: shorter side `size`, longer side int(size * long / short).
std::array<int64_t, 2> clip_resize_shape(int64_t width, int64_t height, int64_t size);
// torchvision's CenterCrop of a PIL image: top = round((h - size) / 2) with ties to even, same
// for left. The image must be at least size x size.
RgbImage center_crop(const RgbImage& in, int64_t size);

struct ImageNorm {
  std::array<float, 3> mean{0.48145466f, 0.4578275f, 0.40821073f};  // CLIP's
  std::array<float, 3> std{0.26862954f, 0.26130258f, 0.27577711f};
};

// resize + crop: the 8-bit image the network sees.
RgbImage clip_resize_crop(const RgbImage& in, int64_t size);
// (x / 255 - mean) / std, laid out channel-first [3, H, W] as the patch convolution reads it.
std::vector<float> clip_normalize(const RgbImage& im, const ImageNorm& norm);
// The whole transform.
std::vector<float> clip_preprocess(const RgbImage& in, int64_t size, const ImageNorm& norm);

}  // namespace la
