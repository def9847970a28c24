// The quantised-activation kernels of quant_dot.h (matmul_nt's decode path for Q8_0/Q4_0):
// every instruction-set variant against the generic one (bit-identical quantised activations and
// int32 block sums, float results within summation-order rounding), the block sums against a
// decoding written here from quant.h's layouts, and the products against the exact f32 ones
// within the bound the activation rounding allows (and llama.cpp's test-quantize-fns bound).
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "la/core/error.h"
#include "la/core/half.h"
#include "la/kernels/matmul.h"
#include "la/kernels/quant.h"
#include "la/kernels/quant_dot.h"

namespace la {
namespace {

constexpr DType kTypes[] = {DType::Q8_0, DType::Q4_0};

// Weights in stored form plus their dequantised values.
struct Weights {
  std::vector<uint8_t> q;
  std::vector<float> f;
  WeightMatrix w;
};

Weights make_weights(DType t, int64_t N, int64_t K, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  std::vector<float> v(static_cast<size_t>(N * K));
  for (auto& x : v) x = nd(rng);
  for (size_t i = 0; i < v.size(); i += 37) v[i] *= 8.0f;  // outliers set some blocks' scales
  Weights w;
  w.q.resize(static_cast<size_t>(N) * dtype_row_bytes(t, K));
  quantize(t, v.data(), w.q.data(), N * K);
  w.f.resize(v.size());
  dequantize(t, w.q.data(), w.f.data(), N * K);
  w.w = WeightMatrix{t, w.q.data(), N, K};
  return w;
}

// Activations with blocks of very different magnitude, an all-zero block and exact ties.
std::vector<float> make_activations(int64_t M, int64_t K, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(M * K));
  for (int64_t i = 0; i < M * K; ++i) {
    const int64_t b = i / kQ8ActBlock;
    x[static_cast<size_t>(i)] = nd(rng) * (b % 3 == 0 ? 1.0f : b % 3 == 1 ? 1e-3f : 30.0f);
  }
  if (K >= 64)
    for (int64_t j = 32; j < 64; ++j) x[static_cast<size_t>(j)] = 0.0f;  // row 0, block 1
  x[0] = 127.0f;  // row 0, block 0: d = 1, so these land exactly on .5 (ties to even)
  if (K >= 4) x[1] = 2.5f, x[2] = -3.5f, x[3] = 0.5f;
  return x;
}

struct Quantised {
  std::vector<int8_t> qs;
  std::vector<float> d, d8;
  std::vector<int16_t> off4;
  std::vector<int32_t> bsum;
  int64_t cols = 0;
  Q8Activations row(int64_t m) {  // row m and those after it
    const int64_t K = cols;
    return {qs.data() + m * K,         d.data() + m * (K / 32),    d8.data() + m * (K / 4),
            off4.data() + m * (K / 4), bsum.data() + m * (K / 32), K};
  }
  Q8Activations view() { return row(0); }
};

Quantised quantise(const QuantDotKernels& k, const std::vector<float>& x, int64_t M, int64_t K) {
  Quantised q;
  q.qs.resize(static_cast<size_t>(M * K));
  q.d.resize(static_cast<size_t>(M * K / 32));
  q.d8.resize(static_cast<size_t>(M * K / 4));
  q.off4.resize(q.d8.size());
  q.bsum.resize(q.d.size());
  q.cols = K;
  for (int64_t m = 0; m < M; ++m) k.quantize_row(x.data() + m * K, q.row(m));
  return q;
}

// The stored integer of element e of a weight row, decoded from quant.h's layout comment.
int weight_int(DType t, const uint8_t* row, int64_t e) {
  const int64_t b = e / 32, j = e % 32;
  if (t == DType::Q8_0) return reinterpret_cast<const BlockQ8_0*>(row)[b].qs[j];
  const BlockQ4_0& blk = reinterpret_cast<const BlockQ4_0*>(row)[b];
  return (j < 16 ? blk.qs[j] & 0x0F : blk.qs[j - 16] >> 4) - 8;
}

float weight_scale(DType t, const uint8_t* row, int64_t b) {
  return f16_to_f32(t == DType::Q8_0 ? reinterpret_cast<const BlockQ8_0*>(row)[b].d
                                     : reinterpret_cast<const BlockQ4_0*>(row)[b].d);
}

// Of a variant's M-row result `out` (from q, x quantised): every `mstep`-th row computed alone
// gives the same bits (the M loop only reuses the weights), and a sub-range of weight rows
// writes exactly its columns.
void expect_rows_independent_and_ranged(const QuantDotKernels& k, const Weights& w, const std::vector<float>& x,
                                        Quantised& q, const std::vector<float>& out, int64_t M, int64_t N, int64_t K,
                                        int64_t mstep) {
  for (int64_t m = 0; m < M; m += mstep) {
    Quantised one = quantise(k, std::vector<float>(x.begin() + m * K, x.begin() + (m + 1) * K), 1, K);
    std::vector<float> o1(static_cast<size_t>(N));
    k.rows(o1.data(), N, w.w, 0, N, one.view(), 1);
    for (int64_t n = 0; n < N; ++n) ASSERT_EQ(o1[static_cast<size_t>(n)], out[static_cast<size_t>(m * N + n)]);
  }
  if (N < 3) return;
  std::vector<float> part(static_cast<size_t>(M * N), -7.0f);
  k.rows(part.data(), N, w.w, 1, N - 1, q.view(), M);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      const size_t i = static_cast<size_t>(m * N + n);
      ASSERT_EQ(part[i], n == 0 || n == N - 1 ? -7.0f : out[i]) << "m=" << m << " n=" << n;
    }
}

