// Kernels, checked against each other rather than against hand-typed numbers: every fast kernel
// against its plain reference on random data and awkward shapes (1, odd, prime, one past a
// block), every backward against central finite differences of its forward, the f16/bf16
// conversions against the definition of round-to-nearest-even, and the properties the model
// relies on: a zero gate reproduces the base model bit for bit, and KV-cache rows equal the rows
// of a full causal pass.
//
// Tolerances are stated next to each check and measured against the size of the reference
// (max|got - ref| <= rel * max|ref| + abs), never against a fixed number.
#include <omp.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "la/core/half.h"
#include "la/kernels/attention.h"
#include "la/kernels/convert.h"
#include "la/kernels/fast_exp.h"
#include "la/kernels/matmul.h"
#include "la/kernels/ops.h"
#include "la/kernels/rowwise.h"
#include "la/kernels/vec.h"
#include "la/tensor/dtype.h"
#include "support/test_support.h"

namespace la {
namespace {

using Vec = std::vector<float>;

using test::random_vec;

// Passes when max_i |got_i - ref_i| <= rel * max_i |ref_i| + abs and nothing is NaN.
template <class A, class B>
::testing::AssertionResult all_close(const A& got, const B& ref, double rel, double abs) {
  if (got.size() != ref.size()) return ::testing::AssertionFailure() << "size " << got.size() << " != " << ref.size();
  double max_ref = 0, max_err = 0;
  size_t worst = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double g = got[i], r = ref[i];
    if (std::isnan(g) || std::isnan(r))
      return ::testing::AssertionFailure() << "NaN at " << i << ": got " << g << ", ref " << r;
    max_ref = std::max(max_ref, std::fabs(r));
    const double e = std::fabs(g - r);
    if (e > max_err) max_err = e, worst = i;
  }
  const double tol = rel * max_ref + abs;
  if (max_err <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "max |got - ref| = " << max_err << " > " << tol << " (at " << worst
                                       << ": got " << static_cast<double>(got[worst]) << ", ref "
                                       << static_cast<double>(ref[worst]) << "; max|ref| = " << max_ref << ")";
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

// L = sum(out * R) in double.
double weighted_sum(const Vec& out, const Vec& R) {
  double s = 0;
  for (size_t i = 0; i < out.size(); ++i) s += static_cast<double>(out[i]) * R[i];
  return s;
}

// Central differences of `loss()` with respect to every element of `x` (which `loss` reads). The
// step is the one the float actually took, so rounding of x + h does not bias the quotient.
template <class Loss>
std::vector<double> numeric_grad(Vec& x, float h, Loss&& loss) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const float x0 = x[i];
    x[i] = x0 + h;
    const double up = x[i], lp = loss();
    x[i] = x0 - h;
    const double dn = x[i], lm = loss();
    x[i] = x0;
    g[i] = (lp - lm) / (up - dn);
  }
  return g;
}

std::string shape(std::initializer_list<std::pair<const char*, int64_t>> dims) {
  std::ostringstream s;
  for (auto& [name, v] : dims) s << name << "=" << v << " ";
  return s.str();
}

// ---------------------------------------------------------------------------------------------
// f16 / bf16 conversions

bool f16_is_nan(uint16_t h) {
  return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0;
}
bool bf16_is_nan(uint16_t h) {
  return (h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0;
}
float f32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Spacing of a format with `precision` significand bits around x, subnormals included.
double ulp_at(double x, int precision, int min_exp) {
  int e;
  std::frexp(x, &e);  // |x| = m * 2^e, m in [0.5, 1)
  return std::ldexp(1.0, std::max(e - precision, min_exp));
}

TEST(Half, F16EveryValueRoundTrips) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const auto h = static_cast<uint16_t>(i);
    const float f = f16_to_f32(h);
    if (f16_is_nan(h)) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << h;
      const uint16_t back = f32_to_f16(f);
      ASSERT_TRUE(f16_is_nan(back)) << std::hex << h << " -> " << back;
      ASSERT_EQ(back & 0x8000u, h & 0x8000u) << "NaN sign, " << std::hex << h;
    } else {
      ASSERT_EQ(f32_to_f16(f), h) << std::hex << h << " -> " << f;
    }
  }
}

TEST(Half, F16SpecialValues) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_f16(0.0f), 0x0000);
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);  // largest finite
  // Overflow: anything at or above 65520 (the midpoint to 2^16, a tie that rounds to the even
  // "2^16") becomes inf; just below it rounds back to 65504.
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);
  EXPECT_EQ(f32_to_f16(std::nextafter(65520.0f, 0.0f)), 0x7bff);
  EXPECT_EQ(f32_to_f16(1e10f), 0x7c00);
  EXPECT_EQ(f32_to_f16(-1e10f), 0xfc00);
  EXPECT_EQ(f32_to_f16(FLT_MAX), 0x7c00);
  EXPECT_EQ(f32_to_f16(INFINITY), 0x7c00);
  EXPECT_EQ(f32_to_f16(-INFINITY), 0xfc00);
  EXPECT_TRUE(std::isinf(f16_to_f32(0x7c00)) && f16_to_f32(0x7c00) > 0);
  EXPECT_TRUE(std::isinf(f16_to_f32(0xfc00)) && f16_to_f32(0xfc00) < 0);
  EXPECT_TRUE(f16_is_nan(f32_to_f16(NAN)));
  EXPECT_TRUE(f16_is_nan(f32_to_f16(f32_from_bits(0x7f800001u))));  // payload only in low bits
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7e00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7c01)));
  // Subnormals: unit 2^-24, largest 1023 * 2^-24, smallest normal 2^-14.
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_to_f32(0x8001), -std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_to_f32(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(f16_to_f32(0x0400), std::ldexp(1.0f, -14));
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(f32_to_f16(std::ldexp(1023.0f, -24)), 0x03ff);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -14)), 0x0400);
  EXPECT_EQ(f32_to_f16(std::ldexp(1023.5f, -24)), 0x0400);  // tie rounds up into the normals
  // Underflow: 2^-25 is the tie between 0 and 2^-24 (to even: 0); anything above it gives 2^-24.
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(f32_to_f16(-std::ldexp(1.0f, -25)), 0x8000);
  EXPECT_EQ(f32_to_f16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -25)), 0x0002);  // 1.5 units: tie to even 2
  EXPECT_EQ(f32_to_f16(std::ldexp(5.0f, -25)), 0x0002);  // 2.5 units: tie to even 2
  EXPECT_EQ(f32_to_f16(1e-10f), 0x0000);
  EXPECT_EQ(f32_to_f16(-1e-10f), 0x8000);
  EXPECT_EQ(f32_to_f16(FLT_TRUE_MIN), 0x0000);
  // Normal ties: 1 + 2^-11 is halfway between 1 and 1 + 2^-10 -> 1 (even); 1 + 3*2^-11 -> 1 + 2^-9.
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(3.0f, -11)), 0x3c02);
  EXPECT_EQ(f32_to_f16(std::nextafter(1.0f + std::ldexp(1.0f, -11), 2.0f)), 0x3c01);
  EXPECT_EQ(f32_to_f16(2048.0f + 1.0f), 0x6800);  // 2049: tie between 2048 and 2050 -> 2048
  EXPECT_EQ(f32_to_f16(2048.0f + 3.0f), 0x6802);  // 2051: tie between 2050 and 2052 -> 2052
}

// Random magnitudes across the whole f16 range, subnormals included: the result is the nearest
// f16 (within half an ulp, not farther than either neighbour, ties to an even significand).
TEST(Half, F16RoundsToNearestEven) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<double> log2mag(-26.0, 16.0);
  std::bernoulli_distribution neg(0.5);
  for (int it = 0; it < 200000; ++it) {
    auto x = static_cast<float>(std::exp2(log2mag(rng)));
    if (neg(rng)) x = -x;
    const uint16_t h = f32_to_f16(x);
    const double r = f16_to_f32(h);
    if (std::fabs(x) >= 65520.0f) {
      ASSERT_TRUE(std::isinf(r)) << x;
      continue;
    }
    ASSERT_TRUE(std::isfinite(r)) << x;
    const double err = std::fabs(x - r), half_ulp = 0.5 * ulp_at(x, 11, -24);
    ASSERT_LE(err, half_ulp) << "x = " << x << " -> " << r;
    const uint16_t mag = h & 0x7fffu, sign = h & 0x8000u;
    if (mag > 0) {
      ASSERT_LE(err, std::fabs(x - f16_to_f32(static_cast<uint16_t>(sign | (mag - 1))))) << x;
    }
    if (mag < 0x7bff) {
      ASSERT_LE(err, std::fabs(x - f16_to_f32(static_cast<uint16_t>(sign | (mag + 1))))) << x;
    }
    if (err == half_ulp) {
      ASSERT_EQ(h & 1u, 0u) << "tie not to even: " << x;
    }
  }
}

TEST(Half, Bf16EveryValueRoundTrips) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const auto h = static_cast<uint16_t>(i);
    const float f = bf16_to_f32(h);
    if (bf16_is_nan(h)) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << h;
      ASSERT_TRUE(bf16_is_nan(f32_to_bf16(f))) << std::hex << h;
    } else {
      ASSERT_EQ(f32_to_bf16(f), h) << std::hex << h;
    }
  }
}

