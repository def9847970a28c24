// Helpers shared by the tests: where the real material lives, temporary folders, running the CLI.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "la/core/runtime.h"
#include "la/model/config.h"

namespace la::test {

// A copy of a span, for EXPECT_EQ against vectors.
inline std::vector<float> to_vec(std::span<const float> s) {
  return {s.begin(), s.end()};
}

// ../shared/data (or $LA_SHARED_DATA). Tests that need it call REQUIRE_SHARED_DATA(...) first.
std::string shared_data();
bool shared_file_exists(const std::string& rel);
std::string shared_path(const std::string& rel);  // shared_data() + "/" + rel

// Library runs in the calling test binary on one thread (tiny models: OpenMP barriers on a busy
// machine can make a 200-token decode take seconds). Call from a namespace-scope initialiser:
//   [[maybe_unused]] const bool kOneThread = la::test::run_library_on_one_thread();
bool run_library_on_one_thread();

// Puts a runtime in force (set_runtime) while it lives, then the one before it again:
//   test::ScopedRuntime bf16(test::runtime_with([](Runtime& r) { r.bf16_compute = true; }));
class ScopedRuntime {
 public:
  explicit ScopedRuntime(const Runtime& r);
  ~ScopedRuntime();
  ScopedRuntime(const ScopedRuntime&) = delete;
  ScopedRuntime& operator=(const ScopedRuntime&) = delete;

 private:
  Runtime saved_;
};
// The runtime in force with `change` applied to a copy.
template <class F>
Runtime runtime_with(F change) {
  Runtime r = runtime();
  change(r);
  return r;
}

#define REQUIRE_SHARED_DATA(rel)                                                              \
  do {                                                                                        \
    if (!::la::test::shared_file_exists(rel))                                                 \
      GTEST_SKIP() << "shared data not present: " << ::la::test::shared_data() << "/" << rel; \
  } while (0)

// n values uniform in [lo, hi).
std::vector<float> random_vec(std::mt19937& rng, int64_t n, float lo = -1.0f, float hi = 1.0f);

// A fresh empty directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A folder of read-only materials built once and shared by every process of this test binary
// (ctest runs each test in its own process): `build(dir)` fills a fresh folder, which is then
// renamed into place under the build tree, keyed by this executable and the CLI (a rebuild of
// either makes a new one and removes the old). Concurrent first users race harmlessly: one
// rename wins, the others use it. Tests must not write into it.
std::string shared_fixture_dir(const std::string& name, const std::function<void(const std::string& dir)>& build);

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs the shell command line `cmd` with `input` on its standard input, capturing stdout and
// stderr; exit_code is its status, or 128 + the signal that ended it.
CommandResult run_shell(const std::string& cmd, const std::string& input = "");
// Runs build/bin/llama-adapter with `args` (a shell-quoted string), capturing stdout and stderr.
CommandResult run_cli(const std::string& args);
// The same with a command put before the binary (e.g. "timeout 30").
CommandResult run_cli_with_prefix(const std::string& prefix, const std::string& args);
// The same with `input` on its standard input.
CommandResult run_cli_with_input(const std::string& args, const std::string& input);

// Runs `f`, which must throw la::Error whose message is one line, contains `path` and every one
// of `needles`. Any other exception (or none) fails the test.
void expect_error(const std::function<void()>& f, const std::string& path, std::initializer_list<std::string> needles);

// A small model shape for random weights (the other fields keep ModelConfig's defaults).
ModelConfig config(int64_t dim, int64_t hidden_dim, int64_t n_layers, int64_t n_heads, int64_t n_kv_heads,
                   int64_t vocab_size, int64_t max_seq_len);

// A python that imports torch: $LA_TORCH_PYTHON, python3 or /usr/bin/python3, the first that
// does; "" when none (tests that compare with PyTorch then skip).
std::string torch_python();

void write_text(const std::string& path, const std::string& text);
std::string read_text(const std::string& path);
std::string shell_quote(const std::string& s);

}  // namespace la::test
