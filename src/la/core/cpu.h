// What this CPU can do (read once through CPUID) and the OpenBLAS set-up. What the process does
// with it (threads, instruction set, bf16 arithmetic) is core/runtime.h.
#pragma once
#include <cstdlib>
#include <string>
#include <vector>

namespace la {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512_vnni = false, avx512_bf16 = false;
  bool amx_tile = false, amx_bf16 = false, amx_int8 = false;
  std::string brand;
  std::string summary() const;  // e.g. "AVX2 FMA AVX512F AVX512_BF16"
};

const CpuFeatures& cpu_features();

// The feature sets the per-ISA kernel builds (kernels/isa/*_avx2.cpp, *_avx512.cpp) are compiled for.
bool cpu_runs_avx2_build();    // AVX2 + FMA + F16C
bool cpu_runs_avx512_build();  // that + AVX512-F/BW/VL

// The variants of a per-ISA kernel set this CPU can run, generic first (the tests run each;
// runtime.h's isa_pick chooses the one in force).
template <class Kernels>
std::vector<const Kernels*> isa_variants(const Kernels* generic, const Kernels* avx2, const Kernels* avx512) {
  std::vector<const Kernels*> v{generic};
  if (cpu_runs_avx2_build()) v.push_back(avx2);
  if (cpu_runs_avx512_build()) v.push_back(avx512);
  return v;
}

// Debian's OpenBLAS reads OPENBLAS_CORETYPE once, when it is loaded, and mis-detects recent
// AVX-512 CPUs (falling back to slow kernels). Call first thing in main(): it picks SkylakeX on
// AVX-512 CPUs, Haswell on AVX2-only ones ($LA_OPENBLAS_CORETYPE overrides), and when the
// environment says otherwise it sets OPENBLAS_CORETYPE and re-executes the program once so the
// library sees it. Returns normally otherwise.
void ensure_openblas_coretype(int argc, char** argv);

// The kernel set OpenBLAS is using ("SkylakeX", "Haswell", ...).
std::string blas_core_name();

}  // namespace la
