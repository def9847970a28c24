// Data-parallel fine-tuning over Open MPI (SPEC §11), with the real mpirun:
//  - the adapter after a few steps is the same bytes for 1, 2 and 3 ranks and without mpirun, and
//    so is a fully fine-tuned model;
//  - eval and scienceqa eval give the same numbers over any number of ranks;
//  - a checkpoint written by 2 ranks resumes under 3 to the bytes of an uninterrupted run;
//  - ranks started with other flags are refused at the start, nothing written;
//  - a rank killed in the middle of the run ends the job, naming it, nothing half-written;
//  - two ranks in network namespaces of their own, joined by a veth pair, train over Open MPI's
//    TCP transport to the same bytes (needs root for `ip netns`; skipped otherwise).
// Skipped when this build has no MPI or mpirun is missing.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "la/dist/comm.h"
#include "support/test_support.h"

namespace {

using la::test::CommandResult;
using la::test::read_text;
using la::test::run_shell;
using la::test::shared_path;
using la::test::shell_quote;
using la::test::TempDir;
using la::test::write_text;

constexpr const char* kModel = "llama2c/stories260K.bin";
constexpr const char* kTok = "llama2c/tok512.model";
constexpr const char* kAlpaca = "alpaca/alpaca_data_1k_subset.json";

// Runs a shell command line, stdout and stderr together in `out`.
CommandResult sh(const std::string& cmd) {
  return run_shell("(exec 2>&1; " + cmd + ")");
}

// mpirun as root needs its consent; one OpenMP thread per rank, as the bit-identity is stated
// for the same threads per rank.
const std::string kEnv =
    "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OMPI_MCA_btl=self,vader,tcp";

std::string mpirun(int n) {
  return kEnv + " mpirun --oversubscribe -np " + std::to_string(n) + " ";
}

std::string cli() {
  return shell_quote(LA_CLI_PATH);
}

class Mpi : public testing::Test {
 protected:
  void SetUp() override {
    if (!la::built_with_mpi()) GTEST_SKIP() << "this build has no MPI (install libopenmpi-dev and rebuild)";
    if (sh("command -v mpirun").exit_code != 0) GTEST_SKIP() << "mpirun not found (Debian: openmpi-bin)";
    REQUIRE_SHARED_DATA(kModel);
    REQUIRE_SHARED_DATA(kTok);
    REQUIRE_SHARED_DATA(kAlpaca);
    const nlohmann::json all = nlohmann::json::parse(read_text(shared_path(kAlpaca)));
    nlohmann::json some = nlohmann::json::array();
    for (size_t i = 0; i < 40; ++i) some.push_back(all[i]);
    write_text(dir_.file("train.json"), some.dump());
  }
  // finetune with micro-batches of 2 out of batches of 8: four micro-batches per step to deal.
  std::string finetune(const std::string& out, int steps, const std::string& more = "") const {
    return cli() + " finetune --model " + shell_quote(shared_path(kModel)) + " --tokenizer " +
           shell_quote(shared_path(kTok)) + " --data " + shell_quote(dir_.file("train.json")) +
           " --batch-size 8 --micro-batch-size 2 --max-seq-len 160 --lr 1e-2 --warmup-steps 1 --threads 1"
           " --no-progress --steps " +
           std::to_string(steps) + " --out " + shell_quote(out) + (more.empty() ? "" : " " + more);
  }
  std::string bytes(const std::string& name) const { return read_text(dir_.file(name)); }
  TempDir dir_;
};

TEST_F(Mpi, AdapterIsBitIdenticalForAnyNumberOfRanks) {
  const CommandResult plain = sh(kEnv + " " + finetune(dir_.file("plain.safetensors"), 3));
  ASSERT_EQ(plain.exit_code, 0) << plain.out;
  for (int n : {1, 2, 3}) {
    const std::string out = dir_.file("np" + std::to_string(n) + ".safetensors");
    const CommandResult r = sh(mpirun(n) + finetune(out, 3, "--metrics " + shell_quote(out + ".jsonl")));
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(read_text(out), bytes("plain.safetensors")) << n << " ranks";
    // Rank 0 alone reports and writes: one "saved" line, one metrics line per step.
    size_t saved = 0;
    for (size_t p = r.out.find("saved "); p != std::string::npos; p = r.out.find("saved ", p + 1)) ++saved;
    EXPECT_EQ(saved, 1u) << r.out;
    const std::string metrics = read_text(out + ".jsonl");
    EXPECT_EQ(std::count(metrics.begin(), metrics.end(), '\n'), 3) << metrics;
    if (n > 1) {
      EXPECT_NE(r.out.find("data-parallel over " + std::to_string(n) + " ranks"), std::string::npos) << r.out;
    }
  }
}

TEST_F(Mpi, FullFineTuningIsBitIdenticalToo) {
  const CommandResult plain = sh(kEnv + " " + finetune(dir_.file("full.bin"), 2, "--full"));
  ASSERT_EQ(plain.exit_code, 0) << plain.out;
  const CommandResult two = sh(mpirun(2) + finetune(dir_.file("full2.bin"), 2, "--full"));
  ASSERT_EQ(two.exit_code, 0) << two.out;
  EXPECT_EQ(bytes("full2.bin"), bytes("full.bin"));
}

TEST_F(Mpi, EvalIsTheSameOverAnyNumberOfRanks) {
  const std::string eval = cli() + " eval --model " + shell_quote(shared_path(kModel)) + " --tokenizer " +
                           shell_quote(shared_path(kTok)) + " --data " + shell_quote(dir_.file("train.json")) +
                           " --micro-batch-size 3 --max-seq-len 160 --threads 1 --json";
  const CommandResult one = sh(kEnv + " " + eval);
  ASSERT_EQ(one.exit_code, 0) << one.out;
  const CommandResult three = sh(mpirun(3) + eval);
  ASSERT_EQ(three.exit_code, 0) << three.out;
  EXPECT_EQ(three.out, one.out);  // rank 0 alone prints, the same digits
}

TEST_F(Mpi, ScienceQAEvalIsTheSameOverAnyNumberOfRanks) {
  REQUIRE_SHARED_DATA("scienceqa/problems_small150.json");
  REQUIRE_SHARED_DATA("scienceqa/pid_splits_small150.json");
  auto eval = [&](const std::string& out) {
    return cli() + " scienceqa eval --model " + shell_quote(shared_path(kModel)) + " --tokenizer " +
           shell_quote(shared_path(kTok)) + " --problems " +
           shell_quote(shared_path("scienceqa/problems_small150.json")) + " --splits " +
           shell_quote(shared_path("scienceqa/pid_splits_small150.json")) +
           " --split test --max-new-tokens 6 --invalid random --threads 1 --json --out " + shell_quote(out);
  };
  const CommandResult one = sh(kEnv + " " + eval(dir_.file("one.json")));
  ASSERT_EQ(one.exit_code, 0) << one.out;
  const CommandResult three = sh(mpirun(3) + eval(dir_.file("three.json")));
  ASSERT_EQ(three.exit_code, 0) << three.out;
  EXPECT_EQ(bytes("three.json"), bytes("one.json"));  // every prediction, in problem order
  const std::string scores = one.out.substr(one.out.rfind("{\"Avg\""));
  EXPECT_NE(three.out.find(scores), std::string::npos) << three.out;
}

TEST_F(Mpi, CheckpointFromTwoRanksResumesUnderThree) {
  const CommandResult whole = sh(kEnv + " " + finetune(dir_.file("whole.safetensors"), 4));
  ASSERT_EQ(whole.exit_code, 0) << whole.out;
  const std::string ckpt = dir_.file("half.ckpt");
  const CommandResult first =
      sh(mpirun(2) + finetune(dir_.file("half.safetensors"), 2, "--save-every 2 --checkpoint " + shell_quote(ckpt)));
  ASSERT_EQ(first.exit_code, 0) << first.out;
  const CommandResult rest =
      sh(mpirun(3) + finetune(dir_.file("resumed.safetensors"), 4, "--resume " + shell_quote(ckpt)));
  ASSERT_EQ(rest.exit_code, 0) << rest.out;
  EXPECT_EQ(bytes("resumed.safetensors"), bytes("whole.safetensors"));
}

TEST_F(Mpi, RanksWithOtherFlagsAreRefused) {
  const std::string out = dir_.file("never.safetensors");
  const CommandResult r =
      sh(kEnv + " mpirun --oversubscribe -np 1 " + finetune(out, 2) + " : -np 1 " + finetune(out, 2, "--seed 7"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("ranks 1 have other model, data, flags or starting weights than rank 0"), std::string::npos)
      << r.out;
  EXPECT_FALSE(std::filesystem::exists(out));
}

TEST_F(Mpi, KilledRankEndsTheJobAndNothingIsHalfWritten) {
  const std::string out = dir_.file("killed.safetensors"), metrics = dir_.file("killed.jsonl");
  const std::string pid_file = dir_.file("mpirun.pid"), log = dir_.file("mpirun.log");
  // Many steps, so that the job is still running when rank 1 is killed.
  const std::string cmd = mpirun(2) + finetune(out, 100000, "--metrics " + shell_quote(metrics) + " --save-every 3");
  ASSERT_EQ(std::system(("(" + cmd + " >" + log + " 2>&1 & echo $! >" + pid_file + ")").c_str()), 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  auto steps_done = [&] {
    const std::string m = std::filesystem::exists(metrics) ? read_text(metrics) : "";
    return std::count(m.begin(), m.end(), '\n');
  };
  while (steps_done() < 2 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_GE(steps_done(), 2) << read_text(log);
  // Rank 1: the child of mpirun whose environment says OMPI_COMM_WORLD_RANK=1.
  const std::string mpirun_pid = read_text(pid_file).substr(0, read_text(pid_file).find('\n'));
  const CommandResult kill =
      sh("for p in $(pgrep -P " + mpirun_pid +
         "); do if tr '\\0' '\\n' </proc/$p/environ | grep -qx OMPI_COMM_WORLD_RANK=1; then kill -9 $p; "
         "echo killed $p; fi; done");
  ASSERT_NE(kill.out.find("killed"), std::string::npos) << kill.out;
  // mpirun notices, ends rank 0 and exits non-zero naming the rank.
  const CommandResult wait = sh("while kill -0 " + mpirun_pid + " 2>/dev/null; do sleep 0.1; done");
  EXPECT_EQ(wait.exit_code, 0);
  const std::string said = read_text(log);
  EXPECT_NE(said.find("rank 1"), std::string::npos) << said;
  EXPECT_FALSE(std::filesystem::exists(out)) << "the final adapter of an unfinished run was written";
  // Whatever was written is whole: no temporary files left, the checkpoint (if any) loads.
  for (const auto& e : std::filesystem::directory_iterator(dir_.path()))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
}

// Two network namespaces of the test's own, joined by a veth pair (10.231.x.1 and .2 inside them
// only); removed again at the end.
class NetnsPair {
 public:
  NetnsPair() {
    const std::string id = std::to_string(getpid() % 100000);
    a_ = "la_mpi_a" + id;
    b_ = "la_mpi_b" + id;
    va_ = "la_va" + id;
    vb_ = "la_vb" + id;
    const std::string net = "10.231." + std::to_string(getpid() % 250) + ".";
    ip_a_ = net + "1";
    ip_b_ = net + "2";
    subnet_ = net + "0/24";
    const CommandResult r =
        sh("ip netns add " + a_ + " && ip netns add " + b_ + " && ip link add " + va_ + " type veth peer name " + vb_ +
           " && ip link set " + va_ + " netns " + a_ + " && ip link set " + vb_ + " netns " + b_ + " && ip -n " + a_ +
           " addr add " + ip_a_ + "/24 dev " + va_ + " && ip -n " + b_ + " addr add " + ip_b_ + "/24 dev " + vb_ +
           " && ip -n " + a_ + " link set " + va_ + " up && ip -n " + b_ + " link set " + vb_ + " up && ip -n " + a_ +
           " link set lo up && ip -n " + b_ + " link set lo up");
    ok_ = r.exit_code == 0;
    error_ = r.out;
  }
  ~NetnsPair() { sh("ip netns del " + a_ + "; ip netns del " + b_); }
  bool ok() const { return ok_; }
  std::string a_, b_, va_, vb_, ip_a_, ip_b_, subnet_, error_;

 private:
  bool ok_ = false;
};

TEST_F(Mpi, TwoNetworkNamespacesOverTcp) {
  if (geteuid() != 0) GTEST_SKIP() << "network namespaces need root";
  if (sh("command -v ip").exit_code != 0) GTEST_SKIP() << "ip (iproute2) not found";
  NetnsPair ns;
  if (!ns.ok()) GTEST_SKIP() << "cannot make network namespaces here: " << ns.error_;
  // Open MPI starts a rank on another host through an rsh-like agent: here one that enters the
  // namespace holding that address, and notes where it went.
  const std::string agent = dir_.file("netns-agent.sh"), seen = dir_.file("agent.log");
  write_text(agent, "#!/bin/sh\nhost=\"$1\"; shift\ncase \"$host\" in\n  " + ns.ip_a_ + ") ns=" + ns.a_ + " ;;\n  " +
                        ns.ip_b_ + ") ns=" + ns.b_ + " ;;\n  *) echo \"unknown host $host\" >&2; exit 1 ;;\nesac\n" +
                        "echo \"$ns\" >>" + shell_quote(seen) + "\nexec ip netns exec \"$ns\" sh -c \"$*\"\n");
  ASSERT_EQ(sh("chmod +x " + shell_quote(agent)).exit_code, 0);
  const CommandResult plain = sh(kEnv + " " + finetune(dir_.file("plain.safetensors"), 3));
  ASSERT_EQ(plain.exit_code, 0) << plain.out;
  // Only TCP between the ranks (no shared memory), and only over the veth pair.
  const std::string out = dir_.file("tcp.safetensors");
  const CommandResult r =
      sh(kEnv + " ip netns exec " + ns.a_ + " mpirun -np 2 --host " + ns.ip_a_ + ":1," + ns.ip_b_ +
         ":1 --mca plm_rsh_agent " + shell_quote(agent) + " --mca btl self,tcp --mca btl_tcp_if_include " + ns.subnet_ +
         " --mca oob_tcp_if_include " + ns.subnet_ + " -x OMP_NUM_THREADS " + finetune(out, 3));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(read_text(seen), ns.b_ + "\n") << "the second rank was not started in the other namespace";
  EXPECT_EQ(read_text(out), bytes("plain.safetensors"));
}

}  // namespace
