// The blocked GEMM (kernels/gemm.h) against the plain double-precision references, in every
// stored weight type, on shapes that cut every block somewhere awkward (avx512: MR = 14, NR = 32,
// MC = 112; avx2: MR = 6, NR = 16, MC = 96; both KC = 256, NC = 512); and the AVX-512 build's
// 16 x 16 transpose against the obvious loop. The build tested is the one in force: ctest runs
// this file again with LA_ISA=avx2 (tests/CMakeLists.txt).
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "la/core/half.h"
#include "la/core/runtime.h"
#include "la/kernels/gemm.h"
#include "la/kernels/isa/gemm_kernels.h"
#include "la/kernels/matmul.h"
#include "la/kernels/quant.h"
#include "support/test_support.h"

namespace la {
namespace {

#define REQUIRE_GEMM()                                                                       \
  do {                                                                                       \
    if (!gemm_available()) GTEST_SKIP() << "no AVX2 on this CPU (or LA_ISA forces generic)"; \
  } while (0)

using test::random_vec;

// A [rows, cols] weight matrix stored in `type`, made from uniform random values.
struct Stored {
  std::vector<uint8_t> bytes;
  WeightMatrix w;
  Stored(std::mt19937& rng, DType t, int64_t rows, int64_t cols) {
    const std::vector<float> f = random_vec(rng, rows * cols);
    bytes.resize(static_cast<size_t>(rows) * dtype_row_bytes(t, cols));
    if (t == DType::F32) {
      std::memcpy(bytes.data(), f.data(), bytes.size());
    } else if (t == DType::F16 || t == DType::BF16) {
      auto* h = reinterpret_cast<uint16_t*>(bytes.data());
      for (size_t i = 0; i < f.size(); ++i) h[i] = t == DType::F16 ? f32_to_f16(f[i]) : f32_to_bf16(f[i]);
    } else {
      quantize(t, f.data(), bytes.data(), rows * cols);
    }
    w = {t, bytes.data(), rows, cols};
  }
};

// |error| of an f32 sum of K products of values <= 1 in magnitude: K·eps·Σ|a b| is the textbook
// bound; with |a|,|b| <= 1 that is K·eps·K at worst. Measured errors are far smaller; the bound
// used is generous but still fails on any wrong index or missing block.
float tolerance(int64_t K) {
  return 4e-7f * static_cast<float>(K) * std::sqrt(static_cast<float>(K)) + 1e-6f;
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, float tol, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], tol) << what << " at " << i;
}

struct Shape {
  int64_t M, N, K;
};

TEST(Gemm, Transpose16) {
  if (!cpu_runs(Isa::Avx512)) GTEST_SKIP() << "no AVX-512 on this CPU";
  std::mt19937 rng(1);
  const std::vector<float> src = random_vec(rng, 16 * 19);
  std::vector<float> dst(16 * 21, -7.0f);
  gemm_detail::transpose16(src.data(), 19, dst.data(), 21);
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) ASSERT_EQ(dst[j * 21 + i], src[i * 19 + j]) << i << "," << j;
  for (int j = 0; j < 16; ++j)
    for (int i = 16; i < 21; ++i) ASSERT_EQ(dst[j * 21 + i], -7.0f) << "wrote past the 16 columns";
}

