// The fused F32/F16/BF16 weight-row products of gemv.h (matmul_nt's decode path for float
// weights): every instruction-set variant against a double-precision product of the stored values
// within the f32 rounding bound of its summation, the variants against each other, every f16 and
// bf16 value through the in-register conversions, and the properties matmul_nt relies on: a row's
// result does not depend on M, on the range of weight rows or on the thread count.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "la/core/half.h"
#include "la/core/runtime.h"
#include "la/kernels/gemv.h"
#include "la/kernels/matmul.h"

namespace la {
namespace {

constexpr DType kTypes[] = {DType::F32, DType::F16, DType::BF16};

// A weight matrix in stored form plus the f32 value of every stored element.
struct Weights {
  DType type;
  int64_t rows, cols;
  std::vector<float> f32;        // the stored data when type is F32, else the decoded values
  std::vector<uint16_t> halves;  // F16 / BF16 storage
  WeightMatrix view() const {
    return {type, type == DType::F32 ? static_cast<const void*>(f32.data()) : halves.data(), rows, cols};
  }
  float at(int64_t n, int64_t k) const { return f32[static_cast<size_t>(n * cols + k)]; }
};

float decode(DType t, uint16_t h) {
  return t == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
}

Weights make_weights(DType t, int64_t N, int64_t K, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Weights w{t, N, K, std::vector<float>(static_cast<size_t>(N * K)), {}};
  for (auto& v : w.f32) v = u(rng);
  if (t != DType::F32) {
    w.halves.resize(w.f32.size());
    for (size_t i = 0; i < w.f32.size(); ++i) {
      w.halves[i] = t == DType::F16 ? f32_to_f16(w.f32[i]) : f32_to_bf16(w.f32[i]);
      w.f32[i] = decode(t, w.halves[i]);
    }
  }
  return w;
}

std::vector<float> make_x(int64_t M, int64_t K, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(M * K));
  for (auto& v : x) v = nd(rng);
  return x;
}

// Rounding bound of the kernels' f32 sums. Each product x_k w_k is exact (FMA; the generic variant
// rounds it once) and then passes through at most ceil(K/16) + 1 additions into its partial sum
// (16 partial sums at least: 2 chains x 8 or 16 lanes, or 16 in the generic loop, plus one for the
// leftover vector and one for the tail) and at most 5 levels of the pairwise reduction (2 chains,
// then 16 lanes). With d such steps, |y - Σ x_k w_k| <= γ_d Σ |x_k w_k|, γ_d = d u / (1 - d u),
// u = 2^-24 (Higham, Accuracy and Stability of Numerical Algorithms, §3.1). The double reference is
// exact to ~K 2^-53 relative, far below.
double gamma_bound(int64_t K) {
  const double d = static_cast<double>((K + 15) / 16 + 7), u = std::ldexp(1.0, -24);
  return d * u / (1 - d * u);
}

// ref[m*N + n] = Σ_k x[m,k] w[n,k] in double, and mag the same sum of |x w|.
void reference(const Weights& w, const std::vector<float>& x, int64_t M, std::vector<double>* ref,
               std::vector<double>* mag) {
  const int64_t N = w.rows, K = w.cols;
  ref->assign(static_cast<size_t>(M * N), 0.0);
  mag->assign(ref->size(), 0.0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = 0, a = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double p = static_cast<double>(x[static_cast<size_t>(m * K + k)]) * w.at(n, k);
        s += p;
        a += std::fabs(p);
      }
      (*ref)[static_cast<size_t>(m * N + n)] = s;
      (*mag)[static_cast<size_t>(m * N + n)] = a;
    }
}

TEST(Gemv, VariantsAreListed) {
  const auto v = gemv_variants();
  ASSERT_FALSE(v.empty());
  EXPECT_STREQ(v.front()->name, "generic");
  std::string names;
  bool listed = false;
  for (const auto* k : v) {
    names += std::string(k->name) + " ";
    listed |= k == &gemv_kernels();
  }
  std::printf("  variants on this CPU: %s; matmul_nt uses %s\n", names.c_str(), gemv_kernels().name);
  EXPECT_TRUE(listed);
  // The instruction set in force (LA_ISA in the per-ISA ctest runs) picks its variant; avx512vnni
  // is the avx512 one.
  const std::string isa = runtime().isa == "avx512vnni" ? "avx512" : runtime().isa;
  EXPECT_EQ(gemv_kernels().name, isa);
}

