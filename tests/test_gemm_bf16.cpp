// The bf16-arithmetic GEMM (gemm.h's gemm_bf16_nt/nn, AVX512-BF16) against a plain double
// reference computed on the same bf16-rounded activations and the stored bf16 weights, on shapes
// that cut every block (MR = 14, NR = 32, KC = 768, MC = 112, NC = 512) and odd depths; the
// rounding of the packed activations against a scalar round-to-nearest-even; thread-count
// independence; the matmul switch (off: the f32 paths, bit for bit) and that training sees it.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "la/core/error.h"
#include "la/core/half.h"
#include "la/io/shapes.h"
#include "la/kernels/gemm.h"
#include "la/kernels/gemv.h"
#include "la/kernels/isa/gemm_kernels.h"
#include "la/kernels/matmul.h"
#include "la/model/train_graph.h"
#include "support/grad_check.h"
#include "support/test_support.h"

namespace la {
namespace {

#define REQUIRE_BF16_GEMM()                                                                                \
  do {                                                                                                     \
    if (!gemm_bf16_available()) GTEST_SKIP() << "no AVX512-BF16 on this CPU (or LA_ISA excludes AVX-512)"; \
  } while (0)

using test::random_vec;

// vcvtne2ps2bf16 on one value: subnormal inputs become a zero of the same sign, NaNs are
// quieted, everything else rounds to the nearest bf16 with ties to even.
uint16_t round_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0) return static_cast<uint16_t>((u >> 16) & 0x8000u);
  return f32_to_bf16(f);
}

float bits_to_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// A bf16 [rows, cols] weight from uniform random values.
struct Bf16Weight {
  std::vector<uint16_t> h;
  WeightMatrix w;
  Bf16Weight(std::mt19937& rng, int64_t rows, int64_t cols) {
    for (float v : random_vec(rng, rows * cols)) h.push_back(f32_to_bf16(v));
    w = {DType::BF16, h.data(), rows, cols};
  }
  double at(int64_t r, int64_t c) const { return bf16_to_f32(h[static_cast<size_t>(r * w.cols + c)]); }
};

// C[M, Ng] (+)= round(A)[M, Kg] · B with B[k][n] = W[n][k] (nt) or W[k][n] (nn), in double; and
// per element Σ|a||b|, the scale of the f32 accumulation error.
void reference(bool nt, const std::vector<float>& A, const Bf16Weight& W, int64_t M, std::vector<double>* C,
               std::vector<double>* scale) {
  const int64_t Ng = nt ? W.w.rows : W.w.cols, Kg = nt ? W.w.cols : W.w.rows;
  C->assign(static_cast<size_t>(M * Ng), 0.0);
  scale->assign(C->size(), 0.0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < Kg; ++k) {
      const double a = bf16_to_f32(round_bf16(A[static_cast<size_t>(m * Kg + k)]));
      for (int64_t n = 0; n < Ng; ++n) {
        const double b = nt ? W.at(n, k) : W.at(k, n);
        (*C)[static_cast<size_t>(m * Ng + n)] += a * b;
        (*scale)[static_cast<size_t>(m * Ng + n)] += std::fabs(a * b);
      }
    }
}

// f32 accumulation of K products: a few eps of Σ|a b| in practice (the textbook bound is K·eps);
// 1e-5 relative still fails on any wrong index, missing pair or unrounded activation.
void expect_close(const std::vector<float>& got, const std::vector<double>& want, const std::vector<double>& scale,
                  const std::vector<float>& base, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    const double b = base.empty() ? 0.0 : base[i];
    ASSERT_NEAR(got[i], want[i] + b, 1e-5 * scale[i] + 1e-7 * std::fabs(b) + 1e-30) << what << " at " << i;
  }
}

struct Shape {
  int64_t M, N, K;
};

