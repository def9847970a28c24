#include "support/test_support.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "la/core/runtime.h"

namespace la::test {

std::string shared_data() {
  if (const char* p = std::getenv("LA_SHARED_DATA")) return p;
  return LA_SHARED_DATA_DEFAULT;
}

std::string shared_path(const std::string& rel) {
  return shared_data() + "/" + rel;
}

bool run_library_on_one_thread() {
  class OneThread : public ::testing::Environment {
   public:
    void SetUp() override {
      set_runtime(runtime_with([](Runtime& r) { r.threads = 1; }));
    }
  };
  ::testing::AddGlobalTestEnvironment(new OneThread);
  return true;
}

ScopedRuntime::ScopedRuntime(const Runtime& r) : saved_(runtime()) {
  set_runtime(r);
}

ScopedRuntime::~ScopedRuntime() {
  set_runtime(saved_);
}

bool shared_file_exists(const std::string& rel) {
  return std::filesystem::exists(shared_data() + "/" + rel);
}

TempDir::TempDir() {
  std::random_device rd;
  auto base = std::filesystem::temp_directory_path();
  for (int i = 0; i < 100; ++i) {
    auto p = base / ("la-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    if (std::filesystem::create_directory(p)) {
      path_ = p.string();
      return;
    }
  }
  throw std::runtime_error("cannot create temp dir");
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

CommandResult run_cli(const std::string& args) {
  return run_cli_with_prefix("", args);
}

CommandResult run_cli_with_prefix(const std::string& prefix, const std::string& args) {
  TempDir tmp;
  std::string out = tmp.file("stdout"), err = tmp.file("stderr");
  std::string cmd = prefix + (prefix.empty() ? "" : " ") + std::string(LA_CLI_PATH) + " " + args + " >" + out + " 2>" +
                    err + " </dev/null";
  int rc = std::system(cmd.c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + (WIFSIGNALED(rc) ? WTERMSIG(rc) : 0);
  r.out = read_text(out);
  r.err = read_text(err);
  return r;
}

std::vector<float> random_vec(std::mt19937& rng, int64_t n, float lo, float hi) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = u(rng);
  return v;
}

}  // namespace la::test