TEST(Half, Bf16SpecialValuesAndTies) {
  // Hand-made ties: 1 + 2^-8 lies exactly between 1 (0x3f80, even) and 1 + 2^-7 (0x3f81).
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x3f808000u)), 0x3f80);
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x3f818000u)), 0x3f82);  // between 0x3f81 and 0x3f82 -> even
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0xbf808000u)), 0xbf80);
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x3f808001u)), 0x3f81);  // just above the tie
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x3f807fffu)), 0x3f80);  // just below it
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x3f80ffffu)), 0x3f81);
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x3fffffffu)), 0x4000);  // carry into the exponent
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_bf16(INFINITY), 0x7f80);
  EXPECT_EQ(f32_to_bf16(-INFINITY), 0xff80);
  EXPECT_EQ(f32_to_bf16(FLT_MAX), 0x7f80);  // above the midpoint to 2^128: rounds to inf
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x7f7f7fffu)), 0x7f7f);
  // NaN stays NaN even when its payload sits only in the bits rounding would drop or carry out of.
  EXPECT_TRUE(bf16_is_nan(f32_to_bf16(f32_from_bits(0x7f800001u))));
  EXPECT_TRUE(bf16_is_nan(f32_to_bf16(f32_from_bits(0x7fffffffu))));
  EXPECT_TRUE(bf16_is_nan(f32_to_bf16(f32_from_bits(0xff800001u))));
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0xff800001u)) & 0x8000u, 0x8000u);
  EXPECT_EQ(f32_to_bf16(FLT_TRUE_MIN), 0x0000);  // f32 subnormals: bf16 has the same exponent range
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x00010000u)), 0x0001);
}

TEST(Half, Bf16RoundsToNearestEven) {
  std::mt19937 rng(2);
  std::uniform_int_distribution<uint32_t> bits(0, 0xffffffffu);
  for (int it = 0; it < 200000; ++it) {
    const float x = f32_from_bits(bits(rng));
    if (!std::isfinite(x)) continue;
    const uint16_t h = f32_to_bf16(x);
    const double r = bf16_to_f32(h);
    if (std::fabs(x) >= f32_from_bits(0x7f7f8000u)) {  // at or above the midpoint to 2^128
      ASSERT_TRUE(std::isinf(r)) << x;
      continue;
    }
    const double err = std::fabs(static_cast<double>(x) - r), half_ulp = 0.5 * ulp_at(x, 8, -133);
    ASSERT_LE(err, half_ulp) << "x = " << x << " -> " << r;
    const uint16_t mag = h & 0x7fffu, sign = h & 0x8000u;
    if (mag > 0) {
      ASSERT_LE(err, std::fabs(x - static_cast<double>(bf16_to_f32(static_cast<uint16_t>(sign | (mag - 1))))));
    }
    if (mag < 0x7f7f) {
      ASSERT_LE(err, std::fabs(x - static_cast<double>(bf16_to_f32(static_cast<uint16_t>(sign | (mag + 1))))));
    }
    if (err == half_ulp && err > 0) {
      ASSERT_EQ(h & 1u, 0u) << "tie not to even: " << x;
    }
  }
}

TEST(Dtype, ConvertToF32MatchesScalarConversions) {
  std::mt19937 rng(3);
  const Vec src = random_vec(rng, 37, -300.0f, 300.0f);
  std::vector<uint16_t> h16(src.size()), b16(src.size());
  for (size_t i = 0; i < src.size(); ++i) h16[i] = f32_to_f16(src[i]), b16[i] = f32_to_bf16(src[i]);
  Vec dst(src.size());
  convert_to_f32(DType::F32, src.data(), dst.data(), 37);
  EXPECT_EQ(dst, src);
  convert_to_f32(DType::F16, h16.data(), dst.data(), 37);
  for (size_t i = 0; i < src.size(); ++i) EXPECT_EQ(dst[i], f16_to_f32(h16[i])) << i;
  convert_to_f32(DType::BF16, b16.data(), dst.data(), 37);
  for (size_t i = 0; i < src.size(); ++i) EXPECT_EQ(dst[i], bf16_to_f32(b16[i])) << i;
  EXPECT_EQ(dtype_row_bytes(DType::F32, 7), 28u);
  EXPECT_EQ(dtype_row_bytes(DType::F16, 7), 14u);
  EXPECT_EQ(dtype_row_bytes(DType::BF16, 7), 14u);
}

// The first NaN/Inf of F32/F16/BF16 data, wherever it falls relative to the scan's chunks; finite
// extremes (the largest finite values, subnormals, -0) never count.
TEST(Dtype, FirstNonFiniteFindsTheFirstAnywhere) {
  const int64_t n = 3 * 8192 + 77;
  std::vector<float> f(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) f[static_cast<size_t>(i)] = static_cast<float>(i % 1000) - 500.0f;
  f[5] = FLT_MAX, f[6] = -FLT_MAX, f[7] = -0.0f, f[8] = FLT_TRUE_MIN;
  std::vector<uint16_t> h(f.size()), b(f.size());
  for (size_t i = 0; i < f.size(); ++i) h[i] = f32_to_f16(f[i]), b[i] = f32_to_bf16(f[i]);
  h[5] = 0x7bff, h[6] = 0xfbff;  // the largest finite F16 and BF16 values
  b[5] = 0x7f7f, b[6] = 0xff7f;
  EXPECT_EQ(first_non_finite(DType::F32, f.data(), n), -1);
  EXPECT_EQ(first_non_finite(DType::F16, h.data(), n), -1);
  EXPECT_EQ(first_non_finite(DType::BF16, b.data(), n), -1);
  const float bad[] = {NAN, INFINITY, -INFINITY};
  for (const int64_t at : {int64_t{0}, int64_t{8191}, int64_t{8192}, int64_t{2 * 8192 + 5}, n - 1})
    for (const float v : bad) {
      std::vector<float> f2 = f;
      std::vector<uint16_t> h2 = h, b2 = b;
      f2[static_cast<size_t>(at)] = v, h2[static_cast<size_t>(at)] = f32_to_f16(v),
      b2[static_cast<size_t>(at)] = f32_to_bf16(v);
      if (at + 3 < n) {  // a later one does not hide the first
        f2[static_cast<size_t>(at + 3)] = NAN, h2[static_cast<size_t>(at + 3)] = 0x7e00,
                                    b2[static_cast<size_t>(at + 3)] = 0x7fc0;
      }
      EXPECT_EQ(first_non_finite(DType::F32, f2.data(), n), at) << v;
      EXPECT_EQ(first_non_finite(DType::F16, h2.data(), n), at) << v;
      EXPECT_EQ(first_non_finite(DType::BF16, b2.data(), n), at) << v;
    }
}

// ---------------------------------------------------------------------------------------------
// vec.h

TEST(Vec, DotAxpyScaleMatchDouble) {
  std::mt19937 rng(4);
  // Around the 16-wide unrolling and at unaligned starting addresses.
  for (int64_t n : {0, 1, 3, 15, 16, 17, 31, 32, 33, 257, 1000}) {
    for (int64_t off : {0, 1, 3}) {
      SCOPED_TRACE(shape({{"n", n}, {"offset", off}}));
      const Vec a = random_vec(rng, n + off), b = random_vec(rng, n + off);
      double ref = 0, mag = 0;
      for (int64_t i = 0; i < n; ++i) {
        ref += static_cast<double>(a[off + i]) * b[off + i];
        mag += std::fabs(static_cast<double>(a[off + i]) * b[off + i]);
      }
      // Float accumulation: error bounded by a few eps times sum|a_i b_i|.
      EXPECT_NEAR(dot(a.data() + off, b.data() + off, n), ref, 1e-6 * mag + 1e-30);

      Vec y = random_vec(rng, n + off), y0 = y;
      axpy(y.data() + off, 0.7f, a.data() + off, n);
      std::vector<double> yref(y0.begin(), y0.end());
      for (int64_t i = 0; i < n; ++i) yref[off + i] += 0.7 * a[off + i];
      EXPECT_TRUE(all_close(y, yref, 2.5e-7, 1e-7));  // one rounding (or an FMA) per element
      for (int64_t i = 0; i < off; ++i) EXPECT_EQ(y[i], y0[i]) << "wrote before the start";

      y = y0;
      scale(y.data() + off, -1.5f, n);
      for (int64_t i = 0; i < off; ++i) EXPECT_EQ(y[i], y0[i]);
      for (int64_t i = 0; i < n; ++i) EXPECT_EQ(y[off + i], -1.5f * y0[off + i]);  // exact in float
    }
  }
}

// add_to / copy: each element exactly once, on one thread or split between several (from 65,536
// elements, across 16,384-element pieces with a short last one), nothing outside [0, n).
TEST(Vec, AddToAndCopyCoverEveryElementOnce) {
  std::mt19937 rng(27);
  for (int64_t n : {0, 1, 17, 65535, 65536, 3 * 16384 + 5, 786432}) {
    SCOPED_TRACE(shape({{"n", n}}));
    const Vec x = random_vec(rng, n + 2);
    Vec y = random_vec(rng, n + 2);
    const Vec y0 = y;
    add_to(y.data() + 1, x.data() + 1, n);
    for (int64_t i = 0; i < n + 2; ++i) {
      const bool inside = i >= 1 && i <= n;
      ASSERT_EQ(y[i], inside ? y0[i] + x[i] : y0[i]) << i;  // one float add, no other arithmetic
    }
    Vec d(static_cast<size_t>(n + 2), NAN);
    copy(d.data() + 1, x.data() + 1, n);
    EXPECT_TRUE(std::isnan(d[0]) && std::isnan(d[static_cast<size_t>(n + 1)]));
    EXPECT_EQ(0, std::memcmp(d.data() + 1, x.data() + 1, static_cast<size_t>(n) * sizeof(float)));
  }
}

