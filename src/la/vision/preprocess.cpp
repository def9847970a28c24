#include "la/vision/preprocess.h"

#include <cmath>
#include <cstring>

#include "la/core/error.h"

namespace la {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // fixed-point bits of the 8-bit resampling weights

// PIL's bicubic kernel, a = -0.5, support 2.
double bicubic(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// The weights of one resampling pass from `in_size` to `out_size` samples: output i reads inputs
// [first[i], first[i] + count[i]) with weights w[i * ksize + j] (fixed point). Computed in double
// exactly as PIL does, so the rounded weights are PIL's.
struct Coeffs {
  int64_t ksize = 0;
  std::vector<int64_t> first, count;
  std::vector<int32_t> w;
};

Coeffs precompute(int64_t in_size, int64_t out_size) {
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = 2.0 * filterscale;
  Coeffs c;
  c.ksize = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  c.first.resize(static_cast<size_t>(out_size));
  c.count.resize(static_cast<size_t>(out_size));
  c.w.assign(static_cast<size_t>(out_size * c.ksize), 0);
  std::vector<double> k(static_cast<size_t>(c.ksize));
  for (int64_t i = 0; i < out_size; ++i) {
    const double center = (static_cast<double>(i) + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    auto xmin = static_cast<int64_t>(center - support + 0.5);  // truncation, as C's (int)
    if (xmin < 0) xmin = 0;
    auto xmax = static_cast<int64_t>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int64_t x = 0; x < xmax; ++x) {
      k[static_cast<size_t>(x)] = bicubic((static_cast<double>(x + xmin) - center + 0.5) * ss);
      ww += k[static_cast<size_t>(x)];
    }
    for (int64_t x = 0; x < xmax; ++x) {
      double v = k[static_cast<size_t>(x)];
      if (ww != 0.0) v /= ww;
      const double f = v * static_cast<double>(1 << kPrecisionBits);
      c.w[static_cast<size_t>(i * c.ksize + x)] = static_cast<int32_t>(v < 0 ? -0.5 + f : 0.5 + f);
    }
    c.first[static_cast<size_t>(i)] = xmin;
    c.count[static_cast<size_t>(i)] = xmax;
  }
  return c;
}

inline uint8_t clip8(int32_t v) {
  const int32_t s = v >> kPrecisionBits;  // arithmetic shift: floor
  return static_cast<uint8_t>(s < 0 ? 0 : s > 255 ? 255 : s);
}

// Horizontal pass over rows [y0, y0 + out_h) of `in`.
RgbImage pass_horizontal(const RgbImage& in, int64_t y0, int64_t out_h, const Coeffs& c, int64_t out_w) {
  RgbImage out;
  out.width = out_w;
  out.height = out_h;
  out.pixels.resize(static_cast<size_t>(out_w * out_h * 3));
  for (int64_t y = 0; y < out_h; ++y) {
    const uint8_t* row = in.at(0, y0 + y);
    uint8_t* dst = out.pixels.data() + 3 * y * out_w;
    for (int64_t x = 0; x < out_w; ++x) {
      const int32_t* k = c.w.data() + x * c.ksize;
      const uint8_t* src = row + 3 * c.first[static_cast<size_t>(x)];
      int32_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
      for (int64_t j = 0; j < c.count[static_cast<size_t>(x)]; ++j) {
        s0 += src[3 * j] * k[j];
        s1 += src[3 * j + 1] * k[j];
        s2 += src[3 * j + 2] * k[j];
      }
      dst[3 * x] = clip8(s0);
      dst[3 * x + 1] = clip8(s1);
      dst[3 * x + 2] = clip8(s2);
    }
  }
  return out;
}

// Vertical pass; input rows are taken from first[i] - y_shift.
RgbImage pass_vertical(const RgbImage& in, const Coeffs& c, int64_t y_shift, int64_t out_h) {
  RgbImage out;
  out.width = in.width;
  out.height = out_h;
  out.pixels.resize(static_cast<size_t>(in.width * out_h * 3));
  const int64_t W3 = 3 * in.width;
  for (int64_t y = 0; y < out_h; ++y) {
    const int32_t* k = c.w.data() + y * c.ksize;
    const uint8_t* src = in.pixels.data() + (c.first[static_cast<size_t>(y)] - y_shift) * W3;
    uint8_t* dst = out.pixels.data() + y * W3;
    const int64_t n = c.count[static_cast<size_t>(y)];
    for (int64_t x = 0; x < W3; ++x) {
      int32_t s = 1 << (kPrecisionBits - 1);
      for (int64_t j = 0; j < n; ++j) s += src[j * W3 + x] * k[j];
      dst[x] = clip8(s);
    }
  }
  return out;
}

}  // namespace

RgbImage resize_bicubic(const RgbImage& in, int64_t width, int64_t height) {
  if (width <= 0 || height <= 0 || in.width <= 0 || in.height <= 0)
    fail("resize: {}x{} to {}x{} pixels", in.width, in.height, width, height);
  if (width == in.width && height == in.height) return in;
  const Coeffs ch = precompute(in.width, width), cv = precompute(in.height, height);
  const bool horizontal = width != in.width, vertical = height != in.height;
  if (!horizontal) return pass_vertical(in, cv, 0, height);
  // Only the source rows the vertical pass reads go through the horizontal one.
  const int64_t y_first = cv.first[0];
  const int64_t y_last = cv.first[static_cast<size_t>(height - 1)] + cv.count[static_cast<size_t>(height - 1)];
  if (!vertical) return pass_horizontal(in, 0, in.height, ch, width);
  const RgbImage tmp = pass_horizontal(in, y_first, y_last - y_first, ch, width);
  return pass_vertical(tmp, cv, y_first, height);
}

std::array<int64_t, 2> clip_resize_shape(int64_t width, int64_t height, int64_t size) {
  const int64_t s = std::min(width, height), l = std::max(width, height);
  const auto longer = static_cast<int64_t>(static_cast<double>(size * l) / static_cast<double>(s));
  return width <= height ? std::array<int64_t, 2>{size, longer} : std::array<int64_t, 2>{longer, size};
}

namespace {
// round(d / 2) with Python's ties to even.
int64_t half_round_even(int64_t d) {
  const int64_t k = d / 2;
  return d % 2 == 0 || k % 2 == 0 ? k : k + 1;
}
}  // namespace

RgbImage center_crop(const RgbImage& in, int64_t size) {
  if (in.width < size || in.height < size) fail("centre crop: {}x{} is smaller than {}", in.width, in.height, size);
  const int64_t top = half_round_even(in.height - size), left = half_round_even(in.width - size);
  RgbImage out;
  out.width = out.height = size;
  out.pixels.resize(static_cast<size_t>(size * size * 3));
  for (int64_t y = 0; y < size; ++y)
    std::memcpy(out.pixels.data() + 3 * y * size, in.at(left, top + y), static_cast<size_t>(3 * size));
  return out;
}

RgbImage clip_resize_crop(const RgbImage& in, int64_t size) {
  const auto [w, h] = clip_resize_shape(in.width, in.height, size);
  return center_crop(resize_bicubic(in, w, h), size);
}

std::vector<float> clip_normalize(const RgbImage& im, const ImageNorm& norm) {
  const int64_t n = im.width * im.height;
  std::vector<float> out(static_cast<size_t>(3 * n));
  for (int64_t c = 0; c < 3; ++c) {
    const float m = norm.mean[static_cast<size_t>(c)], s = norm.std[static_cast<size_t>(c)];
    for (int64_t i = 0; i < n; ++i)
      out[static_cast<size_t>(c * n + i)] =
          (static_cast<float>(im.pixels[static_cast<size_t>(3 * i + c)]) / 255.0f - m) / s;
  }
  return out;
}

std::vector<float> clip_preprocess(const RgbImage& in, int64_t size, const ImageNorm& norm) {
  return clip_normalize(clip_resize_crop(in, size), norm);
}

}  // namespace la