TEST(QuantDot, VariantsAreListed) {
  const auto v = quant_dot_variants();
  ASSERT_FALSE(v.empty());
  EXPECT_STREQ(v.front()->name, "generic");
  std::string names;
  for (const auto* k : v) names += std::string(k->name) + " ";
  std::printf("  variants on this CPU: %s; matmul_nt uses %s\n", names.c_str(), quant_dot_kernels().name);
  bool listed = false;
  for (const auto* k : v) listed |= k == &quant_dot_kernels();
  EXPECT_TRUE(listed);
}

// The quantiser does what quant_dot.h says: d = amax/127, q = round-half-even(x/d), and every
// value within half a step.
TEST(QuantDot, ActivationQuantisation) {
  const int64_t K = 4096 + 32;
  const auto x = make_activations(1, K, 11);
  Quantised q = quantise(*quant_dot_variants().front(), x, 1, K);
  for (int64_t b = 0; b < K / 32; ++b) {
    float amax = 0;
    for (int64_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[static_cast<size_t>(b * 32 + j)]));
    ASSERT_EQ(q.d[static_cast<size_t>(b)], amax / 127.0f) << b;
    for (int64_t j = 0; j < 32; ++j) {
      const size_t i = static_cast<size_t>(b * 32 + j);
      const float id = amax == 0.0f ? 0.0f : 1.0f / q.d[static_cast<size_t>(b)];
      ASSERT_EQ(q.qs[i], static_cast<int8_t>(std::nearbyint(x[i] * id))) << i;
      ASSERT_LE(std::abs(q.qs[i]), 127);
      ASSERT_LE(std::fabs(x[i] - q.qs[i] * q.d[static_cast<size_t>(b)]), 0.5 * q.d[static_cast<size_t>(b)] * (1 + 1e-5))
          << i;
    }
  }
  for (size_t i = 0; i < q.d8.size(); ++i) {
    ASSERT_EQ(q.d8[i], q.d[i / 8]) << i;
    ASSERT_EQ(q.off4[i], -8 * (q.qs[4 * i] + q.qs[4 * i + 1] + q.qs[4 * i + 2] + q.qs[4 * i + 3])) << i;
  }
  EXPECT_EQ(q.d[0], 1.0f);
  EXPECT_EQ(q.qs[1], 2);   // 2.5 -> 2
  EXPECT_EQ(q.qs[2], -4);  // -3.5 -> -4
  EXPECT_EQ(q.qs[3], 0);   // 0.5 -> 0
  EXPECT_EQ(q.d[1], 0.0f);
}

// Every variant against the generic one on awkward shapes: identical quantised activations and
// int32 block sums (which also match the sums decoded here), float row results within
// 1e-6 · Σ_b |d_w d_x| Σ_j |q_w q_x|, the scale of rounding in any summation order (the SIMD
// variants scale partial sums of 4 products lane by lane). Sub-ranges of rows touch nothing
// else, and each of M rows equals the M = 1 product.
TEST(QuantDot, VariantsMatchGenericBitForBitInTheIntegers) {
  const auto variants = quant_dot_variants();
  const QuantDotKernels& gen = *variants.front();
  const int64_t M = 10;  // two passes of 4 rows and one of 2
  for (DType t : kTypes)
    for (int64_t K : {32, 64, 96, 4096 + 32})
      for (int64_t N : {1, 3, 17, 130}) {
        const std::string what = std::string(dtype_name(t)) + " N=" + std::to_string(N) + " K=" + std::to_string(K);
        const Weights w = make_weights(t, N, K, static_cast<uint32_t>(N * 7 + K));
        const auto x = make_activations(M, K, static_cast<uint32_t>(K + 1));
        const int64_t nb = K / 32;
        Quantised qg = quantise(gen, x, M, K);
        // Reference block sums and the magnitude of the float terms, from this file's decoding.
        std::vector<int32_t> isum_ref(static_cast<size_t>(M * N * nb));
        std::vector<double> mag(static_cast<size_t>(M * N), 0.0), val(mag.size(), 0.0);
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < N; ++n) {
            const uint8_t* row = w.w.row_ptr(n);
            for (int64_t b = 0; b < nb; ++b) {
              int64_t s = 0, sabs = 0;
              for (int64_t j = 0; j < 32; ++j) {
                const int64_t p = static_cast<int64_t>(weight_int(t, row, b * 32 + j)) *
                                  qg.qs[static_cast<size_t>(m * K + b * 32 + j)];
                s += p;
                sabs += p < 0 ? -p : p;
              }
              isum_ref[static_cast<size_t>((m * N + n) * nb + b)] = static_cast<int32_t>(s);
              const double scale = weight_scale(t, row, b) * qg.d[static_cast<size_t>(m * nb + b)];
              val[static_cast<size_t>(m * N + n)] += scale * static_cast<double>(s);
              mag[static_cast<size_t>(m * N + n)] += std::fabs(scale) * static_cast<double>(sabs);
            }
          }
        std::vector<float> out_gen(static_cast<size_t>(M * N));
        gen.rows(out_gen.data(), N, w.w, 0, N, qg.view(), M);

        for (const QuantDotKernels* k : variants) {
          SCOPED_TRACE(std::string(k->name) + " " + what);
          Quantised q = quantise(*k, x, M, K);
          ASSERT_EQ(q.qs, qg.qs);
          ASSERT_EQ(0, std::memcmp(q.d.data(), qg.d.data(), q.d.size() * sizeof(float)));
          ASSERT_EQ(0, std::memcmp(q.d8.data(), qg.d8.data(), q.d8.size() * sizeof(float)));
          ASSERT_EQ(q.off4, qg.off4);
          std::vector<int32_t> isum(static_cast<size_t>(nb));
          for (int64_t m = 0; m < M; ++m)
            for (int64_t n = 0; n < N; ++n) {
              k->block_dots(t, w.w.row_ptr(n), q.row(m), isum.data());
              for (int64_t b = 0; b < nb; ++b)
                ASSERT_EQ(isum[static_cast<size_t>(b)], isum_ref[static_cast<size_t>((m * N + n) * nb + b)])
                    << "m=" << m << " n=" << n << " block " << b;
            }
          std::vector<float> out(static_cast<size_t>(M * N));
          k->rows(out.data(), N, w.w, 0, N, q.view(), M);
          for (size_t i = 0; i < out.size(); ++i) {
            const double tol = 1e-6 * mag[i] + 1e-30;
            ASSERT_NEAR(out[i], out_gen[i], tol) << "vs generic at " << i;
            ASSERT_NEAR(out[i], val[i], tol) << "vs Σ d_w d_x isum at " << i;
          }
          expect_rows_independent_and_ranged(*k, w, x, q, out, M, N, K, 1);
        }
      }
}