// The same inputs give the same bits wherever the buffers sit: no path chosen by address (alias
// checks, alignment peeling) may round differently from another. Attention relies on this for
// the zero-gate and KV-cache identities.
TEST(Vec, ResultDoesNotDependOnAddresses) {
  std::mt19937 rng(25);
  for (int64_t n : {1, 7, 8, 9, 15, 16, 17, 24, 33, 64}) {
    SCOPED_TRACE(shape({{"n", n}}));
    const Vec x = random_vec(rng, n), y0 = random_vec(rng, n);
    Vec far = y0;  // far from x
    axpy(far.data(), 0.37f, x.data(), n);
    const float d_far = dot(x.data(), y0.data(), n);
    // x and y side by side in one buffer, y right after x, right before it, or a few floats apart.
    Vec buf(static_cast<size_t>(4 * n + 64));
    for (int64_t gap : {0, 1, 3, 8, 16}) {
      for (bool y_first : {false, true}) {
        float* xb = buf.data() + (y_first ? n + gap : 0);
        float* yb = buf.data() + (y_first ? 0 : n + gap);
        std::copy(x.begin(), x.end(), xb);
        std::copy(y0.begin(), y0.end(), yb);
        EXPECT_EQ(dot(xb, yb, n), d_far) << "gap=" << gap << " y_first=" << y_first;
        axpy(yb, 0.37f, xb, n);
        EXPECT_EQ(0, std::memcmp(yb, far.data(), static_cast<size_t>(n) * sizeof(float)))
            << "gap=" << gap << " y_first=" << y_first;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// matmul.h

// A weight matrix stored in `type`, from uniform random values.
struct StoredWeights {
  DType type;
  int64_t rows, cols;
  Vec f32;
  std::vector<uint16_t> half;
  StoredWeights(std::mt19937& rng, DType t, int64_t n, int64_t k) : type(t), rows(n), cols(k) {
    f32 = random_vec(rng, n * k);
    if (t == DType::F16) half.resize(f32.size());
    if (t == DType::BF16) half.resize(f32.size());
    for (size_t i = 0; i < half.size(); ++i) half[i] = t == DType::F16 ? f32_to_f16(f32[i]) : f32_to_bf16(f32[i]);
  }
  WeightMatrix view() const {
    WeightMatrix w;
    w.type = type;
    w.data = type == DType::F32 ? static_cast<const void*>(f32.data()) : half.data();
    w.rows = rows;
    w.cols = cols;
    return w;
  }
};

constexpr DType kTypes[] = {DType::F32, DType::F16, DType::BF16};
constexpr int64_t kMs[] = {1, 2, 3, 7, 17, 64, 130};
constexpr int64_t kNKs[] = {1, 3, 5, 31, 64, 127, 257};  // 257: three 128-row blocks of W

// Shapes for the fast-vs-reference sweep: every (N, K) pair of kNKs, with M chosen as a Latin
// square so every M also meets every N and every K once (49 shapes per type instead of 343; the
// typed paths open an OpenMP region per call).
template <class F>
void for_each_shape(F&& f) {
  for (size_t in = 0; in < std::size(kNKs); ++in)
    for (size_t ik = 0; ik < std::size(kNKs); ++ik) f(kMs[(in + ik + 1) % std::size(kMs)], kNKs[in], kNKs[ik]);
}

// Fast path vs reference on the same stored weights (both dequantize the same way), so the only
// difference is float vs double accumulation: 1e-4 * (1 + max|ref|).
TEST(Matmul, NtMatchesReference) {
  std::mt19937 rng(5);
  for (DType t : kTypes)
    for_each_shape([&](int64_t M, int64_t N, int64_t K) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " " + shape({{"M", M}, {"N", N}, {"K", K}}));
      const StoredWeights W(rng, t, N, K);
      const Vec x = random_vec(rng, M * K);
      Vec out(static_cast<size_t>(M * N), NAN), ref(static_cast<size_t>(M * N));
      matmul_nt(out.data(), x.data(), W.view(), M);
      matmul_nt_ref(ref.data(), x.data(), W.view(), M);
      EXPECT_TRUE(all_close(out, ref, 1e-4, 1e-4));
    });
}

TEST(Matmul, NnMatchesReferenceAndOverwrites) {
  std::mt19937 rng(6);
  for (DType t : kTypes)
    for_each_shape([&](int64_t M, int64_t N, int64_t K) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " " + shape({{"M", M}, {"N", N}, {"K", K}}));
      const StoredWeights W(rng, t, N, K);
      const Vec dy = random_vec(rng, M * N);
      // accumulate = false must overwrite whatever was there, NaN included.
      Vec out(static_cast<size_t>(M * K), NAN), ref(static_cast<size_t>(M * K), NAN);
      matmul_nn(out.data(), dy.data(), W.view(), M, false);
      matmul_nn_ref(ref.data(), dy.data(), W.view(), M, false);
      EXPECT_TRUE(all_close(out, ref, 1e-4, 1e-4));
    });
}

// The stored weights really are what the reference multiplies by: matmul_nt_ref against a
// product written here from the scalar conversions, so a wrong row stride or dequantisation in
// the shared path would not hide behind fast == ref.
TEST(Matmul, ReferenceUsesStoredWeights) {
  std::mt19937 rng(26);
  for (DType t : kTypes) {
    SCOPED_TRACE(dtype_name(t));
    const int64_t M = 3, N = 5, K = 7;
    const StoredWeights W(rng, t, N, K);
    const Vec x = random_vec(rng, M * K);
    Vec ref(static_cast<size_t>(M * N));
    matmul_nt_ref(ref.data(), x.data(), W.view(), M);
    std::vector<double> want(ref.size());
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k) {
          const size_t i = static_cast<size_t>(n * K + k);
          const float wv = t == DType::F32   ? W.f32[i]
                           : t == DType::F16 ? f16_to_f32(W.half[i])
                                             : bf16_to_f32(W.half[i]);
          s += static_cast<double>(x[m * K + k]) * wv;
        }
        want[m * N + n] = s;
      }
    EXPECT_TRUE(all_close(ref, want, 1e-6, 1e-7));
  }
}

TEST(Matmul, NnAccumulateAddsToExistingContents) {
  std::mt19937 rng(7);
  for (DType t : kTypes)
    for (auto [M, N, K] : {std::tuple<int64_t, int64_t, int64_t>{1, 5, 3}, {3, 257, 31}, {17, 130, 64}, {2, 1, 1}}) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " " + shape({{"M", M}, {"N", N}, {"K", K}}));
      const StoredWeights W(rng, t, N, K);
      const Vec dy = random_vec(rng, M * N);
      const Vec before = random_vec(rng, M * K, -10.0f, 10.0f);
      Vec product(static_cast<size_t>(M * K));
      matmul_nn_ref(product.data(), dy.data(), W.view(), M, false);
      std::vector<double> expected(before.size());
      for (size_t i = 0; i < expected.size(); ++i) expected[i] = static_cast<double>(before[i]) + product[i];

      Vec out = before;
      matmul_nn(out.data(), dy.data(), W.view(), M, true);
      EXPECT_TRUE(all_close(out, expected, 1e-5, 1e-4));
      Vec ref = before;
      matmul_nn_ref(ref.data(), dy.data(), W.view(), M, true);
      EXPECT_TRUE(all_close(ref, expected, 1e-6, 1e-6));
    }
}

TEST(Matmul, DegenerateShapes) {
  std::mt19937 rng(8);
  const StoredWeights W(rng, DType::F16, 5, 3);
  Vec out(15, 42.0f);
  matmul_nt(out.data(), nullptr, W.view(), 0);  // M = 0: nothing read, nothing written
  matmul_nn(out.data(), nullptr, W.view(), 0, false);
  EXPECT_EQ(out, Vec(15, 42.0f));
  // N = 0: dX = dY · W is an empty sum.
  WeightMatrix empty;
  empty.type = DType::BF16;
  empty.rows = 0;
  empty.cols = 3;
  Vec dx(6, 42.0f);
  matmul_nn(dx.data(), nullptr, empty, 2, true);
  EXPECT_EQ(dx, Vec(6, 42.0f));
  matmul_nn(dx.data(), nullptr, empty, 2, false);
  EXPECT_EQ(dx, Vec(6, 0.0f));
}

