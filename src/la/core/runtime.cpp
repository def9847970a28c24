#include "la/core/runtime.h"

#include <cblas.h>
#include <omp.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>

#include "la/core/cpu.h"
#include "la/core/error.h"

namespace la {

namespace {

constexpr Isa kIsas[] = {Isa::Generic, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni};

bool parse_isa(const std::string& name, Isa* out) {
  for (Isa i : kIsas)
    if (name == isa_name(i)) {
      *out = i;
      return true;
    }
  return false;
}

// CPUs in this process's affinity mask (sched_getaffinity, grown past 1024 CPUs if need be).
int affinity_count() {
  for (int n = 1024; n <= (1 << 16); n *= 2) {
    cpu_set_t* set = CPU_ALLOC(n);
    if (!set) break;
    const size_t size = CPU_ALLOC_SIZE(n);
    CPU_ZERO_S(size, set);
    const int rc = sched_getaffinity(0, size, set);
    const int count = rc == 0 ? CPU_COUNT_S(size, set) : 0;
    CPU_FREE(set);
    if (rc == 0) return count;
    if (errno != EINVAL) break;
  }
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  return online > 0 ? static_cast<int>(online) : 1;
}

bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// The CPUs a cgroup's quota allows (quota / period), 0 when it sets none. v2: "max 100000" or
// "200000 100000" in cpu.max; v1: cpu.cfs_quota_us (-1: none) over cpu.cfs_period_us.
double quota_of(const std::string& dir, bool v2) {
  double quota = -1, period = 0;
  if (v2) {
    std::ifstream f(dir + "/cpu.max");
    std::string q;
    if (!(f >> q >> period) || q == "max") return 0;
    quota = std::atof(q.c_str());
  } else {
    std::ifstream fq(dir + "/cpu.cfs_quota_us"), fp(dir + "/cpu.cfs_period_us");
    if (!(fq >> quota) || !(fp >> period)) return 0;
  }
  return quota > 0 && period > 0 ? quota / period : 0;
}

}  // namespace

// The smallest quota on the way from this process's cgroup up to the hierarchy's root (a parent's
// limit binds its children). Containers often see their own cgroup as the mount's root, with
// /proc/self/cgroup naming a host path that does not exist here: then just the root.
double cgroup_cpu_quota(const std::string& cgroup_root, const std::string& self_cgroup) {
  std::ifstream f(self_cgroup);
  std::string line;
  double best = 0;
  auto walk = [&](const std::string& base, const std::string& path, bool v2) {
    if (!is_dir(base)) return;
    std::string dir = base + (path == "/" ? "" : path);
    if (!is_dir(dir)) dir = base;
    for (;;) {
      const double q = quota_of(dir, v2);
      if (q > 0 && (best == 0 || q < best)) best = q;
      if (dir.size() <= base.size()) break;
      dir.erase(dir.rfind('/'));
    }
  };
  while (std::getline(f, line)) {
    const size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (line.compare(0, a, "0") == 0 && controllers.empty()) {
      walk(cgroup_root, path, true);
      walk(cgroup_root + "/unified", path, true);
      continue;
    }
    std::stringstream ss(controllers);
    for (std::string c; std::getline(ss, c, ',');)
      if (c == "cpu") {
        walk(cgroup_root + "/cpu", path, false);
        walk(cgroup_root + "/cpu,cpuacct", path, false);
      }
  }
  return best;
}

namespace {

struct State {
  Runtime runtime;
  Isa isa = Isa::Generic;
};

// Checks r against this CPU and resolves its defaults; changes nothing.
State resolve(const Runtime& r) {
  State s;
  s.isa = best_isa();
  if (!r.isa.empty()) {
    if (!parse_isa(r.isa, &s.isa))
      fail("instruction set '{}' (LA_ISA) is unknown: use generic, avx2, avx512 or avx512vnni", r.isa);
    if (!cpu_runs(s.isa))
      fail("instruction set '{}' (LA_ISA): this CPU cannot run it (it has {}; the best it runs is {})", r.isa,
           cpu_features().summary(), isa_name(best_isa()));
  }
  if (r.bf16_compute) {
    if (!cpu_features().avx512_bf16 || !cpu_runs(Isa::Avx512))
      fail("bf16 arithmetic (--bf16-compute) needs a CPU with AVX512-BF16 (vdpbf16ps); this one has {}",
           cpu_features().summary());
    if (s.isa < Isa::Avx512)
      fail("bf16 arithmetic (--bf16-compute) runs in the AVX-512 kernels; instruction set '{}' (LA_ISA) excludes them",
           isa_name(s.isa));
  }
  const int allowed = allowed_threads();
  s.runtime.threads = r.threads <= 0 ? allowed : std::min(r.threads, allowed);
  s.runtime.bf16_compute = r.bf16_compute;
  s.runtime.isa = isa_name(s.isa);
  return s;
}

void apply_threads(int n) {
  // Inside a parallel region omp_set_num_threads would set only that thread's count.
  if (omp_in_parallel()) return;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

// The value in force. `once` makes the first reader put the environment's value in force, unless
// set_runtime came first.
struct Slot {
  std::once_flag once;
  State state;
};

Slot& slot() {
  static Slot s;
  return s;
}

State from_environment() {
  Runtime r = runtime_from_env();
  try {
    return resolve(r);
  } catch (const Error& e) {
    std::fprintf(stderr, "warning: %s; using %s\n", e.what(), isa_name(best_isa()));
    r.isa.clear();
    r.bf16_compute = false;
    return resolve(r);
  }
}

const State& state() {
  Slot& s = slot();
  std::call_once(s.once, [&s] {
    s.state = from_environment();
    apply_threads(s.state.runtime.threads);
  });
  return s.state;
}

}  // namespace

const char* isa_name(Isa i) {
  switch (i) {
    case Isa::Generic: return "generic";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Avx512Vnni: return "avx512vnni";
  }
  return "?";
}

bool cpu_runs(Isa i) {
  switch (i) {
    case Isa::Generic: return true;
    case Isa::Avx2: return cpu_runs_avx2_build();
    case Isa::Avx512: return cpu_runs_avx512_build();
    case Isa::Avx512Vnni: return cpu_runs_avx512_build() && cpu_features().avx512_vnni;
  }
  return false;
}

Isa best_isa() {
  Isa best = Isa::Generic;
  for (Isa i : kIsas)
    if (cpu_runs(i)) best = i;
  return best;
}

Runtime runtime_from_env() {
  Runtime r;
  if (const char* isa = std::getenv("LA_ISA")) r.isa = isa;
  // OpenMP's own variable ("4" or a nesting list "4,2": the outer level counts here).
  if (const char* omp = std::getenv("OMP_NUM_THREADS")) r.threads = std::max(0, std::atoi(omp));
  return r;
}

int allowed_threads() {
  int n = affinity_count();
  const double quota = cgroup_cpu_quota();
  if (quota > 0) n = std::min(n, static_cast<int>(std::ceil(quota)));
  return std::max(n, 1);
}

const Runtime& set_runtime(const Runtime& r) {
  State next = resolve(r);  // throws before anything changes
  Slot& s = slot();
  std::call_once(s.once, [] {});  // the environment's value is not needed any more
  apply_threads(next.runtime.threads);
  s.state = std::move(next);
  return s.state.runtime;
}

const Runtime& runtime() {
  return state().runtime;
}

Isa runtime_isa() {
  return state().isa;
}

}  // namespace la