// Q4_K and Q6_K (super-blocks of 256, per-row kernels only): every variant against the stored
// weights (dequantised as ggml does) times the quantised activations d_x q_x, within the float
// rounding of the scalings; rows independent of M; a sub-range writes exactly its rows.
TEST(QuantDot, KQuantsMatchTheDequantisedProductOfTheQuantisedActivations) {
  const int64_t M = 10;
  for (DType t : {DType::Q4_K, DType::Q6_K})
    for (int64_t K : {256, 512, 2048 + 256})
      for (int64_t N : {1, 3, 17}) {
        const Weights w = make_weights(t, N, K, static_cast<uint32_t>(N * 5 + K));
        const auto x = make_activations(M, K, static_cast<uint32_t>(K + 3));
        for (const QuantDotKernels* k : quant_dot_variants()) {
          SCOPED_TRACE(std::string(k->name) + " " + dtype_name(t) + " N=" + std::to_string(N) +
                       " K=" + std::to_string(K));
          Quantised q = quantise(*k, x, M, K);
          std::vector<float> out(static_cast<size_t>(M * N));
          k->rows(out.data(), N, w.w, 0, N, q.view(), M);
          for (int64_t m = 0; m < M; ++m)
            for (int64_t n = 0; n < N; ++n) {
              double ref = 0, mag = 0;
              for (int64_t j = 0; j < K; ++j) {
                const double xq = static_cast<double>(q.d[static_cast<size_t>(m * (K / 32) + j / 32)]) *
                                  q.qs[static_cast<size_t>(m * K + j)];
                ref += xq * w.f[static_cast<size_t>(n * K + j)];
                mag += std::fabs(xq * w.f[static_cast<size_t>(n * K + j)]);
              }
              ASSERT_NEAR(out[static_cast<size_t>(m * N + n)], ref, 2e-6 * mag + 1e-30) << "m=" << m << " n=" << n;
            }
          expect_rows_independent_and_ranged(*k, w, x, q, out, M, N, K, 3);
        }
      }
}

// Against the exact product of the stored weights with the f32 activations: with
// x_j = d_x q_j + e_j and |e_j| <= d_x/2 the integer result is Σ_j w_j (x_j - e_j), so
//   |y - x·w| <= Σ_b d_x[b]/2 · Σ_{j in b} |w_j|
// (d_x·(1/d_x) is not exactly 1 in f32: a relative 1e-5 on the half step covers it), plus the
// float rounding of the block scalings and the sum: 1e-6 · Σ |x_j w_j|.
TEST(QuantDot, ProductIsWithinTheActivationRoundingBound) {
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K})
    for (int64_t K : {32, 96, 256, 4096 + 32, 2048 + 256})
      for (int64_t M : {1, 2, 8, 13}) {
        if (K % dtype_block_size(t) != 0) continue;
        const int64_t N = 37, nb = K / 32;
        const Weights w = make_weights(t, N, K, static_cast<uint32_t>(K + M));
        const auto x = make_activations(M, K, static_cast<uint32_t>(3 * K + M));
        std::vector<float> y(static_cast<size_t>(M * N));
        quant_matmul_nt(y.data(), x.data(), w.w, M);
        Quantised q = quantise(quant_dot_kernels(), x, M, K);
        double worst = 0;
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < N; ++n) {
            double exact = 0, bound = 0, mag = 0;
            for (int64_t b = 0; b < nb; ++b) {
              double wabs = 0;
              for (int64_t j = b * 32; j < b * 32 + 32; ++j) {
                const double xv = x[static_cast<size_t>(m * K + j)], wv = w.f[static_cast<size_t>(n * K + j)];
                exact += xv * wv;
                mag += std::fabs(xv * wv);
                wabs += std::fabs(wv);
              }
              bound += 0.5 * (1 + 1e-5) * q.d[static_cast<size_t>(m * nb + b)] * wabs;
            }
            bound += 1e-6 * mag;
            const double err = std::fabs(y[static_cast<size_t>(m * N + n)] - exact);
            worst = std::max(worst, err / bound);
            ASSERT_LE(err, bound) << dtype_name(t) << " K=" << K << " M=" << M << " m=" << m << " n=" << n;
          }
        std::printf("  %s K=%-5lld M=%lld: worst |error| / bound = %.3f\n", dtype_name(t), static_cast<long long>(K),
                    static_cast<long long>(M), worst);
      }
}