// The typed paths split W across OpenMP threads; the split must not change the answer.
TEST(Matmul, SameResultOnOneAndTwoThreads) {
  std::mt19937 rng(9);
  const int saved = omp_get_max_threads();
  for (DType t : {DType::F16, DType::BF16})
    for (int64_t M : {1, 5, 33}) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " " + shape({{"M", M}}));
      const int64_t N = 300, K = 129;  // three row blocks, uneven last one
      const StoredWeights W(rng, t, N, K);
      const Vec x = random_vec(rng, M * K), dy = random_vec(rng, M * N);
      Vec nt1(static_cast<size_t>(M * N)), nt2 = nt1, nn1(static_cast<size_t>(M * K)), nn2 = nn1;
      omp_set_num_threads(1);
      matmul_nt(nt1.data(), x.data(), W.view(), M);
      matmul_nn(nn1.data(), dy.data(), W.view(), M, false);
      omp_set_num_threads(2);
      matmul_nt(nt2.data(), x.data(), W.view(), M);
      matmul_nn(nn2.data(), dy.data(), W.view(), M, false);
      omp_set_num_threads(saved);
      EXPECT_TRUE(all_close(nt2, nt1, 1e-5, 1e-5));
      EXPECT_TRUE(all_close(nn2, nn1, 1e-5, 1e-5));
    }
  EXPECT_EQ(omp_get_max_threads(), saved);
}

// ---------------------------------------------------------------------------------------------
// ops.h: rmsnorm

constexpr int64_t kRows[] = {1, 2, 3, 7, 17};
constexpr int64_t kDims[] = {1, 3, 5, 31, 64, 127, 257, 4096};

TEST(RmsNorm, ForwardMatchesReference) {
  std::mt19937 rng(10);
  for (int64_t rows : kRows)
    for (int64_t dim : kDims) {
      SCOPED_TRACE(shape({{"rows", rows}, {"dim", dim}}));
      const Vec x = random_vec(rng, rows * dim, -3.0f, 3.0f), w = random_vec(rng, dim, 0.5f, 1.5f);
      Vec out(x.size()), ref(x.size()), rstd(static_cast<size_t>(rows)), rstd_ref(rstd.size());
      rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), rows, dim, 1e-5f);
      rmsnorm_forward_ref(ref.data(), rstd_ref.data(), x.data(), w.data(), rows, dim, 1e-5f);
      // float sum of squares vs double: a few eps relative.
      EXPECT_TRUE(all_close(out, ref, 1e-5, 1e-6));
      EXPECT_TRUE(all_close(rstd, rstd_ref, 1e-5, 0));
      rmsnorm_forward(out.data(), nullptr, x.data(), w.data(), rows, dim, 1e-5f);  // rstd optional
      EXPECT_TRUE(all_close(out, ref, 1e-5, 1e-6));
    }
}

// Both backwards accumulate into dx.
TEST(RmsNorm, BackwardMatchesReferenceAndAccumulates) {
  std::mt19937 rng(11);
  for (int64_t rows : kRows)
    for (int64_t dim : kDims) {
      if (dim > 257 && rows > 1) continue;  // the reference is O(dim^2) per row
      SCOPED_TRACE(shape({{"rows", rows}, {"dim", dim}}));
      const Vec x = random_vec(rng, rows * dim, -3.0f, 3.0f), w = random_vec(rng, dim, 0.5f, 1.5f);
      const Vec dout = random_vec(rng, rows * dim), dx0 = random_vec(rng, rows * dim);
      Vec out(x.size()), rstd(static_cast<size_t>(rows));
      rmsnorm_forward_ref(out.data(), rstd.data(), x.data(), w.data(), rows, dim, 1e-5f);
      Vec dx = dx0, dx_ref = dx0, grad(x.size(), 0.0f);
      rmsnorm_backward(dx.data(), dout.data(), x.data(), w.data(), rstd.data(), rows, dim);
      rmsnorm_backward_ref(dx_ref.data(), dout.data(), x.data(), w.data(), rstd.data(), rows, dim);
      rmsnorm_backward_ref(grad.data(), dout.data(), x.data(), w.data(), rstd.data(), rows, dim);
      EXPECT_TRUE(all_close(dx, dx_ref, 1e-5, 1e-5));
      std::vector<double> sum(x.size());
      for (size_t i = 0; i < sum.size(); ++i) sum[i] = static_cast<double>(dx0[i]) + grad[i];
      EXPECT_TRUE(all_close(dx_ref, sum, 1e-6, 1e-6));
    }
}

// dx against central differences of L = sum(rmsnorm(x) * R), forward in the double reference.
TEST(RmsNorm, BackwardMatchesFiniteDifferences) {
  std::mt19937 rng(12);
  for (int64_t dim : {2, 3, 17, 64}) {
    SCOPED_TRACE(shape({{"dim", dim}}));
    const int64_t rows = 3;
    Vec x = random_vec(rng, rows * dim, -2.0f, 2.0f);
    const Vec w = random_vec(rng, dim, 0.5f, 1.5f), R = random_vec(rng, rows * dim);
    Vec out(x.size()), rstd(static_cast<size_t>(rows));
    auto loss = [&] {
      rmsnorm_forward_ref(out.data(), nullptr, x.data(), w.data(), rows, dim, 1e-5f);
      return weighted_sum(out, R);
    };
    const std::vector<double> fd = numeric_grad(x, 1e-3f, loss);
    rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), rows, dim, 1e-5f);
    Vec dx(x.size(), 0.0f);
    rmsnorm_backward(dx.data(), R.data(), x.data(), w.data(), rstd.data(), rows, dim);
    ASSERT_GT(max_abs(fd), 1e-2);
    EXPECT_TRUE(all_close(dx, fd, 2e-3, 1e-4));
  }
}

// ---------------------------------------------------------------------------------------------
// ops.h: RoPE

constexpr RopeStyle kStyles[] = {RopeStyle::Interleaved, RopeStyle::Half};
const char* style_name(RopeStyle s) {
  return s == RopeStyle::Interleaved ? "interleaved" : "half";
}

std::vector<int32_t> random_positions(std::mt19937& rng, int64_t rows, int32_t max_pos) {
  std::uniform_int_distribution<int32_t> u(0, max_pos - 1);
  std::vector<int32_t> pos(static_cast<size_t>(rows));
  for (auto& p : pos) p = u(rng);
  pos.front() = 0;  // the identity rotation
  if (rows > 1) pos.back() = max_pos - 1;
  return pos;
}

TEST(Rope, MatchesReference) {
  std::mt19937 rng(13);
  const int32_t max_pos = 4096;
  for (float theta : {10000.0f, 500000.0f})
    for (int64_t hd : {2, 4, 6, 8, 64, 128}) {
      const RopeTable table(max_pos, hd, theta);
      ASSERT_EQ(table.head_dim(), hd);
      ASSERT_EQ(table.max_pos(), max_pos);
      for (RopeStyle style : kStyles)
        for (bool inverse : {false, true})
          for (int64_t heads : {1, 3}) {
            SCOPED_TRACE(std::string(style_name(style)) + (inverse ? " inverse " : " ") +
                         shape({{"head_dim", hd}, {"heads", heads}, {"theta", static_cast<int64_t>(theta)}}));
            const int64_t rows = 7;
            const std::vector<int32_t> pos = random_positions(rng, rows, max_pos);
            const Vec x = random_vec(rng, rows * heads * hd);
            Vec fast = x, ref = x;
            rope_apply(fast.data(), rows, heads, pos.data(), table, style, inverse);
            rope_apply_ref(ref.data(), rows, heads, hd, pos.data(), theta, style, inverse);
            // Float table and arithmetic vs double angles: a few eps of the magnitude.
            EXPECT_TRUE(all_close(fast, ref, 1e-5, 1e-6));
            for (int64_t i = 0; i < heads * hd; ++i) EXPECT_EQ(fast[i], x[i]) << "position 0 must not move";
          }
    }
}

TEST(Rope, InverseUndoesForward) {
  std::mt19937 rng(14);
  const RopeTable table(2048, 64, 10000.0f);
  for (RopeStyle style : kStyles) {
    SCOPED_TRACE(style_name(style));
    const std::vector<int32_t> pos = random_positions(rng, 9, 2048);
    const Vec x = random_vec(rng, 9 * 4 * 64);
    Vec y = x;
    rope_apply(y.data(), 9, 4, pos.data(), table, style, false);
    EXPECT_FALSE(all_close(y, x, 1e-3, 0)) << "the rotation must move something";
    rope_apply(y.data(), 9, 4, pos.data(), table, style, true);
    EXPECT_TRUE(all_close(y, x, 1e-5, 0));
  }
}

// Half style is interleaved style in another element order: x[2i] <-> x[i], x[2i+1] <-> x[i + d/2]
// (the permutation Hugging Face applies to q/k rows). The same float operations, so exact.
TEST(Rope, HalfIsInterleavedUnderPermutation) {
  std::mt19937 rng(15);
  const int64_t hd = 16, heads = 2, rows = 5;
  const RopeTable table(64, hd, 10000.0f);
  const std::vector<int32_t> pos = random_positions(rng, rows, 64);
  const Vec x = random_vec(rng, rows * heads * hd);
  Vec perm(x.size());
  for (int64_t r = 0; r < rows * heads; ++r)
    for (int64_t i = 0; i < hd / 2; ++i) {
      perm[r * hd + i] = x[r * hd + 2 * i];
      perm[r * hd + i + hd / 2] = x[r * hd + 2 * i + 1];
    }
  Vec inter = x;
  rope_apply(inter.data(), rows, heads, pos.data(), table, RopeStyle::Interleaved, false);
  rope_apply(perm.data(), rows, heads, pos.data(), table, RopeStyle::Half, false);
  for (int64_t r = 0; r < rows * heads; ++r)
    for (int64_t i = 0; i < hd / 2; ++i) {
      EXPECT_FLOAT_EQ(perm[r * hd + i], inter[r * hd + 2 * i]);
      EXPECT_FLOAT_EQ(perm[r * hd + i + hd / 2], inter[r * hd + 2 * i + 1]);
    }
}

