// How this process computes: the thread count, bf16 arithmetic and the instruction set the kernels
// use. One value, put in force once by the program (the CLI: its flags over runtime_from_env(),
// before any model is loaded) and read by the kernels through runtime(). Nothing else in the
// library sets threads or reads LA_ISA.
#pragma once
#include <cstdint>
#include <string>

namespace la {

struct Runtime {
  int threads = 0;            // 0 (or less): every core this process may use (allowed_threads())
  bool bf16_compute = false;  // BF16 weights x more rows than gemv takes in bf16 arithmetic (matmul.h)
  std::string isa;            // "": the best this CPU runs; else generic | avx2 | avx512 | avx512vnni
};

// Instruction-set levels of the per-ISA kernel builds (kernels/isa/), ascending; each includes
// the ones below. avx512vnni means "the AVX-512 kernels, VNNI allowed": attention, gemv and
// rowwise use their avx512 build, quant_dot its vnni one, and the integer GEMM runs.
enum class Isa : uint8_t { Generic, Avx2, Avx512, Avx512Vnni };
const char* isa_name(Isa i);  // "generic", "avx2", "avx512", "avx512vnni"
bool cpu_runs(Isa i);         // this CPU (CPUID, and the OS saving the registers) runs that build
Isa best_isa();               // the highest level cpu_runs

// The defaults the environment gives: isa = $LA_ISA (the one place in the tree that reads it),
// threads = the first number of $OMP_NUM_THREADS when it is set (else 0), bf16_compute off.
// Nothing is validated here: set_runtime does that.
Runtime runtime_from_env();

// Cores this process may use: its CPU affinity mask, and the cgroup CPU quota (cgroup v2
// cpu.max or v1 cpu.cfs_quota_us, rounded up) where one is set. At least 1.
int allowed_threads();
// The CPUs the cgroup quota allows (e.g. 1.5), 0 when none is set. The arguments are for tests.
double cgroup_cpu_quota(const std::string& cgroup_root = "/sys/fs/cgroup",
                        const std::string& self_cgroup = "/proc/self/cgroup");

// Puts `r` in force and returns the value now in force: threads <= 0 become allowed_threads()
// and a request above it is clamped to it (no error: compare with r.threads to tell the user);
// isa "" becomes the name of best_isa(). The one place that calls omp_set_num_threads and
// openblas_set_num_threads. Throws la::Error (one line, nothing changed) for an unknown isa name,
// an isa this CPU cannot run, or bf16_compute without AVX512-BF16 or with an isa below avx512.
// Call while no kernel runs (at start-up; tests between products): the kernels read the value
// without locks.
const Runtime& set_runtime(const Runtime& r);

// The value in force: threads and isa resolved as set_runtime does. Before any set_runtime, the
// environment's (runtime_from_env()), put in force on first use; if LA_ISA is unknown or more
// than this CPU runs, that first use warns on stderr and takes the best instead (a library user
// that never calls set_runtime gets working kernels; the CLI calls set_runtime and gets the error).
const Runtime& runtime();
// runtime().isa as a level: what the kernels switch on (no string compare per call).
Isa runtime_isa();

// The variant of a per-ISA kernel set for the level in force: avx512vnni takes the `avx512vnni`
// build where the set has one (quant_dot) and the avx512 build otherwise.
template <class Kernels>
const Kernels* isa_pick(const Kernels* generic, const Kernels* avx2, const Kernels* avx512,
                        const Kernels* avx512vnni = nullptr) {
  switch (runtime_isa()) {
    case Isa::Avx512Vnni:
      if (avx512vnni) return avx512vnni;
      [[fallthrough]];
    case Isa::Avx512: return avx512;
    case Isa::Avx2: return avx2;
    case Isa::Generic: break;
  }
  return generic;
}

}  // namespace la