// llama.cpp's test-quantize-fns: weights quantised from 0.1 + 2 cos(i), activations
// 0.1 + 2 cos(i + 1), 4096 values; |vec_dot - exact f32 dot| / 4096 < MAX_DOT_PRODUCT_ERROR (0.02).
// Here the weight quantisation error counts too, as there.
TEST(QuantDot, LlamaCppDotProductErrorBound) {
  const int64_t n = 32 * 128;
  std::vector<float> a(static_cast<size_t>(n)), b(a.size());
  for (int64_t i = 0; i < n; ++i) {
    a[static_cast<size_t>(i)] = 0.1f + 2 * std::cos(static_cast<float>(i));
    b[static_cast<size_t>(i)] = 0.1f + 2 * std::cos(static_cast<float>(i) + 1.0f);
  }
  double ref = 0;
  for (int64_t i = 0; i < n; ++i) ref += static_cast<double>(a[static_cast<size_t>(i)]) * b[static_cast<size_t>(i)];
  for (DType t : kTypes) {
    std::vector<uint8_t> q(dtype_row_bytes(t, n));
    quantize(t, a.data(), q.data(), n);
    for (const QuantDotKernels* k : quant_dot_variants()) {
      Quantised x = quantise(*k, b, 1, n);
      float y = 0;
      k->rows(&y, 1, WeightMatrix{t, q.data(), 1, n}, 0, 1, x.view(), 1);
      const double err = std::fabs(y - ref) / static_cast<double>(n);
      std::printf("  %s %-10s dot error %.2e (llama.cpp's bound 0.02)\n", dtype_name(t), k->name, err);
      EXPECT_LT(err, 0.02) << dtype_name(t) << " " << k->name;
    }
  }
}

// Hand-made Q4_0 blocks: element e < 16 is the low nibble of byte e, element 16 + j the high
// nibble of byte j. Three blocks, so that the avx512 variants see both a two-block register and
// the odd last block. One-hot activations pick single elements out.
TEST(QuantDot, Q4_0NibbleOrder) {
  constexpr int kBlocks = 3, K = 32 * kBlocks;
  BlockQ4_0 blk[kBlocks]{};
  std::vector<int> value(K);  // the stored integer (nibble - 8) of each element
  for (int b = 0; b < kBlocks; ++b) {
    blk[b].d = f32_to_f16(0.5f * static_cast<float>(b + 1));
    for (int j = 0; j < 16; ++j) {
      const int lo = (j + 5 * b) % 16, hi = 15 - (j * 7 + b) % 16;  // unrelated permutations of 0..15
      blk[b].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
      value[static_cast<size_t>(32 * b + j)] = lo - 8;
      value[static_cast<size_t>(32 * b + j + 16)] = hi - 8;
    }
  }
  const WeightMatrix w{DType::Q4_0, blk, 1, K};
  for (const QuantDotKernels* k : quant_dot_variants())
    for (int e = 0; e < K; ++e) {
      std::vector<float> x(K, 0.0f);
      x[static_cast<size_t>(e)] = 2.0f;  // d_x = 2/127, q_x = 127
      Quantised q = quantise(*k, x, 1, K);
      int32_t isum[kBlocks];
      k->block_dots(DType::Q4_0, blk, q.view(), isum);
      for (int b = 0; b < kBlocks; ++b)
        ASSERT_EQ(isum[b], b == e / 32 ? 127 * value[static_cast<size_t>(e)] : 0) << k->name << " element " << e;
      float y = 0;
      k->rows(&y, 1, w, 0, 1, q.view(), 1);
      ASSERT_NEAR(y, 0.5 * (e / 32 + 1) * 2.0 * value[static_cast<size_t>(e)], 1e-5) << k->name << " element " << e;
    }
  // And a ramp against every element at once.
  std::vector<float> x(K);
  double want = 0, bound = 0;
  for (int e = 0; e < K; ++e) {
    x[static_cast<size_t>(e)] = static_cast<float>(e % 2 ? -(e % 32 + 1) : e % 32 + 1);
    const double we = 0.5 * (e / 32 + 1) * value[static_cast<size_t>(e)];
    want += x[static_cast<size_t>(e)] * we;
    bound += 0.5 * (32.0 / 127) * std::fabs(we);  // the activation rounding bound, d_x = 32/127
  }
  float y = 0;
  quant_matmul_nt(&y, x.data(), w, 1);
  EXPECT_NEAR(y, want, bound);
}