// The backward of y = rope(x) is dx = rope^T(dy) = rope_inverse(dy); checked by central
// differences of L = sum(rope(x) * R). RoPE is linear, so FD is exact up to rounding.
TEST(Rope, BackwardIsInverseRotation) {
  std::mt19937 rng(16);
  const int64_t hd = 8, heads = 2, rows = 4;
  const RopeTable table(512, hd, 10000.0f);
  for (RopeStyle style : kStyles) {
    SCOPED_TRACE(style_name(style));
    const std::vector<int32_t> pos = random_positions(rng, rows, 512);
    Vec x = random_vec(rng, rows * heads * hd);
    const Vec R = random_vec(rng, x.size());
    Vec y(x.size());
    auto loss = [&] {
      y = x;
      rope_apply(y.data(), rows, heads, pos.data(), table, style, false);
      return weighted_sum(y, R);
    };
    const std::vector<double> fd = numeric_grad(x, 1e-2f, loss);
    Vec dx = R;
    rope_apply(dx.data(), rows, heads, pos.data(), table, style, true);
    EXPECT_TRUE(all_close(dx, fd, 1e-3, 1e-5));
    Vec wrong = R;  // the forward rotation is not the backward: the check can tell them apart
    rope_apply(wrong.data(), rows, heads, pos.data(), table, style, false);
    EXPECT_FALSE(all_close(wrong, fd, 1e-3, 1e-5));
  }
}

// ---------------------------------------------------------------------------------------------
// ops.h: SwiGLU and softmax

// fast_exp against double exp over its whole range (a dense sweep, every rounding step of n),
// and its edges: exactly 0 below -87 and for -inf, capped at exp(88), NaN stays NaN.
TEST(FastExp, RelativeErrorAndEdges) {
  double worst = 0;
  for (float x = -87.0f; x <= 88.0f; x += 0.000731f) {
    const double want = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::fabs(fast_exp(x) - want) / want);
  }
  EXPECT_LT(worst, 3e-7);
  std::printf("  fast_exp worst relative error on [-87, 88]: %.3g\n", worst);
  EXPECT_EQ(fast_exp(0.0f), 1.0f);
  EXPECT_EQ(fast_exp(-87.5f), 0.0f);
  EXPECT_EQ(fast_exp(-1000.0f), 0.0f);
  EXPECT_EQ(fast_exp(-INFINITY), 0.0f);
  EXPECT_NEAR(fast_exp(1000.0f), std::exp(88.0), 1e-6 * std::exp(88.0));
  EXPECT_TRUE(std::isfinite(fast_exp(INFINITY)));
  EXPECT_TRUE(std::isnan(fast_exp(NAN)));
}

TEST(SwiGlu, MatchesReference) {
  std::mt19937 rng(17);
  for (int64_t n : {1, 3, 17, 1001}) {
    SCOPED_TRACE(shape({{"n", n}}));
    Vec a = random_vec(rng, n, -8.0f, 8.0f);
    const Vec b = random_vec(rng, n, -2.0f, 2.0f), dout = random_vec(rng, n);
    const float extremes[] = {-100.0f, -89.0f, -20.0f, -0.0f, 0.0f, 20.0f, 89.0f, 100.0f};
    for (size_t i = 0; i < std::min<size_t>(a.size(), std::size(extremes)); ++i) a[i] = extremes[i];
    Vec out(a.size()), ref(a.size()), da(a.size()), db(a.size()), da_ref(a.size()), db_ref(a.size());
    swiglu_forward(out.data(), a.data(), b.data(), n);
    swiglu_forward_ref(ref.data(), a.data(), b.data(), n);
    swiglu_backward(da.data(), db.data(), dout.data(), a.data(), b.data(), n);
    swiglu_backward_ref(da_ref.data(), db_ref.data(), dout.data(), a.data(), b.data(), n);
    // Elementwise: float exp vs double, a few eps of each element.
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_NEAR(out[i], ref[i], 1e-6 * (1 + std::fabs(ref[i]))) << "a=" << a[i];
      EXPECT_NEAR(da[i], da_ref[i], 1e-6 * (1 + std::fabs(da_ref[i]))) << "a=" << a[i];
      EXPECT_NEAR(db[i], db_ref[i], 1e-6 * (1 + std::fabs(db_ref[i]))) << "a=" << a[i];
    }
  }
}

// Every instruction-set variant of rowwise.h against double references: SwiGLU both ways, and
// the cross-entropy of a row (loss; gradient softmax - onehot, scaled), on lengths that cut the
// vector widths, a vocabulary-sized row, shifted logits and a -inf (masked) logit.
TEST(Rowwise, VariantsMatchDoubleReferences) {
  std::mt19937 rng(23);
  for (const RowwiseKernels* k : rowwise_variants()) {
    SCOPED_TRACE(k->name);
    for (int64_t n : {1, 7, 16, 33, 1001}) {
      const Vec a = random_vec(rng, n, -9.0f, 9.0f), b = random_vec(rng, n, -2.0f, 2.0f), dout = random_vec(rng, n);
      Vec out(a.size()), ref(a.size()), da(a.size()), db(a.size()), da_ref(a.size()), db_ref(a.size());
      k->swiglu_forward(out.data(), a.data(), b.data(), n);
      swiglu_forward_ref(ref.data(), a.data(), b.data(), n);
      k->swiglu_backward(da.data(), db.data(), dout.data(), a.data(), b.data(), n);
      swiglu_backward_ref(da_ref.data(), db_ref.data(), dout.data(), a.data(), b.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_NEAR(out[i], ref[i], 1e-6 * (1 + std::fabs(ref[i])));
        ASSERT_NEAR(da[i], da_ref[i], 1e-6 * (1 + std::fabs(da_ref[i])));
        ASSERT_NEAR(db[i], db_ref[i], 1e-6 * (1 + std::fabs(db_ref[i])));
      }
    }
    for (int64_t V : {1, 5, 17, 32000})
      for (float shift : {0.0f, 500.0f}) {
        Vec lg = random_vec(rng, V, -8.0f, 8.0f);
        for (float& x : lg) x += shift;
        if (V > 3) lg[2] = -INFINITY;
        const int64_t target = V - 1;
        double m = -INFINITY, z = 0;
        for (float x : lg) m = std::max(m, static_cast<double>(x));
        for (float x : lg) z += std::exp(x - m);
        const double loss_ref = m + std::log(z) - lg[static_cast<size_t>(target)];
        Vec g = lg;
        const float scale = 0.25f;
        EXPECT_NEAR(k->cross_entropy(lg.data(), V, target, scale, false), loss_ref, 1e-6 * (1 + std::fabs(loss_ref)));
        EXPECT_EQ(lg, g) << "no gradient asked: the row is untouched";
        EXPECT_NEAR(k->cross_entropy(g.data(), V, target, scale, true), loss_ref, 1e-6 * (1 + std::fabs(loss_ref)));
        for (int64_t j = 0; j < V; ++j) {
          const double want = scale * (std::exp(lg[static_cast<size_t>(j)] - m) / z - (j == target ? 1.0 : 0.0));
          ASSERT_NEAR(g[static_cast<size_t>(j)], want, 1e-6 * scale) << "V=" << V << " j=" << j;
        }
        if (V > 3) {
          EXPECT_EQ(g[2], 0.0f);
        }
      }
    // Attention score rows: n valid scores of a row of len (the rest masked), forward and backward
    // against double, lengths that cut the vector widths.
    for (int64_t len : {1, 10, 17, 128, 257})
      for (int64_t n : {int64_t{1}, len / 2 + 1, len}) {
        SCOPED_TRACE(shape({{"len", len}, {"n", n}}));
        const float scale = 0.125f;
        const Vec raw = random_vec(rng, len, -20.0f, 20.0f), dp = random_vec(rng, len);
        double m = -INFINITY, z = 0;
        for (int64_t j = 0; j < n; ++j) m = std::max(m, static_cast<double>(scale * raw[j]));
        for (int64_t j = 0; j < n; ++j) z += std::exp(scale * raw[j] - m);
        const double lse = m + std::log(z);
        Vec s = raw;
        ASSERT_NEAR(k->softmax(s.data(), n, len, scale), lse, 1e-6 * (1 + std::fabs(lse)));
        double D = 0;
        for (int64_t j = 0; j < n; ++j) D += std::exp(scale * raw[j] - lse) * dp[j];
        Vec p2 = raw, ds = dp;
        k->softmax_backward(p2.data(), ds.data(), n, len, scale, static_cast<float>(lse));
        for (int64_t j = 0; j < len; ++j) {
          const double p = j < n ? std::exp(scale * raw[j] - lse) : 0.0;
          ASSERT_NEAR(s[j], p, 1e-6 * (p + 1e-6)) << j;
          ASSERT_NEAR(p2[j], p, 1e-6 * (p + 1e-6)) << j;
          ASSERT_NEAR(ds[j], p * (dp[j] - D) * scale, 1e-6 * scale) << j;
        }
      }
  }
}

