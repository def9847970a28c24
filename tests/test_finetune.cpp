// The fine-tuning command end to end (SPEC §2, §3, §5, §6), on the real tiny models in
// ../shared/data: gradient accumulation that does not change the step, resume that continues
// bit for bit (also after kill -9), the adapter file format and its shape checks, the zero-init
// property seen through the CLI, and clean failures on bad input and on a diverging run.
// Every CLI run here is small (short records, short sequences, few steps) so that the whole
// file stays quick single-threaded.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "la/core/error.h"
#include "la/data/dataset.h"
#include "la/formats/safetensors.h"
#include "la/io/adapter_file.h"
#include "la/io/loader.h"
#include "la/model/adapter.h"
#include "la/tokenizer/tokenizer.h"
#include "la/train/checkpoint.h"
#include "la/train/trainer.h"
#include "support/test_support.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using la::test::CommandResult;
using la::test::read_text;
using la::test::run_cli;
using la::test::shell_quote;
using la::test::TempDir;
using la::test::to_vec;
using la::test::write_text;

constexpr const char* kStories = "llama2c/stories260K.bin";
constexpr const char* kStoriesTok = "llama2c/tok512.model";
constexpr const char* kAidreams = "llama2c/aidreams260K.bin";
constexpr const char* kAidreamsTok = "llama2c/aidreams260K_tok512.bin";
constexpr const char* kAlpaca = "alpaca/alpaca_data_1k_subset.json";

std::string shared(const std::string& rel) {
  return la::test::shared_data() + "/" + rel;
}
std::string q(const std::string& s) {
  return shell_quote(s);
}

std::string stories_args() {
  return " --model " + q(shared(kStories)) + " --tokenizer " + q(shared(kStoriesTok));
}

// The `n` records of the Alpaca subset without an input and with the shortest instruction +
// output (stable order), as a JSON array: real data whose examples fit in 128 tokens, so the
// runs stay quick.
std::string write_short_records(const TempDir& dir, const std::string& name, size_t n) {
  const json all = json::parse(read_text(shared(kAlpaca)));
  std::vector<json> recs;
  for (const auto& r : all)
    if (r.value("input", std::string()).empty()) recs.push_back(r);
  std::stable_sort(recs.begin(), recs.end(), [](const json& a, const json& b) {
    return a["instruction"].get<std::string>().size() + a["output"].get<std::string>().size() <
           b["instruction"].get<std::string>().size() + b["output"].get<std::string>().size();
  });
  // Skip the very shortest (one-word outputs) so every example has a handful of supervised tokens.
  json out = json::array();
  for (size_t i = 40; i < recs.size() && out.size() < n; ++i) out.push_back(recs[i]);
  EXPECT_EQ(out.size(), n);
  const std::string path = dir.file(name);
  write_text(path, out.dump(1));
  return path;
}

// A finetune command line on stories260K with small defaults; `extra` adds flags and `shape`
// sets K and L.
std::string finetune_args(const std::string& data, const std::string& out, const std::string& extra,
                          const std::string& shape = "--adapter-len 4 --adapter-layers 3") {
  return "finetune" + stories_args() + " --data " + q(data) + " --out " + q(out) +
         " --max-seq-len 128 --batch-size 8 --no-progress " + shape + " " + extra;
}

CommandResult run_ok(const std::string& args) {
  CommandResult r = run_cli(args);
  EXPECT_EQ(r.exit_code, 0) << "llama-adapter " << args << "\nstderr:\n" << r.err;
  return r;
}

std::vector<json> read_metrics(const std::string& path) {
  std::vector<json> lines;
  std::istringstream in(read_text(path));
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) lines.push_back(json::parse(line));
  return lines;
}

// name -> dtype, shape and raw bytes of every tensor, plus the metadata.
struct FileContents {
  std::map<std::string, std::string> tensors;
  std::map<std::string, std::string> metadata;
  bool operator==(const FileContents&) const = default;
};

FileContents file_contents(const std::string& path) {
  la::SafetensorsFile f = la::SafetensorsFile::open(path);
  FileContents c;
  c.metadata = f.metadata();
  for (const auto& t : f.tensors()) {
    std::string key = std::string(la::safe_dtype_name(t.dtype)) + "[";
    for (int64_t d : t.shape) key += std::to_string(d) + ",";
    key += "]";
    c.tensors[t.name] = key + std::string(reinterpret_cast<const char*>(t.data), t.nbytes);
  }
  return c;
}

bool all_finite(std::span<const float> v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}
bool any_nonzero(std::span<const float> v) {
  return std::any_of(v.begin(), v.end(), [](float x) { return x != 0.0f; });
}