TEST(QuantDot, Q8_0HandMadeBlocksIncludingMinus128) {
  // -128 is not produced by ggml's quantiser but is a valid int8 in a file; the abs/sign trick
  // must handle it. Three blocks: a two-block register and the odd last one.
  constexpr int kBlocks = 3, K = 32 * kBlocks;
  BlockQ8_0 blk[kBlocks]{};
  for (int b = 0; b < kBlocks; ++b) {
    blk[b].d = f32_to_f16(0.25f);
    for (int j = 0; j < 32; ++j)
      blk[b].qs[j] = static_cast<int8_t>(j == 5 + b ? -128 : (j + b) % 2 ? 127 - 9 * j : -3 * j - b);
  }
  std::vector<float> x(K);
  for (int e = 0; e < K; ++e) x[static_cast<size_t>(e)] = static_cast<float>((e * 37) % 255 - 127);
  for (const QuantDotKernels* k : quant_dot_variants()) {
    Quantised q = quantise(*k, x, 1, K);
    int32_t isum[kBlocks];
    k->block_dots(DType::Q8_0, blk, q.view(), isum);
    for (int b = 0; b < kBlocks; ++b) {
      int32_t want = 0;
      for (int j = 0; j < 32; ++j) want += blk[b].qs[j] * q.qs[static_cast<size_t>(32 * b + j)];
      EXPECT_EQ(isum[b], want) << k->name << " block " << b;
    }
  }
}

// The integer GEMM's result, operation for operation (quant_gemm_kernels.h): each block's exact
// integer sum, then y = fma(float(isum), fl(d_w d_x), y) with the blocks in order.
// Q4_K block b (32 values) of a row, decoded here from quant.h's layout: the nibbles, d·sc and
// dmin·m of its sub-block.
void q4k_block(const uint8_t* row, int64_t b, int* nib, float* dw, float* mw) {
  const BlockQ4_K& blk = reinterpret_cast<const BlockQ4_K*>(row)[b / 8];
  const int s = static_cast<int>(b % 8);
  const uint8_t* q = blk.scales;
  const int sc = s < 4 ? q[s] & 63 : (q[s + 4] & 0x0F) | ((q[s - 4] >> 6) << 4);
  const int m = s < 4 ? q[s + 4] & 63 : (q[s + 4] >> 4) | ((q[s] >> 6) << 4);
  *dw = f16_to_f32(blk.d) * static_cast<float>(sc);
  *mw = f16_to_f32(blk.dmin) * static_cast<float>(m);
  for (int l = 0; l < 32; ++l) nib[l] = s % 2 == 0 ? blk.qs[32 * (s / 2) + l] & 0x0F : blk.qs[32 * (s / 2) + l] >> 4;
}

// Q6_K element e (0..255) of a super-block, unsigned 0..63, decoded here from quant.h's layout
// (each half of 128: ql bytes l and l+32 hold elements l, l+32 in their low nibbles and l+64,
// l+96 in their high ones; qh byte l holds their 2 high bits, in that order).
int q6k_element(const BlockQ6_K& blk, int e) {
  const int h = e / 128, r = e % 128, l = r % 32, quarter = r / 32;
  const uint8_t lo = blk.ql[64 * h + l + (quarter % 2) * 32];
  const int low4 = quarter < 2 ? lo & 0x0F : lo >> 4;
  return low4 | (((blk.qh[32 * h + l] >> (2 * quarter)) & 3) << 4);
}

std::vector<float> gemm_reference(const Weights& w, const Quantised& q, int64_t M, int64_t N, int64_t K) {
  const int64_t nb = K / 32;
  const size_t row_bytes = dtype_row_bytes(w.w.type, K);
  std::vector<float> y(static_cast<size_t>(M * N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      const uint8_t* row = w.q.data() + n * row_bytes;
      float acc = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        const float dx = q.d[static_cast<size_t>(m * nb + b)];
        int32_t isum = 0;
        if (w.w.type == DType::Q6_K) {  // two groups of 16, each its own scale and fma
          for (int half = 0; half < 2; ++half) {
            const BlockQ6_K& blk = reinterpret_cast<const BlockQ6_K*>(row)[b / 8];
            const int g = static_cast<int>(b % 8) * 2 + half;  // group within the super-block
            int32_t gsum = 0;
            for (int l = 0; l < 16; ++l)
              gsum += (q6k_element(blk, 16 * g + l) - 32) * q.qs[static_cast<size_t>(m * K + b * 32 + 16 * half + l)];
            const float dw = f16_to_f32(blk.d) * static_cast<float>(blk.scales[g]);
            acc = std::fma(static_cast<float>(gsum), dw * dx, acc);
          }
          continue;
        }
        if (w.w.type == DType::Q4_K) {
          int nib[32];
          float dw, mw;
          q4k_block(row, b, nib, &dw, &mw);
          for (int l = 0; l < 32; ++l) isum += nib[l] * q.qs[static_cast<size_t>(m * K + b * 32 + l)];
          acc = std::fma(static_cast<float>(isum), dw * dx, acc);
          acc = std::fma(-mw, dx * static_cast<float>(q.bsum[static_cast<size_t>(m * nb + b)]), acc);
          continue;
        }
        for (int64_t j = b * 32; j < b * 32 + 32; ++j) isum += weight_int(w.w.type, row, j) * q.qs[m * K + j];
        const float s = weight_scale(w.w.type, row, b) * dx;
        acc = std::fma(static_cast<float>(isum), s, acc);
      }
      y[static_cast<size_t>(m * N + n)] = acc;
    }
  return y;
}