TEST(GemmBf16, PackedActivationsRoundToNearestEven) {
  REQUIRE_BF16_GEMM();
  // Ties both ways, values just either side of a tie, the largest finite float (rounds to inf),
  // infinities, subnormals, signed zeros, and random values; over 3 rows, K = 37 (odd).
  const std::vector<uint32_t> special = {0x3f808000u, 0x3f818000u, 0xbf808000u, 0xbf818000u, 0x3f807fffu,
                                         0x3f808001u, 0x7f7fffffu, 0x7f800000u, 0xff800000u, 0x00000001u,
                                         0x807fffffu, 0x00000000u, 0x80000000u, 0x00800000u, 0x3f800000u};
  const int64_t rows = 3, K = 37, MR = gemm_detail::kBf16MR, kp = (K + 1) / 2;
  std::mt19937 rng(3);
  std::vector<float> A = random_vec(rng, rows * K);
  for (size_t i = 0; i < special.size(); ++i) A[i * 2 + 1] = bits_to_f32(special[i]);
  std::vector<uint32_t> ap(static_cast<size_t>(kp * MR), 0xdeadbeefu);
  gemm_detail::bf16_kernels().pack_a(A.data(), K, rows, K, ap.data());
  for (int64_t p = 0; p < kp; ++p)
    for (int64_t r = 0; r < MR; ++r) {
      const uint32_t got = ap[static_cast<size_t>(p * MR + r)];
      for (int64_t h = 0; h < 2; ++h) {
        const int64_t k = 2 * p + h;
        const uint16_t want = r < rows && k < K ? round_bf16(A[static_cast<size_t>(r * K + k)]) : 0;
        ASSERT_EQ(static_cast<uint16_t>(got >> (16 * h)), want) << "row " << r << " k " << k;
      }
    }
}

void check_shapes(const std::vector<Shape>& shapes) {
  std::mt19937 rng(11);
  for (const Shape& s : shapes) {
    SCOPED_TRACE(testing::Message() << "M=" << s.M << " N=" << s.N << " K=" << s.K);
    std::vector<double> want, scale;
    for (bool nt : {true, false}) {
      // nt: y[M, N] = x[M, K] · W[N, K]^T.  nn: dX[M, N] = dY[M, K] · W[K, N].
      const Bf16Weight W(rng, nt ? s.N : s.K, nt ? s.K : s.N);
      const std::vector<float> A = random_vec(rng, s.M * s.K);
      reference(nt, A, W, s.M, &want, &scale);
      std::vector<float> got(want.size(), 123.0f);
      (nt ? gemm_bf16_nt : gemm_bf16_nn)(got.data(), A.data(), W.w, s.M, false, nullptr);
      expect_close(got, want, scale, {}, nt ? "nt" : "nn");
      const std::vector<float> base = random_vec(rng, s.M * s.N);
      std::vector<float> acc = base;
      (nt ? gemm_bf16_nt : gemm_bf16_nn)(acc.data(), A.data(), W.w, s.M, true, nullptr);
      expect_close(acc, want, scale, base, nt ? "nt accumulate" : "nn accumulate");
    }
  }
}

TEST(GemmBf16, AwkwardShapesAgainstReference) {
  REQUIRE_BF16_GEMM();
  // M: 1, around a register tile, past an MC block. N: 1, around a panel, past NC.
  // K: 1, 2, odd, around KC (one pair short, one value past), 2 KC + 1.
  const std::vector<Shape> shapes = {{1, 1, 1},     {13, 31, 2},    {14, 32, 17},   {15, 33, 767},
                                     {13, 33, 257}, {113, 65, 769}, {29, 600, 64},  {130, 70, 1537},
                                     {3, 1030, 40}, {1, 7, 1536},   {129, 257, 33}, {20, 2100, 1600}};
  check_shapes(shapes);
}