// CLIP's LayerNorm and QuickGELU: every variant against the double references, at widths that cut
// the vector lengths (1, odd, a ViT width), and rows with a large common offset (the mean matters).
TEST(Rowwise, LayerNormAndQuickGeluMatchReferences) {
  std::mt19937 rng(29);
  for (const RowwiseKernels* k : rowwise_variants()) {
    SCOPED_TRACE(k->name);
    for (int64_t n : {1, 7, 33, 768, 1024})
      for (float offset : {0.0f, 30.0f}) {
        Vec x = random_vec(rng, n, -3.0f, 3.0f);
        for (float& v : x) v += offset;
        const Vec w = random_vec(rng, n, 0.5f, 1.5f), b = random_vec(rng, n), g = random_vec(rng, n, -12.0f, 12.0f);
        Vec out(x.size()), ref(x.size());
        k->layernorm(out.data(), x.data(), w.data(), b.data(), n, 1e-5f);
        layernorm_forward_ref(ref.data(), x.data(), w.data(), b.data(), 1, n, 1e-5f);
        for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(out[i], ref[i], 2e-5 * (1 + std::fabs(ref[i]))) << n << " " << i;
        Vec q = g, qref = g;
        k->quick_gelu(q.data(), n);
        quick_gelu_ref(qref.data(), n);
        for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(q[i], qref[i], 1e-6 * (1 + std::fabs(qref[i])));
      }
  }
  // The threaded front over rows gives each row's kernel result.
  const int64_t rows = 257, dim = 96;
  const Vec x = random_vec(rng, rows * dim), w = random_vec(rng, dim), b = random_vec(rng, dim);
  Vec out(x.size()), ref(x.size());
  layernorm_forward(out.data(), x.data(), w.data(), b.data(), rows, dim, 1e-5f);
  layernorm_forward_ref(ref.data(), x.data(), w.data(), b.data(), rows, dim, 1e-5f);
  for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], ref[i], 2e-5 * (1 + std::fabs(ref[i])));
}

// GELU (erf) and its derivative against central differences and the closed form in double.
TEST(Ops, GeluErfAndItsBackward) {
  for (double x : {-6.0, -1.3, -0.2, 0.0, 0.4, 2.5, 7.0}) {
    float v = static_cast<float>(x);
    gelu_erf(&v, 1);
    EXPECT_NEAR(v, 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))), 1e-6 * (1 + std::fabs(x)));
    const float xf = static_cast<float>(x), one = 1.0f;
    float d = 0;
    gelu_erf_backward(&d, &one, &xf, 1);
    auto f = [](double t) { return 0.5 * t * (1 + std::erf(t / std::sqrt(2.0))); };
    EXPECT_NEAR(d, (f(x + 1e-5) - f(x - 1e-5)) / 2e-5, 1e-5);
  }
}

// out_i depends on (a_i, b_i) only, so one shifted copy of the whole vector gives every partial.
TEST(SwiGlu, BackwardMatchesFiniteDifferences) {
  std::mt19937 rng(18);
  const int64_t n = 1000;
  const Vec a = random_vec(rng, n, -6.0f, 6.0f), b = random_vec(rng, n, -2.0f, 2.0f), R = random_vec(rng, n);
  const float h = 1e-3f;
  auto fd = [&](bool wrt_a) {
    Vec ap = a, am = a, bp = b, bm = b, op(a.size()), om(a.size());
    std::vector<double> g(a.size());
    for (size_t i = 0; i < a.size(); ++i) (wrt_a ? ap : bp)[i] += h, (wrt_a ? am : bm)[i] -= h;
    swiglu_forward_ref(op.data(), ap.data(), bp.data(), n);
    swiglu_forward_ref(om.data(), am.data(), bm.data(), n);
    for (size_t i = 0; i < a.size(); ++i) {
      const double step = wrt_a ? static_cast<double>(ap[i]) - am[i] : static_cast<double>(bp[i]) - bm[i];
      g[i] = (static_cast<double>(op[i]) - om[i]) * R[i] / step;
    }
    return g;
  };
  Vec da(a.size()), db(a.size());
  swiglu_backward(da.data(), db.data(), R.data(), a.data(), b.data(), n);
  EXPECT_TRUE(all_close(da, fd(true), 1e-3, 1e-4));
  EXPECT_TRUE(all_close(db, fd(false), 1e-3, 1e-4));
}

TEST(Softmax, MatchesDoubleAndIsShiftInvariant) {
  std::mt19937 rng(19);
  for (int64_t n : {1, 2, 3, 17, 257})
    for (float shift : {0.0f, 1000.0f, -1000.0f}) {
      SCOPED_TRACE(shape({{"n", n}, {"shift", static_cast<int64_t>(shift)}}));
      const Vec base = random_vec(rng, n, -5.0f, 5.0f);
      Vec x(base.size());
      for (size_t i = 0; i < x.size(); ++i) x[i] = base[i] + shift;  // exact-ish; ref uses x itself
      double m = -INFINITY;
      for (float v : x) m = std::max(m, static_cast<double>(v));
      double z = 0;
      for (float v : x) z += std::exp(v - m);
      std::vector<double> p(x.size());
      for (size_t i = 0; i < x.size(); ++i) p[i] = std::exp(x[i] - m) / z;
      const double lse = m + std::log(z);
      const float got = softmax_inplace(x.data(), n);
      EXPECT_TRUE(all_close(x, p, 1e-6, 1e-7));  // no overflow at +-1000
      EXPECT_NEAR(got, lse, 1e-6 * (1 + std::fabs(lse)));
      if (n == 1) {
        EXPECT_EQ(x[0], 1.0f);
      }
    }
  // A masked (-inf) entry gets exactly zero and does not disturb the rest.
  Vec x = {0.5f, -INFINITY, 1.5f};
  const float lse = softmax_inplace(x.data(), 3);
  EXPECT_EQ(x[1], 0.0f);
  EXPECT_NEAR(x[0], 1.0 / (1.0 + std::exp(1.0)), 1e-7);
  EXPECT_NEAR(lse, 1.5 + std::log1p(std::exp(-1.0)), 1e-6);
}

// ---------------------------------------------------------------------------------------------
// attention.h

// One attention problem: T query rows at pos0.. over pos0+T key/value rows, optional prompt.
struct AttnCase {
  AttentionDims d;
  int64_t T = 0, pos0 = 0, plen = 0;
  Vec q, k, v, pk, pv, gamma;

  AttnCase(std::mt19937& rng, int64_t H, int64_t Hkv, int64_t hd, int64_t T_, int64_t pos0_, int64_t plen_)
      : T(T_), pos0(pos0_), plen(plen_) {
    d.n_heads = H, d.n_kv_heads = Hkv, d.head_dim = hd;
    // Scores of order 1: softmaxes that are neither uniform nor one-hot.
    q = random_vec(rng, T * d.q_dim(), -1.5f, 1.5f);
    k = random_vec(rng, (pos0 + T) * d.kv_dim(), -1.5f, 1.5f);
    v = random_vec(rng, (pos0 + T) * d.kv_dim());
    pk = random_vec(rng, plen * d.kv_dim(), -1.5f, 1.5f);
    pv = random_vec(rng, plen * d.kv_dim());
    gamma = random_vec(rng, H, 0.3f, 1.0f);
    for (size_t h = 0; h < gamma.size(); h += 2) gamma[h] = -gamma[h];
  }
  PromptKV prompt_kv() const { return PromptKV{pk.data(), pv.data(), gamma.data(), plen}; }
  const PromptKV* prompt(PromptKV& p) const {
    p = prompt_kv();
    return plen > 0 ? &p : nullptr;
  }
  std::string name() const {
    return shape(
        {{"H", d.n_heads}, {"Hkv", d.n_kv_heads}, {"hd", d.head_dim}, {"T", T}, {"pos0", pos0}, {"plen", plen}});
  }
  // Output and log-sum-exps of the fast forward.
  void forward(Vec& out, Vec& lse_tok, Vec& lse_prompt) const {
    out.assign(static_cast<size_t>(T * d.q_dim()), NAN);
    lse_tok.assign(static_cast<size_t>(d.n_heads * T), NAN);
    lse_prompt.assign(static_cast<size_t>(d.n_heads * T), NAN);
    PromptKV p;
    attention_forward(out.data(), lse_tok.data(), lse_prompt.data(), q.data(), k.data(), v.data(), T, pos0, d,
                      prompt(p));
  }
  // L = sum(out * R) with the double-accumulating reference forward.
  double loss(const Vec& R) const {
    Vec out(static_cast<size_t>(T * d.q_dim()));
    PromptKV p;
    attention_forward_ref(out.data(), q.data(), k.data(), v.data(), T, pos0, d, prompt(p));
    return weighted_sum(out, R);
  }
};

// log(sum_j exp(scale * q·key_j)) over `n` keys of kv head g, in double.
double lse_ref(const float* qt, const float* keys, int64_t n, int64_t g, const AttentionDims& d) {
  std::vector<double> s(static_cast<size_t>(n));
  double m = -INFINITY;
  for (int64_t j = 0; j < n; ++j) {
    double a = 0;
    for (int64_t i = 0; i < d.head_dim; ++i)
      a += static_cast<double>(qt[i]) * keys[j * d.kv_dim() + g * d.head_dim + i];
    s[j] = a / std::sqrt(static_cast<double>(d.head_dim));
    m = std::max(m, s[j]);
  }
  double z = 0;
  for (double x : s) z += std::exp(x - m);
  return m + std::log(z);
}