// The integer GEMM (prefill on VNNI CPUs) against its operation-for-operation reference, bit for
// bit: row counts around the 6-row tile, weight rows cutting the 32-row panels, one block and
// many (Q4_K, Q6_K: one super-block and nine), Q8_0's -128, on 1 and 2 threads.
TEST(QuantDot, IntegerGemmMatchesItsReferenceBitForBit) {
  if (!quant_gemm_available()) GTEST_SKIP() << "no AVX512-VNNI (or LA_ISA forces another variant)";
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K})
    for (int64_t K : {32, 160, 256, 2048 + 256}) {
      if (K % dtype_block_size(t) != 0) continue;
      for (int64_t N : {1, 17, 32, 45, 97})
        for (int64_t M : {6, 7, 8, 9, 10, 11, 12, 13, 16, 24}) {
          if (M < quant_gemm_min_rows(t)) continue;  // every remainder of the 6-row tile
          Weights w = make_weights(t, N, K, static_cast<uint32_t>(N * 7 + K));
          if (t == DType::Q8_0) reinterpret_cast<BlockQ8_0*>(w.q.data())[0].qs[3] = -128;
          const auto x = make_activations(M, K, static_cast<uint32_t>(M + K));
          const Quantised q = quantise(quant_dot_kernels(), x, M, K);
          const std::vector<float> ref = gemm_reference(w, q, M, N, K);
          for (int threads : {1, 2}) {
            const int saved = omp_get_max_threads();
            omp_set_num_threads(threads);
            std::vector<float> y(ref.size());
            quant_matmul_nt(y.data(), x.data(), w.w, M);
            omp_set_num_threads(saved);
            ASSERT_EQ(y, ref) << dtype_name(t) << " K=" << K << " N=" << N << " M=" << M << " threads=" << threads;
          }
        }
    }
}

// The x8 layouts (decode and prefill on a model prepared for inference): every variant's kernel
// equals the integer GEMM's reference bit for bit -- so a row's result is the same alone and in
// a batch of any size -- at row counts around the 4-row passes, one block and many, for a
// sub-range of row groups (exactly its columns), and through matmul_nt on 1 and 2 threads.
TEST(QuantDot, X8MatchesTheGemmReferenceBitForBit) {
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K})
    for (int64_t K : {32, 160, 256, 2048 + 256})
      for (int64_t N : {8, 24, 136}) {
        if (K % dtype_block_size(t) != 0) continue;
        Weights w = make_weights(t, N, K, static_cast<uint32_t>(N + K));
        if (t == DType::Q8_0) reinterpret_cast<BlockQ8_0*>(w.q.data())[1].qs[7] = -128;
        std::vector<uint8_t> packed(x8_bytes(w.w));
        pack_x8(w.w, packed.data());
        WeightMatrix wp = w.w;
        wp.packed = packed.data();
        for (int64_t M : {1, 2, 3, 4, 5, 8, 9, 13}) {
          const auto x = make_activations(M, K, static_cast<uint32_t>(3 * M + K));
          for (const QuantDotKernels* k : quant_dot_variants()) {
            SCOPED_TRACE(std::string(k->name) + " " + dtype_name(t) + " K=" + std::to_string(K) +
                         " N=" + std::to_string(N) + " M=" + std::to_string(M));
            Quantised q = quantise(*k, x, M, K);
            const std::vector<float> ref = gemm_reference(w, q, M, N, K);
            std::vector<float> y(ref.size(), -7.0f);
            k->rows_x8(y.data(), N, wp, 0, N / 8, q.view(), M);
            ASSERT_EQ(y, ref);
            std::vector<float> part(ref.size(), -7.0f);
            k->rows_x8(part.data(), N, wp, 1, N / 8, q.view(), M);
            for (int64_t m = 0; m < M; ++m)
              for (int64_t n = 0; n < N; ++n) {
                const size_t i = static_cast<size_t>(m * N + n);
                ASSERT_EQ(part[i], n < 8 ? -7.0f : ref[i]) << " m=" << m << " n=" << n;
              }
          }
          const std::vector<float> ref = gemm_reference(w, quantise(quant_dot_kernels(), x, M, K), M, N, K);
          for (int threads : {1, 2}) {
            const int saved = omp_get_max_threads();
            omp_set_num_threads(threads);
            std::vector<float> y(ref.size());
            matmul_nt(y.data(), x.data(), wp, M);
            omp_set_num_threads(saved);
            ASSERT_EQ(y, ref) << "matmul_nt " << dtype_name(t) << " K=" << K << " N=" << N << " M=" << M
                              << " threads=" << threads;
          }
        }
      }
}

// Q4_0x8 / Q8_0x8 from quant_dot.h's description: per block the 8 rows' scales first, then row
// n's stored bytes 4i..4i+3 at 16 + 32 i + 4 n; the same bytes as the stored matrix, moved.
template <class Block>
void expect_x8_block_layout(DType t, int64_t N, int64_t K, uint32_t seed) {
  SCOPED_TRACE(dtype_name(t));
  const int64_t nb = K / 32;
  const Weights w = make_weights(t, N, K, seed);
  std::vector<uint8_t> p(x8_bytes(w.w));
  ASSERT_EQ(p.size(), w.w.bytes());
  pack_x8(w.w, p.data());
  const auto* W = reinterpret_cast<const Block*>(w.q.data());
  constexpr int kQsBytes = static_cast<int>(sizeof(Block::qs));
  for (int64_t g = 0; g < N / 8; ++g)
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* o = p.data() + (g * nb + b) * x8_block_bytes(t);
      for (int64_t n = 0; n < 8; ++n) {
        const Block& blk = W[(8 * g + n) * nb + b];
        uint16_t d;
        std::memcpy(&d, o + 2 * n, 2);
        EXPECT_EQ(d, blk.d);
        for (int j = 0; j < kQsBytes; ++j)
          EXPECT_EQ(o[16 + 32 * (j / 4) + 4 * n + j % 4], static_cast<uint8_t>(blk.qs[j])) << "byte " << j;
      }
    }
  std::vector<uint8_t> a(w.q), sorted(p);
  std::sort(a.begin(), a.end());
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(a, sorted);
}

