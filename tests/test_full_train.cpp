// Full-parameter training from the command line (SPEC §12): `finetune --full` and `pretrain`
// write whole models (.bin and .gguf) that the other commands load, the loss falls, and their
// bad input is refused in one line. Small random models and synthetic data: no shared data.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "la/data/alpaca.h"
#include "la/data/synthetic.h"
#include "la/io/shapes.h"
#include "la/tokenizer/bpe_trainer.h"
#include "support/test_support.h"

namespace la {
namespace {

using test::run_cli;
using test::TempDir;
using test::write_text;

std::string q(const std::string& s) {
  return test::shell_quote(s);
}

struct Materials {
  std::string dir, data, tok, model, corpus;
};

void build_materials(const std::string& dir) {
  auto file = [&](const char* n) { return dir + "/" + n; };
  const auto records = synthetic_instructions(64, 11);
  write_alpaca_json(records, file("data.json"));
  std::vector<std::string> texts;
  std::string corpus;
  for (const auto& r : records) {
    texts.push_back(alpaca_prompt(r.instruction, r.input));
    texts.push_back(r.output);
    corpus += r.instruction + "\n" + r.output + "\n\n";
  }
  write_text(file("corpus.txt"), corpus);
  const BpeVocab vocab = train_bpe_vocab(texts, 400);
  const std::string tb = serialize_llama2c_vocab(vocab);
  write_file_atomic(file("tok.bin"), tb.data(), tb.size());
  ModelConfig c;
  c.dim = 32;
  c.hidden_dim = 64;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = static_cast<int64_t>(vocab.pieces.size());
  c.max_seq_len = 256;
  c.tied_classifier = false;
  save_llama2c(*random_model(c, 5), file("model.bin"));
}

const Materials& materials() {
  static Materials m = [] {
    Materials x;
    x.dir = test::shared_fixture_dir("materials", build_materials);
    x.data = x.dir + "/data.json";
    x.tok = x.dir + "/tok.bin";
    x.model = x.dir + "/model.bin";
    x.corpus = x.dir + "/corpus.txt";
    return x;
  }();
  return m;
}

double eval_loss(const std::string& model, const std::string& tok_flag, const std::string& data) {
  const auto r = run_cli("eval --model " + q(model) + tok_flag + " --data " + q(data) + " --json --threads 1");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  if (r.exit_code != 0) return NAN;
  return nlohmann::json::parse(r.out)["loss"].get<double>();
}

std::vector<double> metric_losses(const std::string& path) {
  std::vector<double> v;
  std::istringstream in(test::read_text(path));
  for (std::string line; std::getline(in, line);) v.push_back(nlohmann::json::parse(line)["loss"].get<double>());
  return v;
}

TEST(FullFinetune, WritesAModelEveryCommandLoads) {
  const Materials& m = materials();
  TempDir d;
  const std::string common = "finetune --full --model " + q(m.model) + " --tokenizer " + q(m.tok) + " --data " +
                             q(m.data) +
                             " --batch-size 8 --micro-batch-size 4 --epochs 3 --lr 3e-3 --warmup-steps 2"
                             " --threads 1 --no-progress --metrics ";
  auto r = run_cli(common + q(d.file("m.jsonl")) + " --out " + q(d.file("full.bin")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("full model"), std::string::npos) << r.err;
  const auto losses = metric_losses(d.file("m.jsonl"));
  ASSERT_EQ(losses.size(), 24u);
  EXPECT_LT(losses.back(), losses.front() - 1.0) << "the loss did not fall";
  // The same run written as GGUF (tokenizer embedded): the same weights, the same loss.
  r = run_cli(common + q(d.file("m2.jsonl")) + " --out " + q(d.file("full.gguf")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string tok = " --tokenizer " + q(m.tok);
  const double base = eval_loss(m.model, tok, m.data);
  const double bin = eval_loss(d.file("full.bin"), tok, m.data);
  const double gguf = eval_loss(d.file("full.gguf"), "", m.data);
  EXPECT_LT(bin, base - 1.0);
  EXPECT_EQ(bin, gguf);
  r = run_cli("generate --model " + q(d.file("full.gguf")) + " --prompt 'Reverse' --max-new-tokens 8 --temperature 0");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = run_cli("info --model " + q(d.file("full.bin")));
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(FullFinetune, RefusesWhatDoesNotApply) {
  const Materials& m = materials();
  TempDir d;
  const std::string base = "finetune --model " + q(m.model) + " --tokenizer " + q(m.tok) + " --data " + q(m.data);
  auto r = run_cli(base + " --full --out " + q(d.file("a.safetensors")));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(".gguf or .bin"), std::string::npos) << r.err;
  r = run_cli(base + " --out " + q(d.file("a.bin")));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--full"), std::string::npos) << r.err;
  // An adapter's checkpoint cannot resume a full run, nor the other way round.
  r = run_cli(base + " --batch-size 8 --steps 1 --save-every 1 --adapter-len 2 --adapter-layers 1 --out " +
              q(d.file("a.safetensors")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_cli(base + " --full --batch-size 8 --steps 2 --out " + q(d.file("f.bin")) + " --resume " +
              q(d.file("a.safetensors.ckpt")));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("adapter's training checkpoint"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(d.file("f.bin")));
}

TEST(Pretrain, LearnsACorpusWithALearnedTokenizer) {
  const Materials& m = materials();
  TempDir d;
  const std::string args = "pretrain --data " + q(m.corpus) +
                           " --vocab-size 320 --dim 32 --layers 2 --heads 4 --seq-len 64 --tied --batch-size 8"
                           " --micro-batch-size 4 --epochs 50 --lr 3e-3 --warmup-steps 5 --threads 1 --no-progress";
  auto r = run_cli(args + " --steps 60 --metrics " + q(d.file("m.jsonl")) + " --out " + q(d.file("p.gguf")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto losses = metric_losses(d.file("m.jsonl"));
  ASSERT_EQ(losses.size(), 60u);
  EXPECT_NEAR(losses.front(), std::log(320.0), 0.5) << "a fresh model predicts ~uniformly";
  EXPECT_LT(losses.back(), losses.front() - 2.0) << "the loss did not fall";
  r = run_cli("info --model " + q(d.file("p.gguf")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_cli("generate --model " + q(d.file("p.gguf")) + " --prompt 'Reverse' --max-new-tokens 8 --temperature 0");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // .bin: the learned tokenizer is written beside it, and the two load together.
  r = run_cli(args + " --steps 2 --out " + q(d.file("p.bin")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(std::filesystem::exists(d.file("p.tokenizer.bin")));
  r = run_cli("generate --model " + q(d.file("p.bin")) + " --tokenizer " + q(d.file("p.tokenizer.bin")) +
              " --prompt 'Reverse' --max-new-tokens 4 --temperature 0");
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(Pretrain, BadCorporaAndFlagsFailInOneLine) {
  const Materials& m = materials();
  TempDir d;
  write_text(d.file("empty.txt"), "\n\n  \n");
  write_text(d.file("bad.jsonl"), "{\"text\": \"a b c\"}\n{not json}\n");
  write_text(d.file("notext.jsonl"), "{\"body\": \"a\"}\n");
  const std::string shape = " --dim 32 --layers 1 --heads 4 --seq-len 16 --steps 1 --tokenizer " + q(m.tok);
  struct Bad {
    std::string args, needle;
  };
  const std::vector<Bad> cases = {
      {"--data " + q(d.file("empty.txt")) + shape, "no documents"},
      {"--data " + q(d.file("bad.jsonl")) + shape, "line 2"},
      {"--data " + q(d.file("notext.jsonl")) + shape, "\"text\""},
      {"--data " + q(m.corpus) + " --dim 32 --layers 1 --heads 4 --seq-len 16", "--tokenizer or --vocab-size"},
      {"--data " + q(m.corpus) + shape + " --vocab-size 300", "excludes"},
      {"--data " + q(m.corpus) + " --dim 30 --layers 1 --heads 4 --seq-len 16 --tokenizer " + q(m.tok), "head"},
  };
  for (const Bad& b : cases) {
    const auto r = run_cli("pretrain " + b.args + " --out " + q(d.file("x.gguf")));
    EXPECT_EQ(r.exit_code, 1) << b.args << "\n" << r.err;
    EXPECT_NE(r.err.find(b.needle), std::string::npos) << b.args << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(std::filesystem::exists(d.file("x.gguf")));
  }
}

// Three `finetune --full` AdamW steps on stories260K against the float64 PyTorch reference of
// tests/reference/full_step_reference.py (its output is the fixture): each step's loss and
// global gradient norm, and the written model's held-out loss, within 1e-3 relative.
TEST(FullReference, ThreeAdamWStepsMatchPyTorchFloat64) {
  REQUIRE_SHARED_DATA("llama2c/stories260K.bin");
  REQUIRE_SHARED_DATA("llama2c/tok512.model");
  REQUIRE_SHARED_DATA("alpaca/alpaca_data_1k_subset.json");
  const nlohmann::json fx =
      nlohmann::json::parse(test::read_text(std::string(LA_SOURCE_DIR) + "/tests/fixtures/full_step_stories260k.json"));
  const nlohmann::json& st = fx["settings"];
  const auto all = nlohmann::json::parse(test::read_text(test::shared_data() + "/alpaca/alpaca_data_1k_subset.json"));
  const auto n_train = st["train_records"].get<size_t>(), n_held = st["heldout_records"].get<size_t>();
  nlohmann::json train = nlohmann::json::array(), held = nlohmann::json::array();
  for (size_t i = 0; i < n_train + n_held; ++i) (i < n_train ? train : held).push_back(all[i]);
  TempDir d;
  write_text(d.file("train.json"), train.dump());
  write_text(d.file("held.json"), held.dump());
  const std::string model = test::shared_data() + "/llama2c/stories260K.bin",
                    tok = " --tokenizer " + q(test::shared_data() + "/llama2c/tok512.model");
  const auto r =
      run_cli("finetune --full --model " + q(model) + tok + " --data " + q(d.file("train.json")) + " --no-shuffle" +
              " --batch-size " + std::to_string(st["batch_size"].get<int>()) + " --micro-batch-size 4 --steps " +
              std::to_string(st["steps"].get<int>()) +
              fmt::format(" --lr {} --weight-decay {}", st["lr"].get<double>(), st["weight_decay"].get<double>()) +
              " --schedule constant --warmup-steps 0 --max-seq-len " + std::to_string(st["max_seq_len"].get<int>()) +
              " --no-progress --metrics " + q(d.file("m.jsonl")) + " --out " + q(d.file("full.bin")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<nlohmann::json> lines;
  std::istringstream in(test::read_text(d.file("m.jsonl")));
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), fx["steps"].size());
  for (size_t i = 0; i < lines.size(); ++i) {
    const double loss = fx["steps"][i]["loss"].get<double>(), gn = fx["steps"][i]["grad_norm"].get<double>();
    EXPECT_NEAR(lines[i]["loss"].get<double>(), loss, 1e-3 * loss) << "step " << i + 1;
    EXPECT_NEAR(lines[i]["grad_norm"].get<double>(), gn, 1e-3 * gn) << "step " << i + 1;
  }
  const double held_loss = fx["heldout_loss"].get<double>();
  const std::string eval_tok = tok + " --max-seq-len " + std::to_string(st["max_seq_len"].get<int>());
  EXPECT_NEAR(eval_loss(d.file("full.bin"), eval_tok, d.file("held.json")), held_loss, 1e-3 * held_loss);
}

}  // namespace
}  // namespace la
