// The runtime seam (core/runtime.h): each instruction-set name puts the expected variant of every
// per-ISA kernel set in force (attention, gemv, rowwise, quant_dot, and the GEMMs' availability),
// also after an earlier pick (no variant is cached at first use); names that are unknown or more
// than this CPU runs, and bf16 arithmetic without its instructions, are one-line errors that
// change nothing; the thread count is clamped to what the process may use; the environment is
// read where runtime_from_env says; the CLI applies it all before a command runs.
#include <gtest/gtest.h>
#include <omp.h>
#include <sched.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

#include "la/core/cpu.h"
#include "la/core/error.h"
#include "la/core/runtime.h"
#include "la/kernels/attention.h"
#include "la/kernels/gemm.h"
#include "la/kernels/gemv.h"
#include "la/kernels/matmul.h"
#include "la/kernels/quant_dot.h"
#include "la/kernels/rowwise.h"
#include "support/test_support.h"

namespace la {
namespace {

constexpr Isa kIsas[] = {Isa::Generic, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni};

Runtime with_isa(const std::string& isa) {
  return test::runtime_with([&](Runtime& r) {
    r.isa = isa;
    r.bf16_compute = false;
  });
}

// Sets an environment variable while it lives (nullptr: unset), then restores it.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) saved_ = old;
    if (value)
      setenv(name, value, 1);
    else
      unsetenv(name);
  }
  ~ScopedEnv() {
    if (saved_)
      setenv(name_, saved_->c_str(), 1);
    else
      unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> saved_;
};

TEST(Runtime, NamesAndLevels) {
  std::string names;
  for (Isa i : kIsas) names += std::string(isa_name(i)) + (cpu_runs(i) ? " " : "(no) ");
  std::printf("  levels on this CPU: %s; best %s; in force %s, %d threads of %d allowed\n", names.c_str(),
              isa_name(best_isa()), runtime().isa.c_str(), runtime().threads, allowed_threads());
  EXPECT_TRUE(cpu_runs(Isa::Generic));
  EXPECT_TRUE(cpu_runs(best_isa()));
  for (Isa i : kIsas) {
    if (i > best_isa()) {
      EXPECT_FALSE(cpu_runs(i)) << isa_name(i);
    }
  }
  EXPECT_EQ(cpu_runs(Isa::Avx2), cpu_runs_avx2_build());
  EXPECT_EQ(cpu_runs(Isa::Avx512), cpu_runs_avx512_build());
  EXPECT_EQ(cpu_runs(Isa::Avx512Vnni), cpu_runs_avx512_build() && cpu_features().avx512_vnni);
  // In force: a resolved name, never "" (the per-ISA ctest runs set LA_ISA; this one does not).
  EXPECT_EQ(runtime().isa, isa_name(runtime_isa()));
}

// Every name the CPU runs picks the variant it names; avx512vnni is AVX-512 with VNNI allowed, so
// the avx512 build of the kernel sets without a vnni one (the old attention pick dropped to avx2).
// Picked in ascending and then descending order, so that each pick follows a different one.
TEST(Runtime, EachIsaPicksItsVariants) {
  const Runtime before = runtime();
  int checked = 0;
  for (bool down : {false, true})
    for (int n = 0; n < 4; ++n) {
      const Isa i = kIsas[down ? 3 - n : n];
      const std::string name = isa_name(i);
      SCOPED_TRACE(name);
      if (!cpu_runs(i)) {
        EXPECT_THROW(set_runtime(with_isa(name)), Error);
        EXPECT_EQ(runtime().isa, before.isa) << "a refused runtime changes nothing";
        continue;
      }
      test::ScopedRuntime scoped(with_isa(name));
      EXPECT_EQ(runtime().isa, name);
      EXPECT_EQ(runtime_isa(), i);
      const std::string wide = i == Isa::Avx512Vnni ? "avx512" : name;
      EXPECT_EQ(attention_kernels_name(), wide);
      EXPECT_EQ(gemv_kernels().name, wide);
      EXPECT_EQ(rowwise_kernels().name, wide);
      EXPECT_EQ(quant_dot_kernels().name, name);
      EXPECT_EQ(gemm_available(), i >= Isa::Avx2);
      EXPECT_EQ(std::string(gemm_kernels_name()), i == Isa::Generic ? "none" : wide);
      EXPECT_EQ(quant_gemm_available(), i == Isa::Avx512Vnni);
      EXPECT_EQ(gemm_bf16_available(), i >= Isa::Avx512 && cpu_features().avx512_bf16);
      EXPECT_EQ(bf16_compute_supported(), gemm_bf16_available());
      ++checked;
    }
  EXPECT_GE(checked, 2) << "generic at least, both ways";
  EXPECT_EQ(runtime().isa, before.isa) << "ScopedRuntime restores";
  EXPECT_EQ(runtime().threads, before.threads);
}

TEST(Runtime, EmptyIsaIsTheBest) {
  test::ScopedRuntime scoped(with_isa(""));
  EXPECT_EQ(runtime_isa(), best_isa());
  EXPECT_EQ(runtime().isa, isa_name(best_isa()));
}

TEST(Runtime, UnknownIsaNamesAreOneLineErrors) {
  const Runtime before = runtime();
  for (const char* bad : {"avx3", "AVX2", " avx2", "avx512_vnni", "sse4", "native"}) {
    SCOPED_TRACE(bad);
    try {
      set_runtime(with_isa(bad));
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(std::string("'") + bad + "'"), std::string::npos) << msg;
      EXPECT_NE(msg.find("avx512vnni"), std::string::npos) << "names the choices: " << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
    EXPECT_EQ(runtime().isa, before.isa);
    EXPECT_EQ(runtime().threads, before.threads);
  }
}

TEST(Runtime, Bf16ComputeNeedsAvx512Bf16) {
  const Runtime before = runtime();
  auto bf16 = [](const std::string& isa) {
    return test::runtime_with([&](Runtime& r) {
      r.isa = isa;
      r.bf16_compute = true;
    });
  };
  // Below AVX-512 it is refused whatever the CPU has.
  for (const char* isa : {"generic", "avx2"}) {
    if (!cpu_runs(std::string(isa) == "generic" ? Isa::Generic : Isa::Avx2)) continue;
    try {
      set_runtime(bf16(isa));
      ADD_FAILURE() << isa << " accepted bf16 arithmetic";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("bf16"), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
    }
  }
  EXPECT_FALSE(runtime().bf16_compute);
  EXPECT_EQ(runtime().isa, before.isa);
  const bool has = cpu_features().avx512_bf16 && cpu_runs(Isa::Avx512);
  if (!has) {
    EXPECT_THROW(set_runtime(bf16("")), Error) << "this CPU has no AVX512-BF16";
    EXPECT_FALSE(runtime().bf16_compute);
    return;
  }
  test::ScopedRuntime on(bf16(""));
  EXPECT_TRUE(runtime().bf16_compute);
  EXPECT_TRUE(bf16_compute_supported());
}

int affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  return sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1 << 30;
}