// Every variant on awkward shapes (K = 1, below one vector, one off a vector, one past a tile of
// chains, long with a tail; N = 1, not a whole tile, many tiles + 1; every M up to 8), against the
// double product within gamma_bound, and against the generic variant within twice that.
TEST(Gemv, VariantsMatchDoubleReferenceWithinRoundingBound) {
  const auto variants = gemv_variants();
  std::vector<double> worst(variants.size(), 0.0);
  for (DType t : kTypes)
    for (int64_t K : {1, 7, 15, 16, 17, 33, 4097})
      for (int64_t N : {1, 3, 65}) {
        const Weights w = make_weights(t, N, K, static_cast<uint32_t>(K * 131 + N));
        const auto x = make_x(8, K, static_cast<uint32_t>(K + 7 * N));
        std::vector<double> ref, mag;
        reference(w, x, 8, &ref, &mag);  // rows m < M of x are the same for every M
        const double g = gamma_bound(K);
        for (int64_t M = 1; M <= 8; ++M) {
          std::vector<float> gen(static_cast<size_t>(M * N), NAN);
          variants.front()->rows(gen.data(), N, w.view(), 0, N, x.data(), M);
          for (size_t v = 0; v < variants.size(); ++v) {
            const GemvKernels* k = variants[v];
            std::vector<float> out(static_cast<size_t>(M * N), NAN);
            k->rows(out.data(), N, w.view(), 0, N, x.data(), M);
            for (int64_t m = 0; m < M; ++m)
              for (int64_t n = 0; n < N; ++n) {
                const size_t i = static_cast<size_t>(m * N + n);
                ASSERT_LE(std::fabs(out[i] - ref[i]), g * mag[i])
                    << k->name << " " << dtype_name(t) << " K=" << K << " N=" << N << " M=" << M << " m=" << m
                    << " n=" << n << ": " << out[i] << " vs " << ref[i];
                ASSERT_LE(std::fabs(out[i] - gen[i]), 2 * g * mag[i])
                    << k->name << " vs generic, " << dtype_name(t) << " K=" << K << " N=" << N << " M=" << M;
                if (mag[i] > 0) worst[v] = std::max(worst[v], std::fabs(out[i] - ref[i]) / (g * mag[i]));
              }
          }
        }
      }
  for (size_t v = 0; v < variants.size(); ++v)
    std::printf("  %-8s worst |error| / bound = %.3f\n", variants[v]->name, worst[v]);
}

// The prefill tiles (F16/BF16 past kGemvMaxRows rows on AVX2): within the rounding bound of one
// chain of 8 lanes (d <= ceil(K/8) + 4), and each output the same bits whatever M (> 8), the
// range of weight rows and the threads are -- M around the 4-row tile, N not a multiple of the
// 3-row tile, K with a tail; matmul_nt takes them where they are available.
TEST(Gemv, PrefillTilesMatchTheReferenceAndDoNotDependOnMRangeOrThreads) {
  bool any = false;
  for (DType t : {DType::F16, DType::BF16}) {
    if (!gemv_prefill_available(t)) continue;
    any = true;
    const int64_t N = 67, K = 1000 + 9, Mmax = 19;
    const Weights w = make_weights(t, N, K, 21);
    const auto x = make_x(Mmax, K, 22);
    std::vector<double> ref, mag;
    reference(w, x, Mmax, &ref, &mag);
    const double d = static_cast<double>((K + 7) / 8 + 4), u = std::ldexp(1.0, -24), g = d * u / (1 - d * u);
    const GemvKernels& k = gemv_kernels();
    std::vector<float> all(static_cast<size_t>(Mmax * N), NAN);
    k.rows_prefill(all.data(), N, w.view(), 0, N, x.data(), Mmax);
    for (size_t i = 0; i < all.size(); ++i)
      ASSERT_LE(std::fabs(all[i] - ref[i]), g * mag[i]) << dtype_name(t) << " at " << i;
    for (int64_t M : {9, 11, 12, 13, 16}) {
      std::vector<float> part(static_cast<size_t>(M * N), -7.0f);
      k.rows_prefill(part.data(), N, w.view(), 1, N - 2, x.data(), M);
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
          const size_t i = static_cast<size_t>(m * N + n);
          ASSERT_EQ(part[i], n == 0 || n >= N - 2 ? -7.0f : all[i])
              << dtype_name(t) << " M=" << M << " m=" << m << " n=" << n;
        }
      const int saved = omp_get_max_threads();
      std::vector<float> one(static_cast<size_t>(M * N)), two(one.size()), mm(one.size());
      omp_set_num_threads(1);
      gemv_prefill_nt(one.data(), x.data(), w.view(), M);
      omp_set_num_threads(2);
      gemv_prefill_nt(two.data(), x.data(), w.view(), M);
      matmul_nt(mm.data(), x.data(), w.view(), M);
      omp_set_num_threads(saved);
      EXPECT_EQ(one, two) << dtype_name(t) << " M=" << M;
      EXPECT_EQ(std::vector<float>(all.begin(), all.begin() + M * N), one) << dtype_name(t) << " M=" << M;
      EXPECT_EQ(one, mm) << "matmul_nt " << dtype_name(t) << " M=" << M;
    }
  }
  if (!any) GTEST_SKIP() << "the prefill tiles run with the avx2 variant in force (no AVX-512 GEMM)";
}

