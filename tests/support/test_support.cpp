#include "support/test_support.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "la/core/error.h"
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

namespace {
// A file's identity for a cache key: size and modification time in nanoseconds.
std::string file_stamp(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw std::runtime_error("cannot stat " + path);
  return std::to_string(st.st_size) + "-" + std::to_string(st.st_mtim.tv_sec) + std::to_string(st.st_mtim.tv_nsec);
}
}  // namespace

std::string shared_fixture_dir(const std::string& name, const std::function<void(const std::string& dir)>& build) {
  namespace fs = std::filesystem;
  const fs::path exe = fs::read_symlink("/proc/self/exe");
  const fs::path root = exe.parent_path() / "fixtures";
  const std::string prefix = exe.filename().string() + "." + name + ".";
  const fs::path dir = root / (prefix + file_stamp(exe.string()) + "." + file_stamp(LA_CLI_PATH));
  if (fs::exists(dir / ".complete")) return dir.string();
  fs::create_directories(root);
  // One builder at a time (flock, released when the process ends); the others wait, then find it.
  const std::string lock_path = (root / (prefix + "lock")).string();
  const int fd = ::open(lock_path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  if (fd < 0 || ::flock(fd, LOCK_EX) != 0) throw std::runtime_error("cannot lock " + lock_path);
  if (!fs::exists(dir / ".complete")) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(root, ec))  // earlier builds' copies, a crashed build's
      if (e.path().filename().string().rfind(prefix, 0) == 0 && e.path().extension() != ".lock")
        fs::remove_all(e.path(), ec);
    fs::create_directories(dir);
    build(dir.string());
    write_text((dir / ".complete").string(), "");
  }
  ::close(fd);
  return dir.string();
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

CommandResult run_shell(const std::string& cmd, const std::string& input) {
  TempDir tmp;
  const std::string out = tmp.file("stdout"), err = tmp.file("stderr"), in = tmp.file("stdin");
  write_text(in, input);
  const int rc = std::system((cmd + " >" + out + " 2>" + err + " <" + in).c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + (WIFSIGNALED(rc) ? WTERMSIG(rc) : 0);
  r.out = read_text(out);
  r.err = read_text(err);
  return r;
}

CommandResult run_cli(const std::string& args) {
  return run_cli_with_prefix("", args);
}

namespace {

CommandResult run_cli_from(const std::string& prefix, const std::string& args, const std::string& input) {
  return run_shell(prefix + (prefix.empty() ? "" : " ") + std::string(LA_CLI_PATH) + " " + args, input);
}

}  // namespace

CommandResult run_cli_with_prefix(const std::string& prefix, const std::string& args) {
  return run_cli_from(prefix, args, "");
}

CommandResult run_cli_with_input(const std::string& args, const std::string& input) {
  return run_cli_from("", args, input);
}

std::vector<float> random_vec(std::mt19937& rng, int64_t n, float lo, float hi) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = u(rng);
  return v;
}

void expect_error(const std::function<void()>& f, const std::string& path, std::initializer_list<std::string> needles) {
  try {
    f();
    ADD_FAILURE() << "no error for " << path;
  } catch (const la::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << "message does not name " << path << ": " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "not one line: " << msg;
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "no '" << n << "' in: " << msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a non-la::Error exception: " << e.what();
  }
}

ModelConfig config(int64_t dim, int64_t hidden_dim, int64_t n_layers, int64_t n_heads, int64_t n_kv_heads,
                   int64_t vocab_size, int64_t max_seq_len) {
  ModelConfig c;
  c.dim = dim;
  c.hidden_dim = hidden_dim;
  c.n_layers = n_layers;
  c.n_heads = n_heads;
  c.n_kv_heads = n_kv_heads;
  c.vocab_size = vocab_size;
  c.max_seq_len = max_seq_len;
  return c;
}

std::string torch_python() {
  static const std::string found = [] {
    std::vector<std::string> candidates;
    if (const char* p = std::getenv("LA_TORCH_PYTHON"); p && *p) candidates.push_back(p);
    candidates.push_back("python3");
    candidates.push_back("/usr/bin/python3");  // a distribution's python3-torch behind a pyenv/venv on PATH
    for (const std::string& py : candidates)
      if (std::system((shell_quote(py) + " -c 'import torch' >/dev/null 2>&1").c_str()) == 0) return py;
    return std::string();
  }();
  return found;
}

}  // namespace la::test
