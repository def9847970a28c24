// The machine's fp32 multiply-add peak, measured: every thread runs independent FMA chains at the
// widest vector width of the instruction set in force (core/runtime.h), nothing read from memory.
// What `bench --fma-peak` reports, the denominator of a model-FLOP utilisation.
#pragma once
#include <cstdint>

namespace la {

// One instruction set's loop (kernels/isa/fma_peak_impl.inc).
struct FmaLoop {
  const char* name;  // "generic", "avx2", "avx512"
  // `iters` steps of `chains` independent `acc = acc * a + b` on vectors of `width` floats:
  // 2 * iters * chains * width FLOP. Returns the sum of the accumulators (keeps the work live).
  float (*run)(int64_t iters, float a, float b);
  int width, chains;
};

struct FmaPeak {
  double gflop_s = 0;  // all threads together, the best of the repetitions
  const char* isa = "";
  int width = 0, chains = 0, threads = 0;
};

// About `seconds` of measurement in total (calibrated, then `reps` timed repetitions).
FmaPeak measure_fma_peak(double seconds = 0.5, int reps = 5);

}  // namespace la