// A row's result is the same bits whatever else shares the call: M rows at once equal M single
// rows, a sub-range of weight rows writes exactly those rows (tiles then start elsewhere), and
// gemv_nt gives the same on one and two threads.
TEST(Gemv, ResultDoesNotDependOnMRangeOrThreads) {
  const int64_t N = 67, K = 1000 + 9;  // N * K above gemv_nt's threading threshold
  for (DType t : kTypes) {
    const Weights w = make_weights(t, N, K, 3);
    const auto x = make_x(8, K, 4);
    for (const GemvKernels* k : gemv_variants()) {
      SCOPED_TRACE(std::string(k->name) + " " + dtype_name(t));
      std::vector<float> all(static_cast<size_t>(8 * N));
      k->rows(all.data(), N, w.view(), 0, N, x.data(), 8);
      for (int64_t M = 1; M <= 8; ++M) {
        std::vector<float> part(static_cast<size_t>(M * N), -7.0f);
        k->rows(part.data(), N, w.view(), 1, N - 2, x.data(), M);
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < N; ++n) {
            const size_t i = static_cast<size_t>(m * N + n);
            ASSERT_EQ(part[i], n == 0 || n >= N - 2 ? -7.0f : all[i]) << "M=" << M << " m=" << m << " n=" << n;
          }
      }
    }
    const int saved = omp_get_max_threads();
    for (int64_t M : {1, 3, 8}) {
      std::vector<float> one(static_cast<size_t>(M * N)), two(one.size());
      omp_set_num_threads(1);
      gemv_nt(one.data(), x.data(), w.view(), M);
      omp_set_num_threads(2);
      gemv_nt(two.data(), x.data(), w.view(), M);
      omp_set_num_threads(saved);
      EXPECT_EQ(one, two) << dtype_name(t) << " M=" << M;
      std::vector<float> direct(one.size());
      gemv_kernels().rows(direct.data(), N, w.view(), 0, N, x.data(), M);
      EXPECT_EQ(one, direct) << dtype_name(t) << " M=" << M;
    }
  }
}

// Every f16 / bf16 bit pattern through each variant's conversion: the 65536 values as 1024 rows of
// 64 (whole vectors, so the main loop's conversion and lane order are what is tested), one-hot x
// picking column j, so out[n] = w[n, j] exactly. Inf and NaN patterns are set to 0 here (0 · Inf
// is NaN) and checked below; K = 1 rows check the tail conversion of every value.
TEST(Gemv, EveryHalfValueConvertsExactly) {
  for (DType t : {DType::F16, DType::BF16}) {
    const uint16_t exp_mask = t == DType::F16 ? 0x7c00 : 0x7f80;
    std::vector<uint16_t> h(65536);
    for (size_t i = 0; i < h.size(); ++i) {
      const auto v = static_cast<uint16_t>(i);
      h[i] = (v & exp_mask) == exp_mask ? 0 : v;
    }
    const WeightMatrix w64{t, h.data(), 1024, 64}, w1{t, h.data(), 65536, 1};
    for (const GemvKernels* k : gemv_variants()) {
      SCOPED_TRACE(std::string(k->name) + " " + dtype_name(t));
      std::vector<float> out(65536);
      for (int64_t j = 0; j < 64; ++j) {
        std::vector<float> x(64, 0.0f);
        x[static_cast<size_t>(j)] = 1.0f;
        k->rows(out.data(), 1024, w64, 0, 1024, x.data(), 1);
        for (int64_t n = 0; n < 1024; ++n)
          ASSERT_EQ(out[static_cast<size_t>(n)], decode(t, h[static_cast<size_t>(n * 64 + j)]))
              << "n=" << n << " j=" << j;
      }
      const float one = 1.0f;
      k->rows(out.data(), 65536, w1, 0, 65536, &one, 1);
      for (size_t i = 0; i < h.size(); ++i) ASSERT_EQ(out[i], decode(t, h[i])) << std::hex << h[i];
    }
  }
}