// The last non-empty line of a text.
std::string last_line(const std::string& text) {
  std::string s = text;
  while (!s.empty() && s.back() == '\n') s.pop_back();
  const auto nl = s.rfind('\n');
  return nl == std::string::npos ? s : s.substr(nl + 1);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

double relative_diff(double a, double b) {
  return std::fabs(a - b) / std::max(std::fabs(a), std::fabs(b));
}

// A small model shape for the library-only file tests (no weights needed).
la::ModelConfig small_config() {
  la::ModelConfig c;
  c.dim = 16;
  c.hidden_dim = 32;
  c.n_layers = 4;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = 32;
  c.max_seq_len = 64;
  return c;
}

class Finetune : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_SHARED_DATA(kStories);
    REQUIRE_SHARED_DATA(kStoriesTok);
    REQUIRE_SHARED_DATA(kAlpaca);
  }
  TempDir dir;
};

// ---- gradient accumulation -------------------------------------------------------------------

// The loss is averaged over every supervised token of the step (SPEC §3): splitting the batch of
// 8 into micro-batches of 2 (length-grouped, so their token counts differ) gives the same step.
TEST_F(Finetune, MicroBatchSplitDoesNotChangeTheStep) {
  const std::string data = write_short_records(dir, "d.json", 64);
  std::vector<json> first;
  for (int mb : {8, 2}) {
    const std::string m = dir.file("m" + std::to_string(mb) + ".jsonl");
    run_ok(finetune_args(data, dir.file("a" + std::to_string(mb) + ".safetensors"),
                         "--steps 1 --seed 5 --micro-batch-size " + std::to_string(mb) + " --metrics " + q(m)));
    const auto lines = read_metrics(m);
    ASSERT_EQ(lines.size(), 1u);
    first.push_back(lines[0]);
  }
  const json& a = first[0];
  const json& b = first[1];
  EXPECT_EQ(a["step"], 1);
  EXPECT_EQ(a["tokens"], b["tokens"]);
  EXPECT_EQ(a["supervised_tokens"], b["supervised_tokens"]);
  const double la_ = a["loss"], lb = b["loss"], ga = a["grad_norm"], gb = b["grad_norm"];
  EXPECT_TRUE(std::isfinite(la_) && la_ > 0) << la_;
  EXPECT_GT(ga, 0.0);
  EXPECT_LE(relative_diff(la_, lb), 1e-5) << la_ << " vs " << lb;
  EXPECT_LE(relative_diff(ga, gb), 1e-5) << ga << " vs " << gb;
}

// ---- resume ------------------------------------------------------------------------------------