TEST(Runtime, ThreadsAreClampedToWhatTheProcessMayUse) {
  const int allowed = allowed_threads();
  ASSERT_GE(allowed, 1);
  EXPECT_LE(allowed, affinity_cpus());
  for (int asked : {1 << 20, allowed + 1, allowed, 1, 0, -3}) {
    SCOPED_TRACE(asked);
    test::ScopedRuntime scoped(test::runtime_with([&](Runtime& r) { r.threads = asked; }));
    const int expected = asked <= 0 ? allowed : std::min(asked, allowed);
    EXPECT_EQ(runtime().threads, expected);
    EXPECT_LE(runtime().threads, allowed);
    EXPECT_EQ(omp_get_max_threads(), expected) << "set_runtime sets OpenMP's count";
  }
  // set_runtime returns the value in force: what a caller compares with its request.
  Runtime r = runtime();
  const Runtime saved = r;
  r.threads = allowed + 7;
  EXPECT_EQ(set_runtime(r).threads, allowed);
  set_runtime(saved);
}

// The quota is read from a fake cgroup tree: v2 (cpu.max, the smallest on the way up to the root),
// v1 (cpu.cfs_quota_us / cpu.cfs_period_us), none, and a path that does not exist (a container's
// view: the root's own quota).
TEST(Runtime, CgroupQuota) {
  test::TempDir t;
  namespace fs = std::filesystem;
  const std::string root = t.path() + "/sys";
  fs::create_directories(root + "/a/b");
  test::write_text(root + "/cpu.max", "max 100000\n");
  test::write_text(root + "/a/cpu.max", "150000 100000\n");
  test::write_text(root + "/a/b/cpu.max", "250000 100000\n");
  test::write_text(t.file("self"), "0::/a/b\n");
  EXPECT_DOUBLE_EQ(cgroup_cpu_quota(root, t.file("self")), 1.5) << "the parent's quota binds";
  test::write_text(t.file("self"), "0::/elsewhere\n");
  EXPECT_DOUBLE_EQ(cgroup_cpu_quota(root, t.file("self")), 0.0) << "the root sets none";
  test::write_text(root + "/cpu.max", "300000 100000\n");
  EXPECT_DOUBLE_EQ(cgroup_cpu_quota(root, t.file("self")), 3.0) << "an unknown path: the root's";

  const std::string v1 = t.path() + "/v1";
  fs::create_directories(v1 + "/cpu,cpuacct/job");
  test::write_text(v1 + "/cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
  test::write_text(v1 + "/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
  test::write_text(v1 + "/cpu,cpuacct/job/cpu.cfs_quota_us", "50000\n");
  test::write_text(v1 + "/cpu,cpuacct/job/cpu.cfs_period_us", "100000\n");
  test::write_text(t.file("self1"), "5:memory:/job\n4:cpu,cpuacct:/job\n0::/\n");
  EXPECT_DOUBLE_EQ(cgroup_cpu_quota(v1, t.file("self1")), 0.5);
  EXPECT_DOUBLE_EQ(cgroup_cpu_quota(v1, t.file("missing")), 0.0);
  // This machine's: whatever it is, allowed_threads() is within it.
  const double q = cgroup_cpu_quota();
  if (q > 0) {
    EXPECT_LE(allowed_threads(), static_cast<int>(std::ceil(q)));
  }
}

TEST(Runtime, FromEnvironment) {
  {
    ScopedEnv isa("LA_ISA", nullptr), omp("OMP_NUM_THREADS", nullptr);
    const Runtime r = runtime_from_env();
    EXPECT_EQ(r.isa, "");
    EXPECT_EQ(r.threads, 0);
    EXPECT_FALSE(r.bf16_compute);
  }
  {
    ScopedEnv isa("LA_ISA", "generic"), omp("OMP_NUM_THREADS", "3,2");
    const Runtime r = runtime_from_env();
    EXPECT_EQ(r.isa, "generic");
    EXPECT_EQ(r.threads, 3) << "the outer level of a nesting list";
  }
  {
    ScopedEnv isa("LA_ISA", "bogus");
    EXPECT_EQ(runtime_from_env().isa, "bogus") << "read as is; set_runtime validates";
    EXPECT_THROW(set_runtime(runtime_from_env()), Error);
  }
}

// The CLI puts the runtime in force before the command runs: an unknown LA_ISA is its one-line
// error before any file is read; --threads above the allowed count is a note, not an error; `info`
// prints the runtime in force.
TEST(Runtime, CliAppliesItBeforeTheCommand) {
  {
    ScopedEnv isa("LA_ISA", "bogus");
    const test::CommandResult r = test::run_cli("info --model /nonexistent/model.bin");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("error: instruction set 'bogus'"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("nonexistent"), std::string::npos) << "the runtime comes first: " << r.err;
  }
  {
    ScopedEnv isa("LA_ISA", "generic");
    const test::CommandResult r = test::run_cli("info --shape stories260k --threads 100000");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("note: --threads 100000"), std::string::npos) << r.err;
    const std::string line = "runtime:      threads " + std::to_string(allowed_threads()) + " (of ";
    EXPECT_NE(r.out.find(line), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("isa generic, bf16 arithmetic off"), std::string::npos) << r.out;
  }
  {
    ScopedEnv isa("LA_ISA", nullptr);
    const test::CommandResult r = test::run_cli("info --shape stories260k --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find(std::string("runtime:      threads 1 (of ") + std::to_string(allowed_threads()) +
                         " allowed), isa " + isa_name(best_isa())),
              std::string::npos)
        << r.out;
    EXPECT_EQ(r.err, "");
  }
}

}  // namespace
}  // namespace la