struct HeadConfig {
  int64_t H, Hkv, hd;
};

TEST(Attention, ForwardMatchesReference) {
  std::mt19937 rng(20);
  // Plain, grouped (8/4, 6/3), multi-query (Hkv = 1), odd and size-1 head dims; {8, 2, 64} is
  // big enough to take the threaded path; 128 (LLaMA-7B's heads: two blocks of 64 values in the
  // weighted sums) and 196 (past the zero row of padding keys, and not a multiple of 8).
  const HeadConfig configs[] = {{1, 1, 1}, {4, 4, 8},  {8, 4, 4},   {8, 1, 8},
                                {6, 3, 5}, {8, 2, 64}, {4, 2, 128}, {2, 1, 196}};
  for (const auto& c : configs)
    for (int64_t T : {1, 2, 7, 17, 32, 45, 130})  // from 32 rows: the blocked path (128-row blocks)
      for (int64_t pos0 : {0, 3, 11})
        for (int64_t plen : {0, 1, 3, 10}) {
          const AttnCase ac(rng, c.H, c.Hkv, c.hd, T, pos0, plen);
          SCOPED_TRACE(ac.name());
          Vec out, lse_tok, lse_prompt, ref(static_cast<size_t>(T * ac.d.q_dim()));
          ac.forward(out, lse_tok, lse_prompt);
          PromptKV p;
          attention_forward_ref(ref.data(), ac.q.data(), ac.k.data(), ac.v.data(), T, pos0, ac.d, ac.prompt(p));
          // Float dots and softmax vs double: 2e-5 of the magnitude.
          ASSERT_TRUE(all_close(out, ref, 2e-5, 2e-5));

          std::vector<double> lt(lse_tok.size()), lp(lse_tok.size());
          for (int64_t h = 0; h < c.H; ++h)
            for (int64_t t = 0; t < T; ++t) {
              const float* qt = ac.q.data() + t * ac.d.q_dim() + h * c.hd;
              const int64_t g = h / (c.H / c.Hkv);
              lt[h * T + t] = lse_ref(qt, ac.k.data(), pos0 + t + 1, g, ac.d);
              if (plen > 0) lp[h * T + t] = lse_ref(qt, ac.pk.data(), plen, g, ac.d);
            }
          ASSERT_TRUE(all_close(lse_tok, lt, 1e-5, 1e-5));
          if (plen > 0) {
            ASSERT_TRUE(all_close(lse_prompt, lp, 1e-5, 1e-5));
          }

          // The log-sum-exps are optional outputs.
          Vec out2(out.size());
          attention_forward(out2.data(), nullptr, nullptr, ac.q.data(), ac.k.data(), ac.v.data(), T, pos0, ac.d,
                            ac.prompt(p));
          ASSERT_EQ(0, std::memcmp(out2.data(), out.data(), out.size() * sizeof(float)));
        }
}

// Decoding over a KV cache: rows pos0.. computed against the cache equal the same rows of one
// causal pass over the whole sequence (chunked prefill and one token at a time).
TEST(Attention, CacheRowsEqualFullCausalRows) {
  std::mt19937 rng(21);
  for (const auto& c : {HeadConfig{8, 4, 8}, HeadConfig{4, 4, 16}, HeadConfig{4, 1, 8}})
    for (int64_t plen : {0, 3}) {
      const int64_t S = 13;
      const AttnCase full(rng, c.H, c.Hkv, c.hd, S, 0, plen);
      SCOPED_TRACE(full.name());
      const int64_t qdim = full.d.q_dim();
      Vec out_full, lse_full, lsep_full;
      full.forward(out_full, lse_full, lsep_full);
      PromptKV p;
      for (int64_t pos0 : {1, 5, 12}) {
        const int64_t T = S - pos0;
        Vec out(static_cast<size_t>(T * qdim)), lse(static_cast<size_t>(c.H * T));
        attention_forward(out.data(), lse.data(), nullptr, full.q.data() + pos0 * qdim, full.k.data(), full.v.data(), T,
                          pos0, full.d, full.prompt(p));
        const Vec want(out_full.begin() + pos0 * qdim, out_full.end());
        EXPECT_TRUE(all_close(out, want, 1e-6, 1e-7)) << "pos0=" << pos0;
        for (int64_t h = 0; h < c.H; ++h)
          for (int64_t t = 0; t < T; ++t) EXPECT_NEAR(lse[h * T + t], lse_full[h * S + pos0 + t], 1e-6);
      }
      for (int64_t pos = 0; pos < S; ++pos) {  // one token at a time
        Vec out(static_cast<size_t>(qdim));
        attention_forward(out.data(), nullptr, nullptr, full.q.data() + pos * qdim, full.k.data(), full.v.data(), 1,
                          pos, full.d, full.prompt(p));
        const Vec want(out_full.begin() + pos * qdim, out_full.begin() + (pos + 1) * qdim);
        EXPECT_TRUE(all_close(out, want, 1e-6, 1e-7)) << "pos=" << pos;
      }
    }
}

// A zero-initialised gate must reproduce the base model bit for bit, yet still receive a gradient
// (otherwise the adapter could never start learning).
// T = 40 takes the blocked matrix-product form of both branches.
TEST(Attention, ZeroGateIsExactlyTheBaseModel) {
  std::mt19937 rng(22);
  for (const auto& [c, T] : {std::pair{HeadConfig{8, 4, 8}, int64_t{9}}, std::pair{HeadConfig{4, 4, 4}, int64_t{9}},
                             std::pair{HeadConfig{8, 4, 8}, int64_t{40}}}) {
    AttnCase ac(rng, c.H, c.Hkv, c.hd, T, 0, 3);
    SCOPED_TRACE(ac.name());
    std::fill(ac.gamma.begin(), ac.gamma.end(), 0.0f);
    const size_t n = static_cast<size_t>(ac.T * ac.d.q_dim());
    Vec base(n), base_lse(static_cast<size_t>(c.H * ac.T)), gated(n), lse_tok(base_lse.size()),
        lse_prompt(base_lse.size());
    attention_forward(base.data(), base_lse.data(), nullptr, ac.q.data(), ac.k.data(), ac.v.data(), ac.T, 0, ac.d,
                      nullptr);
    const PromptKV p = ac.prompt_kv();
    attention_forward(gated.data(), lse_tok.data(), lse_prompt.data(), ac.q.data(), ac.k.data(), ac.v.data(), ac.T, 0,
                      ac.d, &p);
    EXPECT_EQ(0, std::memcmp(base.data(), gated.data(), n * sizeof(float)));
    EXPECT_EQ(0, std::memcmp(base_lse.data(), lse_tok.data(), base_lse.size() * sizeof(float)));

    // Opening one gate changes that head's columns only.
    const int64_t open = 1;
    ac.gamma[open] = 0.5f;
    Vec one(n);
    attention_forward(one.data(), nullptr, nullptr, ac.q.data(), ac.k.data(), ac.v.data(), ac.T, 0, ac.d, &p);
    for (int64_t t = 0; t < ac.T; ++t)
      for (int64_t h = 0; h < c.H; ++h) {
        const size_t at = static_cast<size_t>(t * ac.d.q_dim() + h * c.hd), len = static_cast<size_t>(c.hd);
        const bool same = std::memcmp(one.data() + at, base.data() + at, len * sizeof(float)) == 0;
        EXPECT_EQ(same, h != open) << "t=" << t << " h=" << h;
      }
    ac.gamma[open] = 0.0f;

    const Vec R = random_vec(rng, static_cast<int64_t>(n));
    Vec dq(n), dk(ac.k.size()), dv(ac.v.size()), dpk(ac.pk.size(), NAN), dpv(ac.pv.size(), NAN),
        dgamma(ac.gamma.size(), NAN);
    attention_backward(dq.data(), dk.data(), dv.data(), dpk.data(), dpv.data(), dgamma.data(), R.data(), ac.q.data(),
                       ac.k.data(), ac.v.data(), lse_tok.data(), lse_prompt.data(), ac.T, ac.d, &p);
    for (int64_t h = 0; h < c.H; ++h) EXPECT_GT(std::fabs(dgamma[h]), 1e-3) << "h=" << h;
    std::vector<double> fd = numeric_grad(ac.gamma, 1e-2f, [&] { return ac.loss(R); });
    EXPECT_TRUE(all_close(dgamma, fd, 1e-3, 1e-5));
    // With the gate shut the prompt keys and values do not reach the output.
    EXPECT_EQ(dpk, Vec(dpk.size(), 0.0f));
    EXPECT_EQ(dpv, Vec(dpv.size(), 0.0f));
  }
}