// The layouts themselves, from quant_dot.h's description: Q4_0x8 and Q8_0x8 as above, Q4_Kx8 and
// Q6_Kx8 likewise; a row count not a multiple of 8 and other types refused.
TEST(QuantDot, X8Layouts) {
  const int64_t N = 16, K = 64;
  expect_x8_block_layout<BlockQ4_0>(DType::Q4_0, N, K, 9);
  expect_x8_block_layout<BlockQ8_0>(DType::Q8_0, N, K, 5);
  // Q4_Kx8: d, dmin, the unpacked 6-bit scales and mins, then row n's bytes 32p + 4i .. + 3.
  const Weights k4 = make_weights(DType::Q4_K, N, 512, 4);
  std::vector<uint8_t> pk(x8_bytes(k4.w));
  ASSERT_EQ(pk.size(), static_cast<size_t>(N / 8 * 2 * 1184));
  pack_x8(k4.w, pk.data());
  const auto* W4 = reinterpret_cast<const BlockQ4_K*>(k4.q.data());
  for (int64_t g = 0; g < N / 8; ++g)
    for (int64_t i = 0; i < 2; ++i) {
      const uint8_t* o = pk.data() + (g * 2 + i) * 1184;
      for (int64_t n = 0; n < 8; ++n) {
        const BlockQ4_K& blk = W4[(8 * g + n) * 2 + i];
        uint16_t d, dmin;
        std::memcpy(&d, o + 2 * n, 2);
        std::memcpy(&dmin, o + 16 + 2 * n, 2);
        EXPECT_EQ(d, blk.d);
        EXPECT_EQ(dmin, blk.dmin);
        for (int b = 0; b < 8; ++b) {
          int nib[32];
          float dw, mw;
          q4k_block(reinterpret_cast<const uint8_t*>(&blk), b, nib, &dw, &mw);
          EXPECT_EQ(f16_to_f32(blk.d) * o[32 + 8 * b + n], dw);
          EXPECT_EQ(f16_to_f32(blk.dmin) * o[96 + 8 * b + n], mw);
        }
        for (int p = 0; p < 4; ++p)
          for (int j = 0; j < 32; ++j) EXPECT_EQ(o[160 + 256 * p + 32 * (j / 4) + 4 * n + j % 4], blk.qs[32 * p + j]);
      }
    }
  // Q6_Kx8: d, then per group of 16 the scales, two nibble registers and one of high bits.
  const Weights k6 = make_weights(DType::Q6_K, N, 512, 6);
  std::vector<uint8_t> p6(x8_bytes(k6.w));
  ASSERT_EQ(p6.size(), k6.w.bytes());
  pack_x8(k6.w, p6.data());
  const auto* W6 = reinterpret_cast<const BlockQ6_K*>(k6.q.data());
  for (int64_t g = 0; g < N / 8; ++g)
    for (int64_t i = 0; i < 2; ++i) {
      const uint8_t* o = p6.data() + (g * 2 + i) * 1680;
      for (int64_t n = 0; n < 8; ++n) {
        const BlockQ6_K& blk = W6[(8 * g + n) * 2 + i];
        uint16_t d;
        std::memcpy(&d, o + 2 * n, 2);
        EXPECT_EQ(d, blk.d);
        for (int grp = 0; grp < 16; ++grp) {
          const uint8_t* og = o + 16 + 104 * grp;
          EXPECT_EQ(static_cast<int8_t>(og[n]), blk.scales[grp]);
          for (int l = 0; l < 16; ++l) {
            const int c = l / 4, t = l % 4;  // 4-column step and byte within it
            const uint8_t lo = og[8 + 32 * (c / 2) + 4 * n + t], hi = og[72 + 4 * n + t];
            const int v = ((c % 2 == 0 ? lo & 0x0F : lo >> 4) | (((hi >> (2 * c)) & 3) << 4));
            ASSERT_EQ(v, q6k_element(blk, 16 * grp + l)) << "group " << grp << " element " << l;
          }
        }
      }
    }
  const Weights odd = make_weights(DType::Q4_0, 12, K, 1);
  EXPECT_FALSE(x8_packable(odd.w));
  EXPECT_FALSE(x8_packable(make_weights(DType::Q6_K, 12, 256, 1).w));
  EXPECT_FALSE(x8_packable(make_weights(DType::F16, 16, K, 1).w));
  std::vector<uint8_t> sink(odd.w.bytes());
  EXPECT_THROW(pack_x8(odd.w, sink.data()), Error);
}