// 32 records, batch 8: 4 steps per epoch, so 6 steps cross an epoch boundary (a new shuffle).
TEST_F(Finetune, ResumeContinuesBitForBit) {
  const std::string data = write_short_records(dir, "d.json", 32);
  const std::string common = "--seed 3 --micro-batch-size 4 --lr 1e-2 --warmup-steps 2 ";
  const std::string a = dir.file("a.safetensors"), b = dir.file("b.safetensors"), c = dir.file("c.safetensors");

  run_ok(finetune_args(data, a, common + "--steps 6 --save-every 3 --metrics " + q(dir.file("ma.jsonl"))));
  run_ok(finetune_args(data, b, common + "--steps 3 --save-every 3 --metrics " + q(dir.file("mb.jsonl"))));
  EXPECT_EQ(la::load_checkpoint(b + ".ckpt").step, 3);
  run_ok(finetune_args(data, c,
                       common + "--resume " + q(b + ".ckpt") + " --steps 6 --metrics " + q(dir.file("mc.jsonl"))));

  EXPECT_EQ(la::load_checkpoint(a + ".ckpt").step, 6);
  EXPECT_TRUE(file_contents(c) == file_contents(a)) << "resumed adapter differs from the uninterrupted one";
  EXPECT_FALSE(file_contents(b) == file_contents(a)) << "steps 4-6 did not change the adapter";

  // The resumed run did steps 4..6 only, with the very same losses.
  const auto ma = read_metrics(dir.file("ma.jsonl")), mc = read_metrics(dir.file("mc.jsonl"));
  ASSERT_EQ(ma.size(), 6u);
  ASSERT_EQ(mc.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(mc[i]["step"], ma[i + 3]["step"]);
    EXPECT_EQ(mc[i]["loss"].get<double>(), ma[i + 3]["loss"].get<double>()) << "step " << i + 4;
    EXPECT_EQ(mc[i]["grad_norm"].get<double>(), ma[i + 3]["grad_norm"].get<double>()) << "step " << i + 4;
  }

  // A checkpoint made with another data order is refused, naming the checkpoint.
  const auto r = run_cli(finetune_args(data, dir.file("d.safetensors"),
                                       "--seed 4 --micro-batch-size 4 --steps 6 --resume " + q(b + ".ckpt")));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(last_line(r.err).find("error: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(b + ".ckpt"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir.file("d.safetensors")));
}

// Starts llama-adapter with `args` (no shell), stdout and stderr to files; returns the pid.
pid_t spawn_cli(const std::vector<std::string>& args, const std::string& log) {
  std::vector<std::string> argv_s{LA_CLI_PATH};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int in = ::open("/dev/null", O_RDONLY);
    const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in >= 0) ::dup2(in, 0);
    if (out >= 0) {
      ::dup2(out, 1);
      ::dup2(out, 2);
    }
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

// kill -9 in the middle of a run that checkpoints every step; the surviving checkpoint resumes
// to exactly the adapter of an uninterrupted run. If the run happens to finish before the kill,
// the comparison still holds (resuming a finished checkpoint does no step and writes its adapter).
TEST_F(Finetune, ResumeAfterKillNineIsBitForBit) {
  const std::string data = write_short_records(dir, "d.json", 64);  // 8 steps per epoch
  const int total = 24;
  const std::string ckpt = dir.file("k.ckpt"), killed_out = dir.file("k.safetensors");
  const std::vector<std::string> flags{"--model",
                                       shared(kStories),
                                       "--tokenizer",
                                       shared(kStoriesTok),
                                       "--max-seq-len",
                                       "128",
                                       "--adapter-len",
                                       "4",
                                       "--adapter-layers",
                                       "3",
                                       "--batch-size",
                                       "8",
                                       "--micro-batch-size",
                                       "4",
                                       "--seed",
                                       "9",
                                       "--lr",
                                       "1e-2",
                                       "--warmup-steps",
                                       "3",
                                       "--no-progress"};
  std::vector<std::string> args{"finetune"};
  args.insert(args.end(), flags.begin(), flags.end());
  for (const char* s :
       {"--data", data.c_str(), "--out", killed_out.c_str(), "--save-every", "1", "--checkpoint", ckpt.c_str()})
    args.emplace_back(s);
  args.emplace_back("--steps");
  args.emplace_back(std::to_string(total));

  const pid_t pid = spawn_cli(args, dir.file("k.log"));
  ASSERT_GT(pid, 0);
  bool killed = false, exited = false;
  int status = 0;
  int64_t seen_step = -1;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      exited = true;
      break;
    }
    if (fs::exists(ckpt)) {
      try {
        seen_step = la::load_checkpoint(ckpt).step;  // the file is replaced atomically: whole or absent
      } catch (const la::Error& e) {
        ADD_FAILURE() << "checkpoint unreadable while training: " << e.what();
      }
      if (seen_step >= 2) {
        ::kill(pid, SIGKILL);  // the child is at worst a zombie here (not reaped): the pid is still ours
        killed = true;
        break;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (!exited && !killed) ::kill(pid, SIGKILL);
  if (!exited) {
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  }
  ASSERT_TRUE(killed || exited) << "no checkpoint with step >= 2 within 120 s\n" << read_text(dir.file("k.log"));
  if (exited) {
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << read_text(dir.file("k.log"));
  }

  const la::TrainState st = la::load_checkpoint(ckpt);
  EXPECT_GE(st.step, 2);
  EXPECT_LE(st.step, total);
  std::printf("[ kill -9 ] %s at checkpoint step %lld of %d\n", killed ? "killed" : "finished before the kill",
              static_cast<long long>(st.step), total);
  // Killed mid-run (signal status), the final adapter was never written.
  if (killed && WIFSIGNALED(status) && st.step < total) {
    EXPECT_FALSE(fs::exists(killed_out));
  }

  std::string common;
  for (const auto& f : flags) common += " " + q(f);
  const std::string resumed = dir.file("r.safetensors"), straight = dir.file("u.safetensors");
  run_ok("finetune" + common + " --data " + q(data) + " --out " + q(resumed) + " --resume " + q(ckpt) + " --steps " +
         std::to_string(total));
  run_ok("finetune" + common + " --data " + q(data) + " --out " + q(straight) + " --steps " + std::to_string(total));
  EXPECT_TRUE(file_contents(resumed) == file_contents(straight)) << "resumed after kill -9 differs";
}

// ---- the adapter file ----------------------------------------------------------------------------

TEST(AdapterFile, RoundTripWithMetadataAndOfficialNames) {
  const la::ModelConfig c = small_config();
  TempDir dir;
  for (la::GateMode mode : {la::GateMode::Tanh, la::GateMode::Identity}) {
    la::Adapter a = la::Adapter::create(c, 3, 2, mode, 11);
    for (size_t i = 0; i < a.gate().size(); ++i) a.gate()[i] = 0.1f * static_cast<float>(i) - 0.3f;
    const std::string path = dir.file(std::string("a_") + la::gate_mode_name(mode) + ".safetensors");
    la::save_adapter(a, path);

    const la::Adapter b = la::load_adapter(path);
    EXPECT_EQ(b.len, 3);
    EXPECT_EQ(b.n_layers, 2);
    EXPECT_EQ(b.gate_mode, mode);
    EXPECT_EQ(b.dim, 16);
    EXPECT_EQ(b.n_heads, 4);
    EXPECT_EQ(b.model_layers, 4);
    ASSERT_EQ(b.query().size(), a.query().size());
    ASSERT_EQ(b.gate().size(), a.gate().size());
    EXPECT_EQ(std::memcmp(b.query().data(), a.query().data(), a.query().size() * sizeof(float)), 0);
    EXPECT_EQ(std::memcmp(b.gate().data(), a.gate().data(), a.gate().size() * sizeof(float)), 0);

    const la::SafetensorsFile f = la::SafetensorsFile::open(path);
    const std::map<std::string, std::string> want{{"format", "llama-adapter"},
                                                  {"version", "1"},
                                                  {"adapter_len", "3"},
                                                  {"adapter_layers", "2"},
                                                  {"gate_mode", la::gate_mode_name(mode)},
                                                  {"dim", "16"},
                                                  {"n_layers", "4"},
                                                  {"n_heads", "4"}};
    for (const auto& [k, v] : want) {
      auto it = f.metadata().find(k);
      ASSERT_NE(it, f.metadata().end()) << "metadata " << k << " missing";
      EXPECT_EQ(it->second, v) << k;
    }
    // Exactly the official names: adapter_query.weight [L*K, dim], a [H] gate for the top L layers.
    ASSERT_EQ(f.tensors().size(), 3u);
    const la::SafeTensor& qt = f.get("adapter_query.weight");
    EXPECT_EQ(qt.dtype, la::SafeDType::F32);
    EXPECT_EQ(qt.shape, (std::vector<int64_t>{6, 16}));
    for (int layer : {2, 3}) {
      const la::SafeTensor& g = f.get("layers." + std::to_string(layer) + ".attention.gate");
      EXPECT_EQ(g.dtype, la::SafeDType::F32);
      EXPECT_EQ(g.shape, (std::vector<int64_t>{4}));
      std::vector<float> v(4);
      std::memcpy(v.data(), g.data, sizeof(float) * 4);
      for (int h = 0; h < 4; ++h)
        EXPECT_EQ(v[static_cast<size_t>(h)], a.gate()[static_cast<size_t>((layer - 2) * 4 + h)]);
    }
    EXPECT_EQ(f.find("layers.1.attention.gate"), nullptr);
  }
}

// Converted official checkpoints carry a gate for every layer ([1] or [1, H, 1, 1]) and no
// metadata: K = 10, L = rows / K, the gates of the layers below the top L ignored.
TEST(AdapterFile, ReadsScalarAndFourDimensionalGates) {
  const la::ModelConfig c = small_config();
  TempDir dir;
  std::vector<float> query(2 * 10 * 16);
  la::fill_normal(query.data(), static_cast<int64_t>(query.size()), 5);

  la::SafetensorsWriter scalar;
  scalar.add_f32("adapter_query.weight", {20, 16}, query.data());
  const float g0 = 9.0f, g1 = 9.0f, g2 = 0.5f, g3 = -0.25f;
  scalar.add_f32("layers.0.attention.gate", {1}, &g0);  // below the top L = 2: ignored
  scalar.add_f32("layers.1.attention.gate", {1}, &g1);
  scalar.add_f32("layers.2.attention.gate", {1}, &g2);
  scalar.add_f32("layers.3.attention.gate", {1}, &g3);
  scalar.write(dir.file("scalar.safetensors"));
  const la::Adapter s = la::load_adapter(dir.file("scalar.safetensors"), &c);
  EXPECT_EQ(s.len, 10);
  EXPECT_EQ(s.n_layers, 2);
  EXPECT_EQ(s.n_heads, 4);
  EXPECT_EQ(s.model_layers, 4);
  EXPECT_EQ(s.gate_mode, la::GateMode::Identity);  // as the official inference code applies them
  EXPECT_EQ(to_vec(s.gate()), (std::vector<float>{0.5f, 0.5f, 0.5f, 0.5f, -0.25f, -0.25f, -0.25f, -0.25f}));
  EXPECT_EQ(to_vec(s.query()), query);
  EXPECT_NO_THROW(s.check_compatible(c, "scalar"));

  la::SafetensorsWriter four;
  four.add_f32("adapter_query.weight", {20, 16}, query.data());
  const float h2[4] = {1, 2, 3, 4}, h3[4] = {-1, -2, -3, -4};
  four.add_f32("layers.2.attention.gate", {1, 4, 1, 1}, h2);
  four.add_f32("layers.3.attention.gate", {1, 4, 1, 1}, h3);
  four.write(dir.file("four.safetensors"));
  const la::Adapter f = la::load_adapter(dir.file("four.safetensors"), &c);
  EXPECT_EQ(f.n_heads, 4);
  EXPECT_EQ(to_vec(f.gate()), (std::vector<float>{1, 2, 3, 4, -1, -2, -3, -4}));
  EXPECT_NO_THROW(f.check_compatible(c, "four"));

  // Numbers that do not fit: 25 rows are not whole layers of K = 10; 50 rows are 5 layers of a
  // 4-layer model; a missing gate for an adapted layer.
  auto write_bad = [&](const std::string& name, int64_t rows, std::vector<int> gate_layers) {
    std::vector<float> qv(static_cast<size_t>(rows * 16), 0.1f);
    la::SafetensorsWriter w;
    w.add_f32("adapter_query.weight", {rows, 16}, qv.data());
    for (int l : gate_layers) w.add_f32("layers." + std::to_string(l) + ".attention.gate", {1, 4, 1, 1}, h2);
    w.write(dir.file(name));
    return dir.file(name);
  };
  auto error_of = [&](const std::string& path) {
    try {
      la::load_adapter(path, &c);
    } catch (const la::Error& e) {
      return std::string(e.what());
    }
    return std::string("(loaded)");
  };
  EXPECT_NE(error_of(write_bad("rows.safetensors", 25, {0, 1, 2, 3})).find("not a multiple of the adapter length K=10"),
            std::string::npos);
  EXPECT_NE(error_of(write_bad("deep.safetensors", 50, {0, 1, 2, 3})).find("more than the model's 4 layers"),
            std::string::npos);
  EXPECT_NE(error_of(write_bad("gap.safetensors", 20, {0, 1, 3})).find("no gate for adapted layer 2"),
            std::string::npos);
}

TEST(AdapterFile, InfoCountsTheSevenBParameters) {
  const auto r = run_cli("info --shape 7b --adapter-len 10 --adapter-layers 30");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("adapter:      K=10 L=30: 1229760 trainable parameters"), std::string::npos) << r.out;
}

// An official-style file (no metadata, [1, H, 1, 1] gates) evaluates on the real model.
TEST_F(Finetune, EvalReadsAnOfficialStyleFile) {
  const std::string data = write_short_records(dir, "d.json", 8);
  std::vector<float> query(2 * 10 * 64);
  la::fill_normal(query.data(), static_cast<int64_t>(query.size()), 1);
  la::SafetensorsWriter w;
  w.add_f32("adapter_query.weight", {20, 64}, query.data());
  std::vector<float> g(8, 0.0f);
  for (int l = 0; l < 5; ++l) w.add_f32("layers." + std::to_string(l) + ".attention.gate", {1, 8, 1, 1}, g.data());
  w.write(dir.file("official.safetensors"));
  const std::string eval = "eval" + stories_args() + " --data " + q(data) + " --max-seq-len 128 --json";
  const auto with = run_ok(eval + " --adapter " + q(dir.file("official.safetensors")));
  const auto without = run_ok(eval);
  EXPECT_EQ(with.out, without.out);  // zero gates: exactly the base model
  EXPECT_TRUE(with.out.starts_with("{\"loss\":")) << with.out;
}

// A stories260K adapter (dim 64, 5 layers, 8 heads) on aidreams260K (dim 64, 4 layers, 4 heads):
// one line naming both shapes, exit 1, for eval and for generate.
TEST_F(Finetune, WrongModelIsAClearErrorNamingBothShapes) {
  REQUIRE_SHARED_DATA(kAidreams);
  REQUIRE_SHARED_DATA(kAidreamsTok);
  const std::string data = write_short_records(dir, "d.json", 8);
  const auto stories = la::load_model(shared(kStories));
  const auto aidreams = la::load_model(shared(kAidreams));
  const la::Adapter a = la::Adapter::create(stories->config, 4, 3, la::GateMode::Tanh, 1);
  const std::string path = dir.file("stories_adapter.safetensors");
  la::save_adapter(a, path);
  const std::string model =
      " --model " + q(shared(kAidreams)) + " --tokenizer " + q(shared(kAidreamsTok)) + " --adapter " + q(path);
  for (const std::string& args :
       {"eval" + model + " --data " + q(data) + " --max-seq-len 128 --json",
        "generate" + model + " --instruction 'Say hi.' --temperature 0 --max-new-tokens 8 -q"}) {
    SCOPED_TRACE(args);
    const auto r = run_cli(args);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_TRUE(r.err.starts_with("error: ")) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(path), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(a.shape_string()), std::string::npos) << "adapter shape missing: " << r.err;
    EXPECT_NE(r.err.find(aidreams->config.shape_string()), std::string::npos) << "model shape missing: " << r.err;
    EXPECT_NE(r.err.find("dim=64"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("layers=5"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("layers=4"), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
  }
}

// --gate-mode identity trains, the file says so, and eval/generate take K, L and the gate mode
// from the file (no flags needed; an explicit override changes the result).
TEST_F(Finetune, GateModeAndShapeComeFromTheFile) {
  const std::string data = write_short_records(dir, "d.json", 32);
  const std::string out = dir.file("id.safetensors");
  run_ok(finetune_args(data, out, "--gate-mode identity --steps 4 --lr 5e-2 --warmup-steps 0 --schedule constant",
                       "--adapter-len 5 --adapter-layers 2"));
  const la::SafetensorsFile f = la::SafetensorsFile::open(out);
  EXPECT_EQ(f.metadata().at("gate_mode"), "identity");
  EXPECT_EQ(f.metadata().at("adapter_len"), "5");
  EXPECT_EQ(f.metadata().at("adapter_layers"), "2");
  const la::Adapter a = la::load_adapter(out);
  EXPECT_EQ(a.gate_mode, la::GateMode::Identity);
  EXPECT_EQ(a.len, 5);
  EXPECT_EQ(a.n_layers, 2);
  EXPECT_TRUE(any_nonzero(a.gate())) << "the gates did not train";
  EXPECT_TRUE(all_finite(a.query()) && all_finite(a.gate()));

  const std::string eval =
      "eval" + stories_args() + " --data " + q(data) + " --max-seq-len 128 --json --adapter " + q(out);
  const auto from_file = run_ok(eval);
  const auto as_identity = run_ok(eval + " --gate-mode identity");
  const auto as_tanh = run_ok(eval + " --gate-mode tanh");
  EXPECT_EQ(from_file.out, as_identity.out);
  const double loss_identity = json::parse(from_file.out)["loss"], loss_tanh = json::parse(as_tanh.out)["loss"];
  EXPECT_GT(relative_diff(loss_identity, loss_tanh), 1e-5)
      << "tanh(g) and g give the same loss: gates too small to tell (" << loss_identity << ")";

  // The CLI's number is the library's evaluation of the file's adapter (K=5, L=2, identity). Not
  // bit for bit: the CLI picks its OpenBLAS kernels at start-up (ensure_openblas_coretype), this
  // process does not.
  const auto w = la::load_model(shared(kStories));
  const auto tok = la::load_tokenizer(shared(kStoriesTok));
  const la::EvalResult lib = la::evaluate_dataset(*w, la::tokenize_alpaca(la::load_alpaca(data), *tok, 128), &a, 8);
  const json j = json::parse(from_file.out);
  EXPECT_LE(relative_diff(j["loss"].get<double>(), lib.loss), 1e-6) << j["loss"] << " vs " << lib.loss;
  std::printf("[ gate mode ] eval loss identity (from the file) %.7f, library %.7f, forced tanh %.7f\n",
              j["loss"].get<double>(), lib.loss, loss_tanh);
  EXPECT_EQ(j["tokens"].get<int64_t>(), lib.tokens);

  const std::string gen = "generate" + stories_args() + " --adapter " + q(out) +
                          " --instruction 'Tell me a story about a cat.' --temperature 0 --max-new-tokens 40 -q";
  const auto g_file = run_ok(gen);
  const auto g_identity = run_ok(gen + " --gate-mode identity");
  EXPECT_EQ(g_file.out, g_identity.out);
  EXPECT_GT(g_file.out.size(), 1u);
}

// ---- zero-init through the CLI ---------------------------------------------------------------------

// --steps 0 writes the initial adapter: random prompts, gates 0. Evaluating or generating with it
// is exactly the base model; the same prompts with non-zero gates are not.
TEST_F(Finetune, ZeroInitAdapterIsExactlyTheBaseModel) {
  const std::string data = write_short_records(dir, "d.json", 16);
  const std::string zero = dir.file("zero.safetensors");
  run_ok(finetune_args(data, zero, "--steps 0 --seed 2"));
  ASSERT_TRUE(fs::exists(zero));
  la::Adapter a = la::load_adapter(zero);
  EXPECT_EQ(a.len, 4);
  EXPECT_EQ(a.n_layers, 3);
  EXPECT_FALSE(any_nonzero(a.gate()));
  EXPECT_TRUE(any_nonzero(a.query()));

  const std::string eval = "eval" + stories_args() + " --data " + q(data) + " --max-seq-len 128 --json";
  const auto base = run_ok(eval);
  const auto with = run_ok(eval + " --adapter " + q(zero));
  EXPECT_EQ(with.out, base.out);
  EXPECT_TRUE(base.out.starts_with("{\"loss\":")) << base.out;

  const std::string gen = "generate" + stories_args() +
                          " --instruction 'Tell me a story about a dog.' --temperature 0 --max-new-tokens 40 -q";
  const auto g_base = run_ok(gen);
  const auto g_with = run_ok(gen + " --adapter " + q(zero));
  EXPECT_EQ(g_with.out, g_base.out);
  EXPECT_GT(g_base.out.size(), 1u);

  // Control: the eval path does apply the adapter once a gate is open.
  for (float& g : a.gate()) g = 0.5f;
  la::save_adapter(a, dir.file("open.safetensors"));
  const auto open = run_ok(eval + " --adapter " + q(dir.file("open.safetensors")));
  EXPECT_NE(open.out, base.out);
}

// ---- generate with a trained adapter -----------------------------------------------------------------

TEST_F(Finetune, TrainedAdapterChangesGreedyGeneration) {
  const std::string data = write_short_records(dir, "d.json", 32);
  const std::string out = dir.file("t.safetensors");
  run_ok(finetune_args(data, out, "--steps 8 --lr 5e-2 --warmup-steps 0 --schedule constant --seed 1"));
  const la::Adapter a = la::load_adapter(out);
  EXPECT_TRUE(any_nonzero(a.gate()));
  const std::string gen =
      "generate" + stories_args() +
      " --instruction 'Give three tips for staying healthy.' --temperature 0 --max-new-tokens 48 -q";
  const auto with = run_ok(gen + " --adapter " + q(out));
  const auto without = run_ok(gen);
  EXPECT_GT(with.out.size(), 1u) << "no text generated";
  EXPECT_TRUE(with.err.empty()) << with.err;
  EXPECT_NE(with.out, without.out) << "the trained adapter did not change the greedy text:\n" << with.out;
}

// ---- bad input -----------------------------------------------------------------------------------

// exit 1, the last line of stderr "error: ..." naming `path` (with `only_line`, the only line:
// nothing was loaded before), --out not created.
void expect_clean_failure(const std::string& args, const std::string& path, const std::string& out,
                          bool only_line = true) {
  SCOPED_TRACE(args);
  const auto r = run_cli(args);
  const std::string err = last_line(r.err);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(err.starts_with("error: ")) << r.err;
  EXPECT_TRUE(r.err.ends_with("\n")) << r.err;
  if (only_line) {
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  EXPECT_NE(err.find(path), std::string::npos) << "message does not name " << path << ": " << r.err;
  EXPECT_FALSE(fs::exists(out)) << "--out was created by a failed run";
}

TEST_F(Finetune, BadDataFailsCleanly) {
  const std::string good = write_short_records(dir, "good.json", 16);
  const std::vector<std::pair<std::string, std::string>> cases{
      {"empty.json", ""},
      {"empty_array.json", "[]"},
      {"no_instruction.json", R"([{"input": "", "output": "Hello."}])"},
      {"no_output.json", R"([{"instruction": "Say hello.", "input": ""}])"},
      {"no_output.jsonl", "{\"instruction\": \"a\", \"output\": \"b\"}\n{\"instruction\": \"Say hello.\"}\n"},
      {"bad_utf8.json", "[{\"instruction\": \"Say \xff\xfe hello.\", \"input\": \"\", \"output\": \"Hi.\"}]"},
      {"not_json.json", "this is not JSON at all\n"},
      {"truncated.json", R"([{"instruction": "Say hello.", "input": "", "output": "Hi)"},
  };
  for (const auto& [name, content] : cases) {
    const std::string path = dir.file(name);
    write_text(path, content);
    const std::string out = dir.file("out_" + name + ".safetensors");
    expect_clean_failure(finetune_args(path, out, "--steps 1"), path, out);
    // The same file as held-out data is checked before any training too.
    expect_clean_failure(finetune_args(good, out, "--steps 1 --val-data " + q(path)), path, out, false);
  }
  const auto missing = dir.file("does_not_exist.json");
  expect_clean_failure(finetune_args(missing, dir.file("m.safetensors"), "--steps 1"), missing,
                       dir.file("m.safetensors"));
}

TEST_F(Finetune, FailedRunDoesNotClobberAnExistingOutput) {
  const std::string bad = dir.file("bad.json");
  write_text(bad, "[]");
  const std::string out = dir.file("existing.safetensors");
  write_text(out, "sentinel: an adapter the user already has");
  const auto r = run_cli(finetune_args(bad, out, "--steps 1"));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(read_text(out), "sentinel: an adapter the user already has");
}

TEST_F(Finetune, MaxSeqLenBeyondTheContextIsAnError) {
  const std::string data = write_short_records(dir, "d.json", 16);
  const auto w = la::load_model(shared(kStories));
  const std::string too_long = std::to_string(w->config.max_seq_len + 1);
  const std::string out = dir.file("o.safetensors");
  const auto r = run_cli("finetune" + stories_args() + " --data " + q(data) + " --out " + q(out) +
                         " --steps 1 --batch-size 8 --max-seq-len " + too_long);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(r.err.starts_with("error: ")) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(too_long), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(std::to_string(w->config.max_seq_len)), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));

  const auto e = run_cli("eval" + stories_args() + " --data " + q(data) + " --max-seq-len " + too_long);
  EXPECT_EQ(e.exit_code, 1) << e.err;
  EXPECT_TRUE(e.err.starts_with("error: ")) << e.err;
  EXPECT_NE(e.err.find(too_long), std::string::npos) << e.err;
}

// aidreams260K's context is 128: the default --max-seq-len (512) shrinks to it instead of
// failing; only an explicit value beyond the context is an error.
TEST_F(Finetune, DefaultMaxSeqLenFitsASmallContext) {
  REQUIRE_SHARED_DATA(kAidreams);
  REQUIRE_SHARED_DATA(kAidreamsTok);
  const std::string data = write_short_records(dir, "d.json", 16);
  const std::string model = " --model " + q(shared(kAidreams)) + " --tokenizer " + q(shared(kAidreamsTok));
  const auto e = run_ok("eval" + model + " --data " + q(data) + " --json");
  EXPECT_TRUE(e.out.starts_with("{\"loss\":")) << e.out;
  const std::string out = dir.file("a.safetensors");
  run_ok("finetune" + model + " --data " + q(data) + " --out " + q(out) +
         " --adapter-len 2 --adapter-layers 2 --batch-size 8 --steps 1 --no-progress");
  EXPECT_TRUE(fs::exists(out));
  const auto r = run_cli("eval" + model + " --data " + q(data) + " --max-seq-len 129");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("128"), std::string::npos) << r.err;
}

// A learning rate of 1e30 blows the adapter up: step 1 is fine and checkpointed, a later step
// turns the weights (and so the loss) into NaN/inf. The run stops with exit 1 and a message
// naming NaN and the last good checkpoint, which still loads with finite weights; the existing
// --out is untouched.
TEST_F(Finetune, NanLossStopsAndKeepsTheLastGoodCheckpoint) {
  const std::string data = write_short_records(dir, "d.json", 32);
  const std::string out = dir.file("out.safetensors"), ckpt = dir.file("good.ckpt"), m = dir.file("m.jsonl");
  write_text(out, "sentinel");
  const auto r = run_cli(finetune_args(data, out,
                                       "--steps 12 --save-every 1 --lr 1e30 --warmup-steps 0 --schedule constant "
                                       "--checkpoint " +
                                           q(ckpt) + " --metrics " + q(m)));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  const std::string err = last_line(r.err);
  EXPECT_TRUE(err.starts_with("error: ")) << r.err;
  std::string without_paths = err;
  if (auto p = without_paths.find(ckpt); p != std::string::npos) without_paths.erase(p, ckpt.size());
  EXPECT_NE(lower(without_paths).find("nan"), std::string::npos) << "message does not mention NaN: " << err;
  EXPECT_NE(err.find(ckpt), std::string::npos) << "message does not name the checkpoint: " << err;
  EXPECT_EQ(read_text(out), "sentinel");

  const auto lines = read_metrics(m);  // the good steps
  ASSERT_GE(lines.size(), 1u);
  for (const auto& l : lines) EXPECT_TRUE(std::isfinite(l["loss"].get<double>())) << l.dump();
  const la::TrainState st = la::load_checkpoint(ckpt);
  EXPECT_GE(st.step, 1);
  EXPECT_EQ(st.step, static_cast<int64_t>(lines.size())) << "the checkpoint is not the last good step";
  EXPECT_TRUE(all_finite(st.adapter.query()) && all_finite(st.adapter.gate()));
  EXPECT_TRUE(all_finite(st.moments.m) && all_finite(st.moments.v));
}

// NaN in the starting weights: the very first loss is NaN, nothing is written.
TEST_F(Finetune, NanInitAdapterFailsWithoutWriting) {
  const std::string data = write_short_records(dir, "d.json", 16);
  const auto w = la::load_model(shared(kStories));
  la::Adapter a = la::Adapter::create(w->config, 4, 3, la::GateMode::Tanh, 1);
  a.query()[7] = std::numeric_limits<float>::quiet_NaN();
  const std::string init = dir.file("init.safetensors"), out = dir.file("out.safetensors");
  la::save_adapter(a, init);
  const auto r = run_cli(finetune_args(data, out, "--steps 2 --save-every 1 --init-adapter " + q(init)));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  const std::string err = last_line(r.err);
  EXPECT_TRUE(err.starts_with("error: ")) << r.err;
  EXPECT_NE(lower(err).find("nan"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out + ".ckpt"));
}

}  // namespace