// Every gradient of attention_backward against central differences of the reference forward.
// `degenerate`: one query row over one key and one prompt row, where both softmaxes are constant
// (probability 1) and dq, dk, dprompt_k are exactly zero; then they must come out ~0.
void check_backward_by_fd(AttnCase& ac, std::mt19937& rng, bool degenerate = false) {
  SCOPED_TRACE(ac.name());
  const int64_t n = ac.T * ac.d.q_dim();
  const Vec R = random_vec(rng, n);
  Vec out, lse_tok, lse_prompt;
  ac.forward(out, lse_tok, lse_prompt);
  PromptKV p;
  const PromptKV* prompt = ac.prompt(p);
  // NaN-filled: the backward overwrites its outputs.
  Vec dq(static_cast<size_t>(n), NAN), dk(ac.k.size(), NAN), dv(ac.v.size(), NAN), dpk(ac.pk.size(), NAN),
      dpv(ac.pv.size(), NAN), dgamma(ac.gamma.size(), NAN);
  attention_backward(dq.data(), dk.data(), dv.data(), dpk.data(), dpv.data(), dgamma.data(), R.data(), ac.q.data(),
                     ac.k.data(), ac.v.data(), lse_tok.data(), lse_prompt.data(), ac.T, ac.d, prompt);

  auto loss = [&] { return ac.loss(R); };
  // FD error is dominated by rounding the reference output to float (~1e-7 relative) over the
  // step 2h = 2e-2, and by the h^2 truncation term: 2e-3 of the largest gradient.
  const float h = 1e-2f;
  const double rel = 2e-3, abs = 2e-5;
  auto check = [&](const char* what, const Vec& got, Vec& param) {
    const std::vector<double> fd = numeric_grad(param, h, loss);
    if (!degenerate) {
      ASSERT_GT(max_abs(fd), 1e-3) << what << ": vanishing gradient, the check would be empty";
    }
    EXPECT_TRUE(all_close(got, fd, rel, abs)) << what;
  };
  check("dq", dq, ac.q);
  check("dk", dk, ac.k);
  check("dv", dv, ac.v);
  if (ac.plen > 0) {
    check("dprompt_k", dpk, ac.pk);
    check("dprompt_v", dpv, ac.pv);
    check("dgamma", dgamma, ac.gamma);

    // Without the token gradients (lowest adapted layer) the prompt gradients are the same.
    Vec dpk2(dpk.size(), NAN), dpv2(dpv.size(), NAN), dgamma2(dgamma.size(), NAN);
    attention_backward(nullptr, nullptr, nullptr, dpk2.data(), dpv2.data(), dgamma2.data(), R.data(), ac.q.data(),
                       ac.k.data(), ac.v.data(), lse_tok.data(), lse_prompt.data(), ac.T, ac.d, prompt);
    EXPECT_TRUE(all_close(dpk2, dpk, 1e-6, 1e-7));
    EXPECT_TRUE(all_close(dpv2, dpv, 1e-6, 1e-7));
    EXPECT_TRUE(all_close(dgamma2, dgamma, 1e-6, 1e-7));
  }
}

TEST(Attention, BackwardMatchesFiniteDifferences) {
  std::mt19937 rng(23);
  AttnCase gqa(rng, 8, 4, 4, 9, 0, 3);
  check_backward_by_fd(gqa, rng);
  AttnCase plain(rng, 4, 4, 8, 7, 0, 3);
  check_backward_by_fd(plain, rng);
  AttnCase mqa(rng, 4, 1, 6, 5, 0, 3);
  check_backward_by_fd(mqa, rng);
  AttnCase no_prompt(rng, 4, 2, 4, 6, 0, 0);
  check_backward_by_fd(no_prompt, rng);
  AttnCase single(rng, 2, 1, 5, 1, 0, 1);
  check_backward_by_fd(single, rng, /*degenerate=*/true);
  // From 32 rows both branches are blocked matrix products (with AVX-512), the prompt too.
  AttnCase blocked(rng, 4, 2, 8, 34, 0, 3);
  check_backward_by_fd(blocked, rng);
}

// The same q/k stored in the rotate-half layout (each head's pair i at columns i and i + hd/2)
// give bit-identical outputs, in the per-pair kernels and the blocked path alike.
TEST(Attention, RotateHalfLayoutIsBitIdentical) {
  std::mt19937 rng(26);
  for (int64_t hd : {16, 128})
    for (int64_t T : {1, 9, 45})
      for (int64_t plen : {0, 10}) {
        AttnCase ac(rng, 4, 2, hd, T, 3, plen);
        SCOPED_TRACE(ac.name());
        Vec out, lse_tok, lse_prompt;
        ac.forward(out, lse_tok, lse_prompt);
        const int64_t hd = ac.d.head_dim, half = hd / 2;
        auto to_half = [&](Vec& m) {
          Vec r = m;
          for (size_t row = 0; row < m.size() / hd; ++row)
            for (int64_t i = 0; i < half; ++i) {
              r[row * hd + i] = m[row * hd + 2 * i];
              r[row * hd + i + half] = m[row * hd + 2 * i + 1];
            }
          m = r;
        };
        to_half(ac.q), to_half(ac.k), to_half(ac.pk);
        ac.d.rope_half = true;
        Vec out2, lse_tok2, lse_prompt2;
        ac.forward(out2, lse_tok2, lse_prompt2);
        EXPECT_EQ(0, std::memcmp(out.data(), out2.data(), out.size() * sizeof(float)));
        EXPECT_EQ(0, std::memcmp(lse_tok.data(), lse_tok2.data(), lse_tok.size() * sizeof(float)));
      }
}

// Few query rows (decode) take whole groups of query heads per task when the kv heads are enough
// for the threads, else one head per task: the bits must not depend on which.
TEST(Attention, FewRowsSameBitsForAnyThreadCount) {
  std::mt19937 rng(27);
  const int saved = omp_get_max_threads();
  for (const auto& c : {HeadConfig{8, 2, 64}, HeadConfig{8, 4, 16}, HeadConfig{4, 1, 128}})
    for (int64_t T : {1, 3})
      for (int64_t plen : {0, 10}) {
        const AttnCase ac(rng, c.H, c.Hkv, c.hd, T, 97, plen);
        SCOPED_TRACE(ac.name());
        Vec want, lse_want, lsep_want;
        omp_set_num_threads(1);
        ac.forward(want, lse_want, lsep_want);
        for (int threads : {2, 3, 8}) {
          omp_set_num_threads(threads);
          Vec out, lse, lsep;
          ac.forward(out, lse, lsep);
          EXPECT_EQ(0, std::memcmp(out.data(), want.data(), out.size() * sizeof(float))) << threads << " threads";
          EXPECT_EQ(0, std::memcmp(lse.data(), lse_want.data(), lse.size() * sizeof(float))) << threads << " threads";
        }
      }
  omp_set_num_threads(saved);
}

// Sizes that take the threaded backward and the blocked one (T = 130: two query blocks), checked
// along one random direction per input: L(x + h u) - L(x - h u) against grad · (the step taken).
TEST(Attention, BackwardDirectionalDerivativeLarge) {
  std::mt19937 rng(24);
  for (const auto& [c, T, plen] : {std::tuple{HeadConfig{8, 2, 64}, int64_t{33}, int64_t{10}},
                                   std::tuple{HeadConfig{4, 2, 16}, int64_t{130}, int64_t{3}},
                                   std::tuple{HeadConfig{3, 3, 6}, int64_t{40}, int64_t{0}}}) {
    AttnCase ac(rng, c.H, c.Hkv, c.hd, T, 0, plen);
    SCOPED_TRACE(ac.name());
    const int64_t n = ac.T * ac.d.q_dim();
    const Vec R = random_vec(rng, n);
    Vec out, lse_tok, lse_prompt;
    ac.forward(out, lse_tok, lse_prompt);
    const PromptKV p = ac.prompt_kv();
    Vec dq(static_cast<size_t>(n)), dk(ac.k.size()), dv(ac.v.size()), dpk(ac.pk.size()), dpv(ac.pv.size()),
        dgamma(ac.gamma.size());
    attention_backward(dq.data(), dk.data(), dv.data(), dpk.data(), dpv.data(), dgamma.data(), R.data(), ac.q.data(),
                       ac.k.data(), ac.v.data(), lse_tok.data(), lse_prompt.data(), ac.T, ac.d, &p);
    auto check = [&](const char* what, const Vec& grad, Vec& param) {
      const Vec x0 = param, u = random_vec(rng, static_cast<int64_t>(param.size()));
      const float h = 1e-2f;
      Vec plus(param.size()), minus(param.size());
      for (size_t i = 0; i < param.size(); ++i) plus[i] = x0[i] + h * u[i], minus[i] = x0[i] - h * u[i];
      param = plus;
      const double lp = ac.loss(R);
      param = minus;
      const double lm = ac.loss(R);
      param = x0;
      double predicted = 0, scale = 0;
      for (size_t i = 0; i < param.size(); ++i) {
        const double step = static_cast<double>(plus[i]) - minus[i];
        predicted += grad[i] * step;
        scale += std::fabs(grad[i] * step);
      }
      EXPECT_NEAR(lp - lm, predicted, 1e-4 * scale) << what;  // measured: ~1e-6 * scale
    };
    check("dq", dq, ac.q);
    check("dk", dk, ac.k);
    check("dv", dv, ac.v);
    if (plen > 0) {
      check("dprompt_k", dpk, ac.pk);
      check("dprompt_v", dpv, ac.pv);
      check("dgamma", dgamma, ac.gamma);
    }
  }
}

}  // namespace
}  // namespace la