void check_type(DType t, const std::vector<Shape>& shapes) {
  std::mt19937 rng(static_cast<unsigned>(t) + 11);
  for (const Shape& s : shapes) {
    SCOPED_TRACE(testing::Message() << dtype_name(t) << " M=" << s.M << " N=" << s.N << " K=" << s.K);
    // nt: W is [N, K].
    {
      const Stored W(rng, t, s.N, s.K);
      const std::vector<float> x = random_vec(rng, s.M * s.K);
      std::vector<float> want(static_cast<size_t>(s.M * s.N)), got(want.size());
      matmul_nt_ref(want.data(), x.data(), W.w, s.M);
      gemm_nt(got.data(), x.data(), W.w, s.M, false);
      expect_close(got, want, tolerance(s.K), "nt");
      // accumulate adds to what is there
      std::vector<float> acc = random_vec(rng, s.M * s.N), acc_want = acc;
      for (size_t i = 0; i < acc.size(); ++i) acc_want[i] += want[i];
      gemm_nt(acc.data(), x.data(), W.w, s.M, true);
      expect_close(acc, acc_want, tolerance(s.K) + 1e-6f, "nt accumulate");
    }
    // nn: W is [K, N] (the gradient side: out[M, cols] = dy[M, rows] · W); its stored columns
    // are whole blocks.
    {
      const int64_t bs = dtype_block_size(t), N = (s.N + bs - 1) / bs * bs;
      const Stored W(rng, t, s.K, N);
      const std::vector<float> dy = random_vec(rng, s.M * s.K);
      std::vector<float> want(static_cast<size_t>(s.M * N)), got(want.size(), 123.0f);
      matmul_nn_ref(want.data(), dy.data(), W.w, s.M, false);
      gemm_nn(got.data(), dy.data(), W.w, s.M, false);
      expect_close(got, want, tolerance(s.K), "nn");
      std::vector<float> acc = random_vec(rng, s.M * N), acc_want = acc;
      matmul_nn_ref(acc_want.data(), dy.data(), W.w, s.M, true);
      gemm_nn(acc.data(), dy.data(), W.w, s.M, true);
      expect_close(acc, acc_want, tolerance(s.K) + 1e-6f, "nn accumulate");
    }
  }
}

TEST(Gemm, FloatTypesAwkwardShapes) {
  REQUIRE_GEMM();
  // M: 1, a row short of / past a register tile, past an MC block. N: 1, 31, 33, past NC.
  // K: 1, 17, past KC, 2 KC + 1. {100, 2200, 600}: several column blocks per thread, A packed once.
  const std::vector<Shape> shapes = {{1, 1, 1},      {13, 31, 17},   {14, 32, 256}, {15, 33, 257},   {113, 65, 64},
                                     {29, 600, 513}, {130, 70, 300}, {3, 1030, 40}, {100, 2200, 600}};
  for (DType t : {DType::F32, DType::F16, DType::BF16}) check_type(t, shapes);
}

// The packed kernel is specialised for each row count of the last register tile (1 .. 14), the
// broadcast one (nt, gemm_broadcast_form rows) for each count of weight rows.
TEST(Gemm, EveryRowCountOfTheLastTile) {
  REQUIRE_GEMM();
  std::vector<Shape> shapes;
  for (int64_t M = kGemmBroadcastMaxRows + 1; M <= kGemmBroadcastMaxRows + 14; ++M) shapes.push_back({M, 33, 19});
  for (int64_t N = 1; N <= 14; ++N) shapes.push_back({30, N, 19});
  check_type(DType::F32, shapes);
}

// For prefill-sized row counts (gemm_broadcast_form) gemm_nt broadcasts an f32 weight against a
// packed A^T; otherwise it packs the weight (other types: always). Both take K in the same blocks with the same
// operations per element: a row's result is the same bits whichever form the call's row count picks.
TEST(Gemm, BroadcastFormGivesTheSameBitsAsThePackedForm) {
  REQUIRE_GEMM();
  std::mt19937 rng(5);
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (int64_t N : {1, 13, 14, 15, 45})
      for (int64_t K : {1, 255, 256, 257, 600}) {
        SCOPED_TRACE(testing::Message() << dtype_name(t) << " N=" << N << " K=" << K);
        const Stored W(rng, t, N, K);
        const int64_t Mbig = kGemmBroadcastMaxRows + 3;
        const std::vector<float> x = random_vec(rng, Mbig * K);
        std::vector<float> big(static_cast<size_t>(Mbig * N));
        gemm_nt(big.data(), x.data(), W.w, Mbig, false);
        for (int64_t M : {int64_t{1}, int64_t{17}, int64_t{32}, int64_t{33}, int64_t{60}, kGemmBroadcastMaxRows}) {
          std::vector<float> small(static_cast<size_t>(M * N));
          gemm_nt(small.data(), x.data(), W.w, M, false);
          ASSERT_EQ(0, std::memcmp(small.data(), big.data(), small.size() * sizeof(float))) << "M=" << M;
          std::vector<float> acc(small.size(), 0.5f), acc_big(big.size(), 0.5f);
          gemm_nt(acc.data(), x.data(), W.w, M, true);
          gemm_nt(acc_big.data(), x.data(), W.w, Mbig, true);
          ASSERT_EQ(0, std::memcmp(acc.data(), acc_big.data(), acc.size() * sizeof(float))) << "accumulate M=" << M;
        }
      }
}