TEST(GemmBf16, ZeroDepthWritesZerosOrKeeps) {
  REQUIRE_BF16_GEMM();
  WeightMatrix w{DType::BF16, nullptr, 0, 5};
  std::vector<float> out(3 * 5, 9.0f);
  gemm_bf16_nn(out.data(), nullptr, w, 3, true);
  for (float v : out) EXPECT_EQ(v, 9.0f);
  gemm_bf16_nn(out.data(), nullptr, w, 3, false);
  for (float v : out) EXPECT_EQ(v, 0.0f);
}

TEST(GemmBf16, SameBitsForAnyThreadCount) {
  REQUIRE_BF16_GEMM();
  std::mt19937 rng(5);
  // 1,000 x 1,601 (three KC blocks deep for nt): A packed once for several column blocks on one
  // thread, and per block on two for nt (500 columns each).
  const Bf16Weight W(rng, 1000, 1601);
  const std::vector<float> x = random_vec(rng, 64 * 1601), dy = random_vec(rng, 64 * 1000);
  std::vector<float> a1(64 * 1000), a2(a1.size()), b1(64 * 1601), b2(b1.size());
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  gemm_bf16_nt(a1.data(), x.data(), W.w, 64, false);
  gemm_bf16_nn(b1.data(), dy.data(), W.w, 64, false);
  omp_set_num_threads(2);
  gemm_bf16_nt(a2.data(), x.data(), W.w, 64, false);
  gemm_bf16_nn(b2.data(), dy.data(), W.w, 64, false);
  omp_set_num_threads(saved);
  EXPECT_EQ(0, std::memcmp(a1.data(), a2.data(), a1.size() * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(b1.data(), b2.data(), b1.size() * sizeof(float)));
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Weights packed once (Bf16Panels) give the same bits as packing per call, both products, on
// shapes that cut panels, KC blocks and the thread split, with 1 and 2 threads; and the model
// packs exactly its BF16 matrices.
TEST(GemmBf16, PrepackedPanelsGiveTheSameBits) {
  REQUIRE_BF16_GEMM();
  std::mt19937 rng(6);
  const int saved = omp_get_max_threads();
  for (const Shape& s : std::vector<Shape>{{20, 33, 17}, {130, 700, 1537}, {64, 96, 768}, {9, 1, 3}})
    for (int threads : {1, 2}) {
      SCOPED_TRACE(testing::Message() << "M=" << s.M << " N=" << s.N << " K=" << s.K << " threads=" << threads);
      omp_set_num_threads(threads);
      const Bf16Weight W(rng, s.N, s.K);  // nt: [M, N] = [M, K] W^T; nn: [M, K] = [M, N] W
      const Bf16Panels panels = pack_bf16_panels(W.w);
      const std::vector<float> x = random_vec(rng, s.M * s.K), dy = random_vec(rng, s.M * s.N);
      const std::vector<float> base_y = random_vec(rng, s.M * s.N), base_x = random_vec(rng, s.M * s.K);
      for (bool acc : {false, true}) {
        std::vector<float> y1 = base_y, y2 = base_y, dx1 = base_x, dx2 = base_x;
        gemm_bf16_nt(y1.data(), x.data(), W.w, s.M, acc);
        gemm_bf16_nt(y2.data(), x.data(), W.w, s.M, acc, &panels);
        gemm_bf16_nn(dx1.data(), dy.data(), W.w, s.M, acc);
        gemm_bf16_nn(dx2.data(), dy.data(), W.w, s.M, acc, &panels);
        EXPECT_TRUE(same_bits(y1, y2)) << "nt accumulate=" << acc;
        EXPECT_TRUE(same_bits(dx1, dx2)) << "nn accumulate=" << acc;
        // Through matmul with bf16 arithmetic on (every M here is above gemv's rows): the panels
        // are forwarded to the same product.
        test::ScopedRuntime bf16(test::runtime_with([](Runtime& r) { r.bf16_compute = true; }));
        std::vector<float> y3 = base_y, dx3 = base_x;
        if (!acc) matmul_nt(y3.data(), x.data(), W.w, s.M, &panels);
        matmul_nn(dx3.data(), dy.data(), W.w, s.M, acc, &panels);
        if (!acc) {
          EXPECT_TRUE(same_bits(y1, y3)) << "matmul_nt with panels";
        }
        EXPECT_TRUE(same_bits(dx1, dx3)) << "matmul_nn with panels, accumulate=" << acc;
      }
      // Panels of another matrix are refused, not read.
      const Bf16Weight other(rng, s.N, s.K);
      std::vector<float> y(static_cast<size_t>(s.M * s.N));
      EXPECT_THROW(gemm_bf16_nt(y.data(), x.data(), other.w, s.M, false, &panels), Error);
    }
  omp_set_num_threads(saved);
  WeightMatrix f32{DType::F32, nullptr, 1, 1};
  EXPECT_THROW(pack_bf16_panels(f32), Error);

  auto model = random_model(*named_shape("stories260k"), 7, DType::BF16);
  EXPECT_GT(model->pack_bf16_panels(), 0u);
  for (const auto& l : model->layers)
    for (const WeightMatrix* w : layer_matrices(l)) {
      const Bf16Panels* p = model->bf16_panels_for(*w);
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(p->source, w->data);
    }
  EXPECT_NE(model->bf16_panels_for(model->output), nullptr);
  EXPECT_EQ(model->pack_bf16_panels(), 0u) << "packed once";
  EXPECT_EQ(model->bf16_panel_bytes(), 0u);
  WeightMatrix stranger = model->layers[0].wq;
  stranger.rows -= 1;  // same data, another shape: not its panels
  EXPECT_EQ(model->bf16_panels_for(stranger), nullptr);
  auto f32_model = random_model(*named_shape("stories260k"), 7, DType::F32);
  EXPECT_EQ(f32_model->pack_bf16_panels(), 0u);
  EXPECT_EQ(f32_model->bf16_panels_for(f32_model->layers[0].wq), nullptr);
}

// Off (the default): matmul takes exactly the paths it took before the switch existed. On: BF16
// products with more than kGemvMaxRows rows are gemm_bf16's, everything else is unchanged.
TEST(GemmBf16, MatmulSwitch) {
  REQUIRE_BF16_GEMM();
  ASSERT_FALSE(runtime().bf16_compute) << "off by default";
  std::mt19937 rng(9);
  const int64_t N = 96, K = 80;
  const Bf16Weight W(rng, N, K);
  std::vector<float> f(static_cast<size_t>(N * K));
  for (size_t i = 0; i < f.size(); ++i) f[i] = bf16_to_f32(W.h[i]);
  const WeightMatrix wf{DType::F32, f.data(), N, K};
  for (int64_t M : {int64_t{4}, kGemvMaxRows, kGemvMaxRows + 1, int64_t{50}}) {
    SCOPED_TRACE(testing::Message() << "M=" << M);
    const std::vector<float> x = random_vec(rng, M * K), dy = random_vec(rng, M * N);
    std::vector<float> y_f32(static_cast<size_t>(M * N)), y_bf16(y_f32.size()), y_off(y_f32.size()), y_on(y_f32.size());
    std::vector<float> d_f32(static_cast<size_t>(M * K)), d_bf16(d_f32.size()), d_off(d_f32.size()), d_on(d_f32.size());
    if (M <= kGemvMaxRows)
      gemv_nt(y_f32.data(), x.data(), W.w, M);
    else
      gemm_nt(y_f32.data(), x.data(), W.w, M, false);
    gemm_nn(d_f32.data(), dy.data(), W.w, M, false);
    gemm_bf16_nt(y_bf16.data(), x.data(), W.w, M, false);
    gemm_bf16_nn(d_bf16.data(), dy.data(), W.w, M, false);
    std::vector<float> yf_off(y_f32.size()), yf_on(y_f32.size());

    matmul_nt(y_off.data(), x.data(), W.w, M);
    matmul_nn(d_off.data(), dy.data(), W.w, M, false);
    matmul_nt(yf_off.data(), x.data(), wf, M);
    {
      test::ScopedRuntime bf16(test::runtime_with([](Runtime& r) { r.bf16_compute = true; }));
      EXPECT_TRUE(runtime().bf16_compute);
      matmul_nt(y_on.data(), x.data(), W.w, M);
      matmul_nn(d_on.data(), dy.data(), W.w, M, false);
      matmul_nt(yf_on.data(), x.data(), wf, M);
    }
    EXPECT_FALSE(runtime().bf16_compute) << "restored";

    EXPECT_TRUE(same_bits(y_off, y_f32)) << "off: nt unchanged";
    EXPECT_TRUE(same_bits(d_off, d_f32)) << "off: nn unchanged";
    EXPECT_TRUE(same_bits(yf_on, yf_off)) << "on: F32 weights unchanged";
    EXPECT_TRUE(same_bits(y_on, M > kGemvMaxRows ? y_bf16 : y_f32)) << "on: nt";
    EXPECT_TRUE(same_bits(d_on, M > kGemvMaxRows ? d_bf16 : d_f32)) << "on: nn";
    if (M > kGemvMaxRows) {
      EXPECT_FALSE(same_bits(y_bf16, y_f32)) << "the activations really are rounded";
    }
  }
}

// The switch reaches training (whose passes hold ExactActivations): a step on a bf16 base gives
// other bits with it on, and a loss and gradient within bf16 rounding of the f32 ones.
TEST(GemmBf16, TrainingStepFollowsTheSwitch) {
  REQUIRE_BF16_GEMM();
  ModelConfig c;
  c.dim = 128, c.hidden_dim = 352, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.vocab_size = 300;
  c.max_seq_len = 64;
  const auto w = random_model(c, 7, DType::BF16);
  std::mt19937 rng(21);
  Adapter a = Adapter::create(c, 10, 2, GateMode::Tanh, 5);
  for (float& g : a.gate()) g = 0.5f;
  const PackedBatch b = test::make_batch(c.vocab_size, rng);
  TrainGraph g(*w, a, b.rows(), 32, false);
  ParamSet off = a.params.zeros_like(), on = off;
  const LossResult l_off = g.run(b, a, &off, 1.0f);
  const auto with_bf16 = test::runtime_with([](Runtime& r) { r.bf16_compute = true; });
  LossResult l_on;
  {
    test::ScopedRuntime bf16(with_bf16);
    l_on = g.run(b, a, &on, 1.0f);
  }
  EXPECT_NE(l_on.loss_sum, l_off.loss_sum) << "bf16 arithmetic was not used";
  EXPECT_NEAR(l_on.loss_sum, l_off.loss_sum, 1e-2 * std::fabs(l_off.loss_sum));
  double dot = 0, n_on = 0, n_off = 0;
  for (size_t i = 0; i < off["adapter_query"].size(); ++i) {
    dot += static_cast<double>(on["adapter_query"][i]) * off["adapter_query"][i];
    n_on += static_cast<double>(on["adapter_query"][i]) * on["adapter_query"][i];
    n_off += static_cast<double>(off["adapter_query"][i]) * off["adapter_query"][i];
  }
  ASSERT_GT(n_off, 0.0);
  EXPECT_GT(dot / std::sqrt(n_on * n_off), 0.999) << "cosine of the adapter gradients";
  EXPECT_NEAR(std::sqrt(n_on), std::sqrt(n_off), 1e-2 * std::sqrt(n_off));

  // With the base packed once (as finetune --bf16-compute does): the same step, bit for bit.
  ASSERT_GT(w->pack_bf16_panels(), 0u);
  ParamSet packed = a.params.zeros_like();
  LossResult l_packed;
  {
    test::ScopedRuntime bf16(with_bf16);
    l_packed = g.run(b, a, &packed, 1.0f);
  }
  EXPECT_EQ(l_packed.loss_sum, l_on.loss_sum);
  EXPECT_EQ(packed.values(), on.values());
}

}  // namespace
}  // namespace la