// matmul_nt takes the path for any number of rows of Q8_0/Q4_0 weights; under ExactActivations
// it gives the exact product; threads change nothing.
TEST(QuantDot, MatmulNtRouting) {
  const int64_t N = 130, K = 4096 + 32;  // N·K above the threading threshold
  for (DType t : kTypes) {
    const Weights w = make_weights(t, N, K, 5);
    for (int64_t M : {1, 2, 8, 9, 12, 64}) {
      const auto x = make_activations(M, K, static_cast<uint32_t>(M));
      std::vector<float> y(static_cast<size_t>(M * N)), yq(y.size()), ys(y.size()), ye(y.size()), yr(y.size());
      matmul_nt(y.data(), x.data(), w.w, M);
      quant_matmul_nt(yq.data(), x.data(), w.w, M);
      Quantised q = quantise(quant_dot_kernels(), x, M, K);
      if (M >= quant_gemm_min_rows(t) && quant_gemm_available())
        ys = gemm_reference(w, q, M, N, K);  // the integer GEMM
      else
        quant_dot_kernels().rows(ys.data(), N, w.w, 0, N, q.view(), M);
      EXPECT_EQ(yq, ys) << "threaded vs serial, M=" << M;
      {
        ExactActivations exact;
        EXPECT_FALSE(quantized_activations_allowed());
        matmul_nt(ye.data(), x.data(), w.w, M);
      }
      EXPECT_TRUE(quantized_activations_allowed());
      matmul_nt_ref(yr.data(), x.data(), w.w, M);
      double ediff = 0, emax = 0;
      for (size_t i = 0; i < y.size(); ++i) {
        ediff = std::max(ediff, static_cast<double>(std::fabs(ye[i] - yr[i])));
        emax = std::max(emax, static_cast<double>(std::fabs(yr[i])));
      }
      EXPECT_LT(ediff, 1e-5 * emax) << "ExactActivations, M=" << M;
      EXPECT_EQ(y, yq) << dtype_name(t) << " M=" << M;
    }
  }
}

// Products sharing one input (a layer's q, k, v): the same bits as each product alone, for
// interleaved and plain quantised matrices of different heights mixed in one call, any row
// count and thread count, F32 among them (its own path), and under ExactActivations.
TEST(QuantDot, SharedProductsMatchSeparateProductsBitForBit) {
  const int64_t K = 2048 + 64;
  const Weights a = make_weights(DType::Q4_0, 136, K, 11), b = make_weights(DType::Q8_0, 24, K, 12),
                c = make_weights(DType::Q4_0, 40, K, 13);
  std::vector<uint8_t> pa(x8_bytes(a.w)), pc(x8_bytes(c.w));
  pack_x8(a.w, pa.data());
  pack_x8(c.w, pc.data());
  WeightMatrix wa = a.w, wc = c.w;
  wa.packed = pa.data();
  wc.packed = pc.data();
  std::vector<float> f32(static_cast<size_t>(16 * K));
  for (size_t i = 0; i < f32.size(); ++i) f32[i] = static_cast<float>(static_cast<int>(i % 97) - 48) * 1e-3f;
  const WeightMatrix wf{DType::F32, f32.data(), 16, K};
  const std::vector<std::vector<const WeightMatrix*>> sets = {
      {&wa, &wc}, {&wa, &b.w, &wc}, {&b.w}, {&wa, &wf}, {&wc, &wa, &wc, &b.w}};
  const int saved = omp_get_max_threads();
  for (const auto& set : sets)
    for (int64_t M : {1, 3, 8, 13})
      for (int threads : {1, 2, 3})
        for (bool exact : {false, true}) {
          omp_set_num_threads(threads);
          const auto x = make_activations(M, K, static_cast<uint32_t>(M + 7));
          std::vector<std::vector<float>> alone, shared;
          std::vector<SharedProduct> p;
          for (const WeightMatrix* w : set) {
            alone.emplace_back(static_cast<size_t>(M * w->rows));
            shared.emplace_back(static_cast<size_t>(M * w->rows), -1.0f);
          }
          for (size_t i = 0; i < set.size(); ++i) p.push_back({shared[i].data(), set[i]});
          {
            std::unique_ptr<ExactActivations> e(exact ? new ExactActivations : nullptr);
            for (size_t i = 0; i < set.size(); ++i) matmul_nt(alone[i].data(), x.data(), *set[i], M);
            matmul_nt_shared(x.data(), M, p.data(), static_cast<int64_t>(p.size()));
          }
          for (size_t i = 0; i < set.size(); ++i)
            EXPECT_EQ(shared[i], alone[i]) << "product " << i << " of " << set.size() << ", M=" << M
                                           << ", threads=" << threads << (exact ? ", exact" : "");
        }
  omp_set_num_threads(saved);
  std::vector<float> y(static_cast<size_t>(136 + 16));
  const auto x = make_activations(1, K, 1);
  const WeightMatrix narrow{DType::Q4_0, a.q.data(), 8, K - 32};
  std::vector<SharedProduct> bad = {{y.data(), &wa}, {y.data(), &narrow}};
  EXPECT_THROW(matmul_nt_shared(x.data(), 1, bad.data(), 2), Error);
  std::vector<SharedProduct> many(static_cast<size_t>(kMaxSharedProducts + 1), SharedProduct{y.data(), &wa});
  EXPECT_THROW(matmul_nt_shared(x.data(), 1, many.data(), static_cast<int64_t>(many.size())), Error);
}

TEST(QuantDot, NonFiniteActivationsGiveNonFiniteResults) {
  const Weights w = make_weights(DType::Q4_0, 8, 64, 1);
  std::vector<uint8_t> packed(w.w.bytes());
  pack_x8(w.w, packed.data());
  WeightMatrix wp = w.w;
  wp.packed = packed.data();
  for (float bad : {NAN, INFINITY})
    for (const WeightMatrix* m : std::vector<const WeightMatrix*>{&w.w, &wp}) {
      auto x = make_activations(1, 64, 2);
      x[40] = bad;
      std::vector<float> y(8);
      quant_matmul_nt(y.data(), x.data(), *m, 1);
      for (float v : y) EXPECT_FALSE(std::isfinite(v)) << bad << (m->packed ? " x8" : "");
    }
}

}  // namespace
}  // namespace la