TEST(Gemm, QuantizedTypesAwkwardShapes) {
  REQUIRE_GEMM();
  // K is a count of stored columns (whole blocks); nn rounds N up to whole blocks too.
  const std::vector<Shape> small_blocks = {{1, 7, 32}, {15, 33, 288}, {29, 544, 64}, {113, 40, 512}, {20, 1056, 32}};
  for (DType t : {DType::Q8_0, DType::Q4_0}) check_type(t, small_blocks);
  const std::vector<Shape> k_blocks = {{1, 3, 256}, {15, 33, 512}, {29, 768, 256}, {5, 1280, 256}, {40, 1280, 256}};
  for (DType t : {DType::Q4_K, DType::Q6_K}) check_type(t, k_blocks);
}

TEST(Gemm, ZeroDepthWritesZerosOrKeeps) {
  REQUIRE_GEMM();
  WeightMatrix w{DType::F32, nullptr, 0, 5};  // nn with no rows: the product is all zeros
  std::vector<float> out(3 * 5, 9.0f);
  gemm_nn(out.data(), nullptr, w, 3, true);
  for (float v : out) EXPECT_EQ(v, 9.0f);
  gemm_nn(out.data(), nullptr, w, 3, false);
  for (float v : out) EXPECT_EQ(v, 0.0f);
}

// Every element is computed by one thread in a fixed order: 1 and 2 threads agree bit for bit.
TEST(Gemm, SameBitsForAnyThreadCount) {
  REQUIRE_GEMM();
  std::mt19937 rng(5);
  const Stored W(rng, DType::BF16, 700, 300);
  const std::vector<float> x = random_vec(rng, 64 * 300), dy = random_vec(rng, 64 * 700);
  std::vector<float> a1(64 * 700), a2(a1.size()), b1(64 * 300), b2(b1.size());
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  gemm_nt(a1.data(), x.data(), W.w, 64, false);
  gemm_nn(b1.data(), dy.data(), W.w, 64, false);
  omp_set_num_threads(2);
  gemm_nt(a2.data(), x.data(), W.w, 64, false);
  gemm_nn(b2.data(), dy.data(), W.w, 64, false);
  omp_set_num_threads(saved);
  EXPECT_EQ(0, std::memcmp(a1.data(), a2.data(), a1.size() * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(b1.data(), b2.data(), b1.size() * sizeof(float)));
  // 1,000 columns: one thread keeps A packed across its two column blocks, two threads (one block
  // each) do not.
  const Stored F(rng, DType::F32, 1000, 600);
  const std::vector<float> x2 = random_vec(rng, 100 * 600);
  std::vector<float> c1(100 * 1000), c2(c1.size());
  omp_set_num_threads(1);
  gemm_nt(c1.data(), x2.data(), F.w, 100, false);
  omp_set_num_threads(2);
  gemm_nt(c2.data(), x2.data(), F.w, 100, false);
  omp_set_num_threads(saved);
  EXPECT_EQ(0, std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(float)));
}

}  // namespace
}  // namespace la
