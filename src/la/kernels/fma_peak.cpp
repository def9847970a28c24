#include "la/kernels/fma_peak.h"

#include <omp.h>

#include <algorithm>
#include <chrono>

#include "la/core/runtime.h"

namespace la {

namespace generic {
extern const FmaLoop kFmaLoop;
}
namespace avx2 {
extern const FmaLoop kFmaLoop;
}
namespace avx512 {
extern const FmaLoop kFmaLoop;
}

namespace {
// Every thread runs `iters` steps at once; the wall time of the slowest is the measurement.
double run_all_threads(const FmaLoop& k, int64_t iters, int* threads) {
  float sink = 0;
  const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel reduction(+ : sink)
  {
#pragma omp single
    *threads = omp_get_num_threads();
    // a < 1 and b small: the chains converge to b / (1 - a) and stay normal numbers.
    sink += k.run(iters, 0.999f, 1e-3f * static_cast<float>(omp_get_thread_num() + 1));
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  volatile float keep = sink;
  (void)keep;
  return s;
}
}  // namespace

FmaPeak measure_fma_peak(double seconds, int reps) {
  const FmaLoop& k = *isa_pick(&generic::kFmaLoop, &avx2::kFmaLoop, &avx512::kFmaLoop);
  FmaPeak r;
  r.isa = k.name;
  r.width = k.width;
  r.chains = k.chains;
  reps = std::max(reps, 1);
  // Calibrate: grow the count until one run takes a measurable time, then size each repetition.
  int64_t iters = 1 << 14;
  double s = 0;
  while ((s = run_all_threads(k, iters, &r.threads)) < 0.02) iters *= 2;
  iters = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(iters) * (seconds / reps) / s));
  for (int i = 0; i < reps; ++i) {
    s = run_all_threads(k, iters, &r.threads);
    const double flop = 2.0 * static_cast<double>(iters) * k.chains * k.width * r.threads;
    r.gflop_s = std::max(r.gflop_s, flop / s / 1e9);
  }
  return r;
}

}  // namespace la