// Inf and NaN weights (quiet and signalling), anywhere in a row including the tail, and
// non-finite activations, give non-finite results as the exact product would.
TEST(Gemv, NonFiniteValuesPropagate) {
  const int64_t K = 37;
  struct Special {
    DType t;
    uint16_t bits;
    float want;  // +inf, -inf or NaN
  };
  const Special specials[] = {{DType::F16, 0x7c00, INFINITY},  {DType::F16, 0xfc00, -INFINITY},
                              {DType::F16, 0x7e00, NAN},       {DType::F16, 0x7c01, NAN},
                              {DType::BF16, 0x7f80, INFINITY}, {DType::BF16, 0xff80, -INFINITY},
                              {DType::BF16, 0x7fc0, NAN},      {DType::BF16, 0x7f81, NAN}};
  const std::vector<float> x(K, 0.5f);
  for (const GemvKernels* k : gemv_variants())
    for (const Special& s : specials)
      for (int64_t j : {0, 5, 16, 31, 32, 36}) {
        std::vector<uint16_t> h(K, s.t == DType::F16 ? f32_to_f16(0.25f) : f32_to_bf16(0.25f));
        h[static_cast<size_t>(j)] = s.bits;
        float y = 0;
        k->rows(&y, 1, WeightMatrix{s.t, h.data(), 1, K}, 0, 1, x.data(), 1);
        if (std::isnan(s.want)) {
          EXPECT_TRUE(std::isnan(y)) << k->name << " " << std::hex << s.bits << " at " << std::dec << j;
        } else {
          EXPECT_EQ(y, s.want) << k->name << " " << std::hex << s.bits << " at " << std::dec << j;
        }
      }
  const Weights w = make_weights(DType::F16, 3, K, 1);
  for (float bad : {NAN, INFINITY})
    for (const GemvKernels* k : gemv_variants()) {
      auto xb = make_x(2, K, 2);
      xb[static_cast<size_t>(K + 33)] = bad;  // row 1, in the tail of every variant
      std::vector<float> y(6);
      k->rows(y.data(), 3, w.view(), 0, 3, xb.data(), 2);
      for (int n = 0; n < 3; ++n) {
        EXPECT_TRUE(std::isfinite(y[static_cast<size_t>(n)])) << k->name;
        EXPECT_FALSE(std::isfinite(y[static_cast<size_t>(3 + n)])) << k->name << " " << bad;
      }
    }
}

// matmul_nt takes this path for F32/F16/BF16 weights and 1..kGemvMaxRows rows, and only then.
TEST(Gemv, MatmulNtRouting) {
  const int64_t N = 70, K = 2048 + 5;
  for (DType t : kTypes) {
    const Weights w = make_weights(t, N, K, 9);
    for (int64_t M : {int64_t{1}, int64_t{2}, kGemvMaxRows, kGemvMaxRows + 1}) {
      const auto x = make_x(M, K, static_cast<uint32_t>(M));
      std::vector<float> y(static_cast<size_t>(M * N)), g(y.size());
      matmul_nt(y.data(), x.data(), w.view(), M);
      gemv_nt(g.data(), x.data(), w.view(), M);
      if (M <= kGemvMaxRows) {
        EXPECT_EQ(y, g) << dtype_name(t) << " M=" << M;
      }
      std::vector<double> ref, mag;
      reference(w, x, M, &ref, &mag);
      for (size_t i = 0; i < y.size(); ++i) {
        // Past kGemvMaxRows: sgemm, any summation order, products perhaps rounded: γ_{K+1}.
        const double kk = static_cast<double>(K + 1) * std::ldexp(1.0, -24);
        ASSERT_LE(std::fabs(y[i] - ref[i]), (M <= kGemvMaxRows ? gamma_bound(K) : kk / (1 - kk)) * mag[i])
            << dtype_name(t) << " M=" << M << " at " << i;
      }
    }
  }
}

}  // namespace
}  // namespace la
