#include "la/core/cpu.h"

#include <cblas.h>
#include <cpuid.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <vector>

namespace la {

namespace {

bool os_saves_avx512() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  (void)hi;
  return (lo & 0xe6u) == 0xe6u;  // XMM, YMM, opmask, ZMM_Hi256, Hi16_ZMM
}

bool os_saves_avx() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  (void)hi;
  return (lo & 0x6u) == 0x6u;
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  bool osxsave = (c >> 27) & 1u;
  bool avx = ((c >> 28) & 1u) && osxsave && os_saves_avx();
  f.fma = avx && ((c >> 12) & 1u);
  f.f16c = avx && ((c >> 29) & 1u);
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    f.avx2 = avx && ((b >> 5) & 1u);
    bool z = avx && os_saves_avx512();
    f.avx512f = z && ((b >> 16) & 1u);
    f.avx512bw = z && ((b >> 30) & 1u);
    f.avx512vl = z && ((b >> 31) & 1u);
    f.avx512_vnni = z && ((c >> 11) & 1u);
    f.amx_bf16 = (d >> 22) & 1u;
    f.amx_tile = (d >> 24) & 1u;
    f.amx_int8 = (d >> 25) & 1u;
    unsigned a1, b1, c1, d1;
    if (__get_cpuid_count(7, 1, &a1, &b1, &c1, &d1)) f.avx512_bf16 = z && ((a1 >> 5) & 1u);
  }
  char brand[49] = {0};
  unsigned* p = reinterpret_cast<unsigned*>(brand);
  for (unsigned i = 0; i < 3; ++i) __get_cpuid(0x80000002u + i, p + 4 * i, p + 4 * i + 1, p + 4 * i + 2, p + 4 * i + 3);
  f.brand = brand;
  while (!f.brand.empty() && f.brand.back() == ' ') f.brand.pop_back();
  return f;
}

}  // namespace

std::string CpuFeatures::summary() const {
  std::string s;
  auto add = [&](bool on, const char* n) {
    if (!on) return;
    if (!s.empty()) s += ' ';
    s += n;
  };
  add(avx2, "AVX2");
  add(fma, "FMA");
  add(f16c, "F16C");
  add(avx512f, "AVX512F");
  add(avx512bw, "AVX512BW");
  add(avx512_vnni, "AVX512_VNNI");
  add(avx512_bf16, "AVX512_BF16");
  add(amx_bf16, "AMX_BF16");
  add(amx_int8, "AMX_INT8");
  return s.empty() ? "baseline x86-64" : s;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

bool cpu_runs_avx2_build() {
  const CpuFeatures& f = cpu_features();
  return f.avx2 && f.fma && f.f16c;
}

bool cpu_runs_avx512_build() {
  const CpuFeatures& f = cpu_features();
  return cpu_runs_avx2_build() && f.avx512f && f.avx512bw && f.avx512vl;
}

void ensure_openblas_coretype(int argc, char** argv) {
  (void)argc;
  // The project's own variable wins; otherwise the best kernel set for this CPU. An inherited
  // OPENBLAS_CORETYPE that differs (some environments preset Haswell) is overridden: on AVX-512
  // machines SkylakeX kernels are about twice as fast.
  std::string want;
  if (const char* e = std::getenv("LA_OPENBLAS_CORETYPE")) {
    want = e;
  } else {
    const CpuFeatures& f = cpu_features();
    if (f.avx512f && f.avx512bw && f.avx512vl)
      want = "SkylakeX";
    else if (f.avx2 && f.fma)
      want = "Haswell";
  }
  if (want.empty()) return;
  const char* have = std::getenv("OPENBLAS_CORETYPE");
  if (have != nullptr && want == have) return;
  setenv("OPENBLAS_CORETYPE", want.c_str(), 1);
  // The library has already read the variable by now: start again, once, so it sees ours.
  if (std::getenv("LA_NO_REEXEC") != nullptr) return;
  setenv("LA_NO_REEXEC", "1", 1);
  execv("/proc/self/exe", argv);
}

std::string blas_core_name() {
  return openblas_get_corename();
}

}  // namespace la
