// Hostile input, as a hostile user would try it (issue 11): bad model files, tokenizers, data,
// adapters, flags, output paths that are inputs, FIFOs and endless devices, poisoned weights,
// checkpoints from other runs. Every case must end with exit status 1 and one line
// "error: ..." naming the file or flag, within a time limit (no hang), and leave every file it
// was given — and every file that already existed — exactly as it was, with nothing new written.
// The materials (a tokenizer learned here, a small random model as llama2.c .bin and GGUF,
// synthetic data, an adapter, a checkpoint) are made by the suite itself: no shared data needed.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "la/core/mapped_file.h"
#include "la/data/alpaca.h"
#include "la/data/synthetic.h"
#include "la/formats/safetensors.h"
#include "la/io/adapter_file.h"
#include "la/io/loader.h"
#include "la/io/shapes.h"
#include "la/model/adapter.h"
#include "la/tokenizer/bpe_trainer.h"
#include "support/test_support.h"

namespace {

namespace fs = std::filesystem;
using la::test::shell_quote;
using la::test::write_text;

// A needle standing for the case's own folder, filled in when the case runs.
const std::string kDirNeedle = "@DIR@";
std::string d_placeholder() {
  return kDirNeedle;
}

// ---- the materials ---------------------------------------------------------------------------

struct World {
  std::string dir, tok, model, gguf, data, val, data2, adapter, ckpt;
  la::ModelConfig config;
};

std::string q(const std::string& s) {
  return shell_quote(s);
}

la::test::CommandResult run_limited(const std::string& args, int seconds = 30) {
  // `timeout` turns a hang into exit 124 (a failure below), never a stuck test.
  return la::test::run_cli_with_prefix("timeout -k 2 " + std::to_string(seconds), args);
}

la::ModelConfig world_config(int64_t vocab_size) {
  la::ModelConfig c;
  c.dim = 32;
  c.hidden_dim = 64;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = vocab_size;
  c.max_seq_len = 512;
  c.tied_classifier = true;
  return c;
}

// Writes the materials into `dir` (once per build of this suite: la::test::shared_fixture_dir).
void build_world(const std::string& dir) {
  auto file = [&](const char* name) { return dir + "/" + name; };
  auto records = la::synthetic_instructions(48, 3);
  std::vector<la::AlpacaRecord> train(records.begin(), records.begin() + 32), val(records.begin() + 32, records.end());
  la::write_alpaca_json(train, file("data.json"));
  la::write_alpaca_json(val, file("val.json"));
  // Other data of the same size (a resume must notice it is not the same).
  la::write_alpaca_json(la::synthetic_instructions(32, 4), file("data2.json"));
  std::vector<std::string> texts;
  for (const auto& r : records) {
    texts.push_back(la::alpaca_prompt(r.instruction, r.input));
    texts.push_back(r.output);
  }
  const la::BpeVocab vocab = la::train_bpe_vocab(texts, 512);
  const std::string tb = la::serialize_llama2c_vocab(vocab);
  la::write_file_atomic(file("tok.bin"), tb.data(), tb.size());
  const la::ModelConfig c = world_config(static_cast<int64_t>(vocab.pieces.size()));
  la::save_llama2c(*la::random_model(c, 7), file("model.bin"));
  auto r = la::test::run_cli("convert --model " + q(file("model.bin")) + " --tokenizer " + q(file("tok.bin")) +
                             " --type f32 --out " + q(file("model.gguf")));
  if (r.exit_code != 0) throw std::runtime_error("convert failed: " + r.err);
  la::save_adapter(la::Adapter::create(c, 4, 2, la::GateMode::Tanh, 1), file("adapter.safetensors"));
  // A checkpoint after 2 of 4 steps (batch 8 of 32 examples).
  r = la::test::run_cli("finetune --model " + q(file("model.bin")) + " --tokenizer " + q(file("tok.bin")) + " --data " +
                        q(file("data.json")) + " --out " + q(file("run.safetensors")) + " --checkpoint " +
                        q(file("run.ckpt")) +
                        " --batch-size 8 --micro-batch-size 8 --epochs 1 --steps 2 --save-every 2 --adapter-len 4"
                        " --adapter-layers 2 --max-seq-len 512 --threads 1");
  if (r.exit_code != 0) throw std::runtime_error("finetune failed: " + r.err);
  fs::remove(file("run.safetensors"));
}

const World& world() {
  static World w = [] {
    World x;
    x.dir = la::test::shared_fixture_dir("world", build_world);
    auto file = [&](const char* name) { return x.dir + "/" + name; };
    x.data = file("data.json");
    x.val = file("val.json");
    x.data2 = file("data2.json");
    x.tok = file("tok.bin");
    x.model = file("model.bin");
    x.gguf = file("model.gguf");
    x.adapter = file("adapter.safetensors");
    x.ckpt = file("run.ckpt");
    x.config = world_config(la::load_model(x.model)->config.vocab_size);
    return x;
  }();
  return w;
}

// ---- one case --------------------------------------------------------------------------------

struct Case {
  std::string name;
  // Builds the command line; may create files in `dir` (the case's own folder).
  std::function<std::string(const World&, const std::string& dir)> args;
  std::vector<std::string> needles;  // each must appear in the error line
};

// Every regular file under `root` (recursively) and its bytes.
std::map<std::string, std::string> snapshot(const std::string& root) {
  std::map<std::string, std::string> m;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    std::error_code ec;
    if (e.is_symlink(ec) || !e.is_regular_file(ec)) continue;
    std::ifstream f(e.path(), std::ios::binary);
    m[e.path().string()] = std::string(std::istreambuf_iterator<char>(f), {});
  }
  return m;
}

std::string mt(const World& w) {
  return " --model " + q(w.model) + " --tokenizer " + q(w.tok);
}
// finetune with the materials; `data` replaces the training data.
std::string ft(const World& w, const std::string& data = "") {
  return "finetune" + mt(w) + " --data " + q(data.empty() ? w.data : data) +
         " --batch-size 8 --micro-batch-size 8 --epochs 1 --adapter-len 4 --adapter-layers 2 --max-seq-len 512"
         " --threads 1";
}
std::string gen(const World& w) {
  return "generate" + mt(w) + " --prompt hi -n 4 --temperature 0";
}
std::string ev(const World& w) {
  return "eval" + mt(w) + " --data " + q(w.val);
}
std::string put(const std::string& dir, const std::string& name, const std::string& bytes) {
  write_text(dir + "/" + name, bytes);
  return dir + "/" + name;
}
std::string head_of(const std::string& path, size_t n) {
  std::string s = la::read_file(path);
  return s.substr(0, std::min(n, s.size()));
}
std::string fifo(const std::string& dir, const std::string& name) {
  const std::string p = dir + "/" + name;
  if (mkfifo(p.c_str(), 0600) != 0) throw std::runtime_error("mkfifo failed");
  return p;
}
// An f32 llama2.c model file with one weight set to `v` (the first value after the header).
std::string poisoned_bin(const World& w, const std::string& dir, float v, size_t at_byte = 7 * 4 + 64) {
  std::string s = la::read_file(w.model);
  std::memcpy(s.data() + at_byte, &v, 4);
  return put(dir, "poisoned.bin", s);
}
// Adapter safetensors from tensors and metadata.
std::string adapter_file(const std::string& dir, const std::string& name,
                         const std::vector<std::pair<std::string, std::vector<int64_t>>>& tensors,
                         const std::map<std::string, std::string>& meta, float fill = 0.1f) {
  la::SafetensorsWriter wr;
  for (const auto& [k, v] : meta) wr.set_metadata(k, v);
  for (const auto& [n, shape] : tensors) {
    int64_t count = 1;
    for (int64_t d : shape) count *= d;
    std::vector<float> v(static_cast<size_t>(count), fill);
    wr.add_f32(n, shape, v.data());
  }
  write_text(dir + "/" + name, wr.serialize());
  return dir + "/" + name;
}
std::map<std::string, std::string> ours(const World& w, int64_t K = 4, int64_t L = 2) {
  return {{"format", "llama-adapter"},
          {"adapter_len", std::to_string(K)},
          {"adapter_layers", std::to_string(L)},
          {"gate_mode", "tanh"},
          {"dim", std::to_string(w.config.dim)},
          {"n_layers", std::to_string(w.config.n_layers)},
          {"n_heads", std::to_string(w.config.n_heads)}};
}
std::vector<std::pair<std::string, std::vector<int64_t>>> adapter_tensors(const World& w, int64_t rows = 8) {
  return {{"adapter_query.weight", {rows, w.config.dim}},
          {"layers.0.attention.gate", {w.config.n_heads}},
          {"layers.1.attention.gate", {w.config.n_heads}}};
}
std::string hf_dir(const std::string& dir, const nlohmann::json& config) {
  fs::create_directories(dir + "/hf");
  write_text(dir + "/hf/config.json", config.dump());
  write_text(dir + "/hf/model.safetensors", la::SafetensorsWriter().serialize());
  return dir + "/hf";
}
nlohmann::json hf_config() {
  return {{"model_type", "llama"},    {"hidden_size", 16},
          {"intermediate_size", 24},  {"num_hidden_layers", 2},
          {"num_attention_heads", 4}, {"num_key_value_heads", 2},
          {"vocab_size", 32},         {"max_position_embeddings", 64},
          {"rms_norm_eps", 1e-5}};
}

std::vector<Case> make_cases();
const std::vector<Case>& cases() {
  static const std::vector<Case> all = make_cases();
  return all;
}

std::vector<Case> make_cases() {
  std::vector<Case> c;
  auto add = [&](std::string name, std::function<std::string(const World&, const std::string&)> a,
                 std::vector<std::string> needles) {
    c.push_back({std::move(name), std::move(a), std::move(needles)});
  };
  using W = const World&;
  using D = const std::string&;

  // ---- model files ----
  add("ModelMissing",
      [](W w, D d) { return "generate --model " + q(d + "/none.bin") + " --tokenizer " + q(w.tok) + " --prompt x"; },
      {"none.bin"});
  add("ModelEmpty",
      [](W w, D d) {
        return "generate --model " + q(put(d, "e.bin", "")) + " --tokenizer " + q(w.tok) + " --prompt x";
      },
      {"e.bin"});
  add("ModelTruncatedHalf",
      [](W w, D d) {
        return "eval --model " + q(put(d, "t.bin", head_of(w.model, la::read_file(w.model).size() / 2))) +
               " --tokenizer " + q(w.tok) + " --data " + q(w.val);
      },
      {"t.bin"});
  add("ModelHeaderOnly", [](W w, D d) { return "info --model " + q(put(d, "h.bin", head_of(w.model, 28))); },
      {"h.bin"});
  add("ModelNegativeDim",
      [](W w, D d) {
        std::string s = la::read_file(w.model);
        const int32_t neg = -32;
        std::memcpy(s.data(), &neg, 4);
        return "info --model " + q(put(d, "neg.bin", s));
      },
      {"neg.bin"});
  add("ModelHugeLayers",
      [](W w, D d) {
        std::string s = la::read_file(w.model);
        const int32_t big = 1 << 30;
        std::memcpy(s.data() + 8, &big, 4);
        return "info --model " + q(put(d, "big.bin", s));
      },
      {"big.bin"});
  add("ModelNaNWeight",
      [](W w, D d) {
        return "generate --model " + q(poisoned_bin(w, d, std::nanf(""))) + " --tokenizer " + q(w.tok) +
               " --prompt x -n 2";
      },
      {"poisoned.bin", "NaN"});
  add("ModelInfWeight",
      [](W w, D d) {
        return "eval --model " + q(poisoned_bin(w, d, std::numeric_limits<float>::infinity())) + " --tokenizer " +
               q(w.tok) + " --data " + q(w.val);
      },
      {"poisoned.bin"});
  add("ModelNaNLastWeight",
      [](W w, D d) {
        const size_t n = la::read_file(w.model).size();
        return "finetune --model " + q(poisoned_bin(w, d, std::nanf(""), (n / 2) & ~size_t{3})) + " --tokenizer " +
               q(w.tok) + " --data " + q(w.data) + " --out " + q(d + "/a.safetensors") +
               " --batch-size 8 --micro-batch-size 8 --steps 1";
      },
      {"poisoned.bin"});
  add("ModelFifo",
      [](W w, D d) { return "generate --model " + q(fifo(d, "m.fifo")) + " --tokenizer " + q(w.tok) + " --prompt x"; },
      {"m.fifo", "not a regular file"});
  add("ModelDevZero", [](W w, D) { return "generate --model /dev/zero --tokenizer " + q(w.tok) + " --prompt x"; },
      {"/dev/zero"});
  add("ModelGgufTruncated", [](W w, D d) { return "info --model " + q(put(d, "t.gguf", head_of(w.gguf, 200))); },
      {"t.gguf"});
  add("ModelGgufBadVersion",
      [](W w, D d) {
        std::string s = la::read_file(w.gguf);
        const uint32_t v = 99;
        std::memcpy(s.data() + 4, &v, 4);
        return "info --model " + q(put(d, "v.gguf", s));
      },
      {"v.gguf"});
  add("ModelGgufNaNWeight",
      [](W w, D d) {
        std::string s = la::read_file(w.gguf);
        const float nan = std::nanf("");
        std::memcpy(s.data() + s.size() - 64, &nan, 4);
        return "generate --model " + q(put(d, "nan.gguf", s)) + " --prompt x -n 2";
      },
      {"nan.gguf", "NaN"});
  add("HfConfigMalformed",
      [](W, D d) {
        fs::create_directories(d + "/hf");
        write_text(d + "/hf/config.json", "{\"hidden_size\": 16,");
        return "info --model " + q(d + "/hf");
      },
      {"config.json"});
  add("HfConfigHugeEps",
      [](W, D d) {
        auto c = hf_config();
        c["rms_norm_eps"] = 1e39;
        return "info --model " + q(hf_dir(d, c));
      },
      {"rms_norm_eps"});
  add("HfConfigNegativeHeads",
      [](W, D d) {
        auto c = hf_config();
        c["num_attention_heads"] = -4;
        return "info --model " + q(hf_dir(d, c));
      },
      {"config.json"});
  add("HfConfigEscapeInModelType",
      [](W, D d) {
        auto c = hf_config();
        c["model_type"] = "llama\x1b[2K\rerror: forged";
        return "info --model " + q(hf_dir(d, c));
      },
      {"\\x1b"});
  add("HfDirNoConfig",
      [](W, D d) {
        fs::create_directories(d + "/empty");
        return "info --model " + q(d + "/empty");
      },
      {"empty"});
  add("HfMissingTensors", [](W, D d) { return "info --model " + q(hf_dir(d, hf_config())); }, {"hf"});

  // ---- tokenizers ----
  add("TokenizerMissing",
      [](W w, D d) { return "generate --model " + q(w.model) + " --tokenizer " + q(d + "/no.bin") + " --prompt x"; },
      {"no.bin"});
  add("TokenizerEmpty",
      [](W w, D d) {
        return "generate --model " + q(w.model) + " --tokenizer " + q(put(d, "e.bin", "")) + " --prompt x";
      },
      {"e.bin"});
  add("TokenizerTruncated",
      [](W w, D d) {
        return "generate --model " + q(w.model) + " --tokenizer " + q(put(d, "t.bin", head_of(w.tok, 100))) +
               " --prompt x";
      },
      {"t.bin"});
  add("TokenizerFifo",
      [](W w, D d) {
        return "generate --model " + q(w.model) + " --tokenizer " + q(fifo(d, "t.fifo")) + " --prompt x";
      },
      {"t.fifo", "not a regular file"});
  add("TokenizerDevZero", [](W w, D) { return "generate --model " + q(w.model) + " --tokenizer /dev/zero --prompt x"; },
      {"/dev/zero"});
  add("TokenizerDirectory",
      [](W w, D d) { return "generate --model " + q(w.model) + " --tokenizer " + q(d) + " --prompt x"; },
      {d_placeholder()});
  add("TokenizerGarbageModel",
      [](W w, D d) {
        return "generate --model " + q(w.model) + " --tokenizer " + q(put(d, "g.model", std::string(500, '\x07'))) +
               " --prompt x";
      },
      {"g.model"});
  add("TokenizerWrongVocab",
      [](W w, D d) {
        la::BpeVocab v = la::train_bpe_vocab({"abc def ghi"}, 280);
        return "generate --model " + q(w.model) + " --tokenizer " +
               q(put(d, "small.bin", la::serialize_llama2c_vocab(v))) + " --prompt x";
      },
      {"small.bin", "vocabulary"});
  add("TokenizerNegativePieceLength",
      [](W w, D d) {
        std::string s = la::read_file(w.tok);
        const int32_t neg = -100;
        std::memcpy(s.data() + 4 + 4, &neg, 4);  // max_token_length, then the first score and length
        return "generate --model " + q(w.model) + " --tokenizer " + q(put(d, "n.bin", s)) + " --prompt x";
      },
      {"n.bin"});
  add("TokenizerHugePieceLength",
      [](W w, D d) {
        std::string s = la::read_file(w.tok);
        const int32_t big = 1 << 30;
        std::memcpy(s.data() + 4 + 4, &big, 4);
        return "generate --model " + q(w.model) + " --tokenizer " + q(put(d, "h.bin", s)) + " --prompt x";
      },
      {"h.bin"});

  // ---- data ----
  add("DataMissing", [](W w, D d) { return ft(w, d + "/none.json") + " --out " + q(d + "/a.safetensors"); },
      {"none.json"});
  add("DataEmptyFile", [](W w, D d) { return ft(w, put(d, "e.json", "")) + " --out " + q(d + "/a.safetensors"); },
      {"e.json"});
  add("DataEmptyArray", [](W w, D d) { return ft(w, put(d, "e.json", "[]")) + " --out " + q(d + "/a.safetensors"); },
      {"e.json"});
  add("DataMalformedJson",
      [](W w, D d) {
        return ft(w, put(d, "m.json", "[{\"instruction\": \"a\",")) + " --out " + q(d + "/a.safetensors");
      },
      {"m.json"});
  add("DataJsonlBadLine",
      [](W w, D d) {
        return "eval" + mt(w) + " --data " + q(put(d, "b.jsonl", "{\"instruction\":\"a\",\"output\":\"b\"}\n{oops\n"));
      },
      {"b.jsonl", "line 2"});
  add("DataMissingOutput",
      [](W w, D d) { return "eval" + mt(w) + " --data " + q(put(d, "o.json", "[{\"instruction\":\"a\"}]")); },
      {"o.json", "output"});
  add("DataNonStringField",
      [](W w, D d) {
        return "eval" + mt(w) + " --data " + q(put(d, "n.json", "[{\"instruction\":5,\"output\":\"b\"}]"));
      },
      {"n.json", "instruction"});
  add("DataNotAnArray",
      [](W w, D d) { return "eval" + mt(w) + " --data " + q(put(d, "o.json", "{\"instruction\":\"a\"}")); },
      {"o.json"});
  add("DataFifo", [](W w, D d) { return "eval" + mt(w) + " --data " + q(fifo(d, "d.fifo")); },
      {"d.fifo", "not a regular file"});
  add("DataDevZero", [](W w, D) { return "eval" + mt(w) + " --data /dev/zero"; }, {"/dev/zero"});
  add("DataDirectory", [](W w, D d) { return "eval" + mt(w) + " --data " + q(d); }, {d_placeholder()});
  add("DataBinaryGarbage",
      [](W w, D d) {
        return "eval" + mt(w) + " --data " + q(put(d, "g.json", std::string("\xff\xfe\x00\x01garbage", 11)));
      },
      {"g.json"});
  add("DataInvalidUtf8",
      [](W w, D d) {
        return "eval" + mt(w) + " --data " + q(put(d, "u.json", "[{\"instruction\":\"\xc3\x28\",\"output\":\"b\"}]"));
      },
      {"u.json"});
  add("ValDataMalformed",
      [](W w, D d) { return ft(w) + " --val-data " + q(put(d, "v.json", "[")) + " --out " + q(d + "/a.safetensors"); },
      {"v.json"});
  add("DataFewerThanOneBatch",
      [](W w, D d) {
        return "finetune" + mt(w) + " --data " + q(w.val) + " --batch-size 32 --micro-batch-size 8 --out " +
               q(d + "/a.safetensors");
      },
      {"batch"});
  add("DataDeeplyNested",
      [](W w, D d) {
        return "eval" + mt(w) + " --data " +
               q(put(d, "deep.json", std::string(100000, '[') + std::string(100000, ']')));
      },
      {"deep.json"});

  // ---- adapters ----
  add("AdapterMissing", [](W w, D d) { return gen(w) + " --adapter " + q(d + "/none.safetensors"); },
      {"none.safetensors"});
  add("AdapterGarbage",
      [](W w, D d) { return gen(w) + " --adapter " + q(put(d, "g.safetensors", std::string(300, 'x'))); },
      {"g.safetensors"});
  add("AdapterTruncated",
      [](W w, D d) { return gen(w) + " --adapter " + q(put(d, "t.safetensors", head_of(w.adapter, 120))); },
      {"t.safetensors"});
  add("AdapterFifo", [](W w, D d) { return gen(w) + " --adapter " + q(fifo(d, "a.fifo")); },
      {"a.fifo", "not a regular file"});
  add("AdapterDevZero", [](W w, D) { return gen(w) + " --adapter /dev/zero"; }, {"/dev/zero"});
  add("AdapterWrongDim",
      [](W w, D d) {
        auto m = ours(w);
        m["dim"] = "48";
        return gen(w) + " --adapter " +
               q(adapter_file(d, "dim.safetensors",
                              {{"adapter_query.weight", {8, 48}},
                               {"layers.0.attention.gate", {4}},
                               {"layers.1.attention.gate", {4}}},
                              m));
      },
      {"dim.safetensors", "does not match the model"});
  add("AdapterHugeHeadsScalarGate",
      [](W w, D d) {
        auto m = ours(w);
        m["n_heads"] = "4611686018427387904";
        return gen(w) + " --adapter " +
               q(adapter_file(d, "h.safetensors",
                              {{"adapter_query.weight", {8, w.config.dim}},
                               {"layers.0.attention.gate", {1}},
                               {"layers.1.attention.gate", {1}}},
                              m));
      },
      {"h.safetensors"});
  add("AdapterHugeLen",
      [](W w, D d) {
        auto m = ours(w);
        m["adapter_len"] = "9223372036854775807";
        return gen(w) + " --adapter " + q(adapter_file(d, "k.safetensors", adapter_tensors(w), m));
      },
      {"k.safetensors"});
  add("AdapterNaN",
      [](W w, D d) {
        return ev(w) + " --adapter " +
               q(adapter_file(d, "nan.safetensors", adapter_tensors(w), ours(w), std::nanf("")));
      },
      {"nan.safetensors", "NaN"});
  add("AdapterInf",
      [](W w, D d) {
        return gen(w) + " --adapter " +
               q(adapter_file(d, "inf.safetensors", adapter_tensors(w), ours(w),
                              std::numeric_limits<float>::infinity()));
      },
      {"inf.safetensors"});
  add("AdapterRowsNotMultipleOfK",
      [](W w, D d) {
        return gen(w) + " --adapter " + q(adapter_file(d, "r.safetensors", adapter_tensors(w, 7), ours(w)));
      },
      {"r.safetensors"});
  add("AdapterGateForHugeLayer",
      [](W w, D d) {
        return gen(w) + " --adapter " +
               q(adapter_file(d, "l.safetensors",
                              {{"adapter_query.weight", {8, w.config.dim}}, {"layers.1000000000.attention.gate", {4}}},
                              {}));
      },
      {"l.safetensors"});
  add("AdapterMetadataNotANumber",
      [](W w, D d) {
        auto m = ours(w);
        m["adapter_len"] = "four";
        return gen(w) + " --adapter " + q(adapter_file(d, "m.safetensors", adapter_tensors(w), m));
      },
      {"m.safetensors", "adapter_len"});
  add("AdapterOtherFormat",
      [](W w, D d) {
        auto m = ours(w);
        m["format"] = "lora";
        return gen(w) + " --adapter " + q(adapter_file(d, "f.safetensors", adapter_tensors(w), m));
      },
      {"f.safetensors", "format"});
  add("AdapterThreeDimQuery",
      [](W w, D d) {
        return gen(w) + " --adapter " +
               q(adapter_file(d, "3.safetensors",
                              {{"adapter_query.weight", {2, 4, w.config.dim}}, {"layers.1.attention.gate", {4}}}, {}));
      },
      {"3.safetensors"});
  add("AdapterNoGates",
      [](W w, D d) {
        return gen(w) + " --adapter " +
               q(adapter_file(d, "ng.safetensors", {{"adapter_query.weight", {8, w.config.dim}}}, {}));
      },
      {"ng.safetensors"});
  add("AdapterWrongGateCount",
      [](W w, D d) {
        return gen(w) + " --adapter " +
               q(adapter_file(d, "gc.safetensors",
                              {{"adapter_query.weight", {8, w.config.dim}},
                               {"layers.0.attention.gate", {3}},
                               {"layers.1.attention.gate", {3}}},
                              ours(w)));
      },
      {"gc.safetensors"});
  add("AdapterBadGateMode",
      [](W w, D d) {
        auto m = ours(w);
        m["gate_mode"] = "sigmoid";
        return gen(w) + " --adapter " + q(adapter_file(d, "gm.safetensors", adapter_tensors(w), m));
      },
      {"gm.safetensors", "gate mode"});
  add("AdapterGgufTruncated",
      [](W w, D d) {
        const std::string full = d + "/full.gguf";
        la::save_adapter(la::Adapter::create(w.config, 4, 2, la::GateMode::Tanh, 1), full);
        const std::string s = head_of(full, 100);
        fs::remove(full);
        return gen(w) + " --adapter " + q(put(d, "t.gguf", s));
      },
      {"t.gguf"});
  add("AdapterIsTheModel", [](W w, D) { return gen(w) + " --adapter " + q(w.model); }, {"model.bin"});
  add("InitAdapterGarbage",
      [](W w, D d) {
        return ft(w) + " --init-adapter " + q(put(d, "i.safetensors", "junk")) + " --out " + q(d + "/a.safetensors");
      },
      {"i.safetensors"});

  // ---- flags ----
  add("TemperatureNaN", [](W w, D) { return gen(w) + " --temperature nan"; }, {"--temperature"});
  add("TemperatureNegative", [](W w, D) { return gen(w) + " --temperature -1"; }, {"--temperature"});
  add("TemperatureInf", [](W w, D) { return gen(w) + " --temperature inf"; }, {"--temperature"});
  add("TopPNaN", [](W w, D) { return gen(w) + " --top-p nan"; }, {"--top-p"});
  add("TopPAboveOne", [](W w, D) { return gen(w) + " --top-p 2"; }, {"--top-p"});
  add("TopKNegative", [](W w, D) { return gen(w) + " --top-k -1"; }, {"--top-k"});
  add("MaxNewTokensNegative", [](W w, D) { return gen(w) + " --max-new-tokens -5"; }, {"--max-new-tokens"});
  add("ContextZero", [](W w, D) { return gen(w) + " --context 0"; }, {"--context"});
  add("ContextFarBeyondMemory", [](W w, D) { return gen(w) + " --context 1000000000000"; }, {"--context"});
  add("GenerateSeedNotANumber", [](W w, D) { return gen(w) + " --seed abc"; }, {"--seed"});
  add("GateModeBogus", [](W w, D) { return gen(w) + " --gate-mode sigmoid"; }, {"--gate-mode"});
  add("LrNaN", [](W w, D d) { return ft(w) + " --lr nan --out " + q(d + "/a.safetensors"); }, {"--lr"});
  add("LrNegative", [](W w, D d) { return ft(w) + " --lr -1 --out " + q(d + "/a.safetensors"); }, {"--lr"});
  add("BlrNegative", [](W w, D d) { return ft(w) + " --blr -0.01 --out " + q(d + "/a.safetensors"); }, {"--blr"});
  add("MinLrNaN", [](W w, D d) { return ft(w) + " --min-lr nan --out " + q(d + "/a.safetensors"); }, {"--min-lr"});
  add("StepsNegative", [](W w, D d) { return ft(w) + " --steps -3 --out " + q(d + "/a.safetensors"); }, {"--steps"});
  add("WarmupStepsNegative", [](W w, D d) { return ft(w) + " --warmup-steps -2 --out " + q(d + "/a.safetensors"); },
      {"--warmup-steps"});
  add("WarmupEpochsNegative", [](W w, D d) { return ft(w) + " --warmup-epochs -1 --out " + q(d + "/a.safetensors"); },
      {"--warmup-epochs"});
  add("WarmupEpochsNaN", [](W w, D d) { return ft(w) + " --warmup-epochs nan --out " + q(d + "/a.safetensors"); },
      {"--warmup-epochs"});
  add("SaveEveryNegative", [](W w, D d) { return ft(w) + " --save-every -1 --out " + q(d + "/a.safetensors"); },
      {"--save-every"});
  add("EvalEveryNegative", [](W w, D d) { return ft(w) + " --eval-every -1 --out " + q(d + "/a.safetensors"); },
      {"--eval-every"});
  add("EpochsZero", [](W w, D d) { return ft(w) + " --epochs 0 --out " + q(d + "/a.safetensors"); }, {"--epochs"});
  add("BatchSizeZero", [](W w, D d) { return ft(w) + " --batch-size 0 --out " + q(d + "/a.safetensors"); },
      {"--batch-size"});
  add("MicroBatchZero", [](W w, D d) { return ft(w) + " --micro-batch-size 0 --out " + q(d + "/a.safetensors"); },
      {"--micro-batch-size"});
  add("BatchNotMultipleOfMicro",
      [](W w, D d) { return ft(w) + " --batch-size 8 --micro-batch-size 3 --out " + q(d + "/a.safetensors"); },
      {"--batch-size"});
  add("AdapterLenZero", [](W w, D d) { return ft(w) + " --adapter-len 0 --out " + q(d + "/a.safetensors"); },
      {"--adapter-len"});
  add("AdapterLayersTooMany",
      [](W w, D d) {
        return "finetune" + mt(w) + " --data " + q(w.data) + " --batch-size 8 --adapter-layers 99 --out " +
               q(d + "/a.safetensors");
      },
      {"adapter layers"});
  add("MaxSeqLenOne", [](W w, D d) { return ft(w) + " --max-seq-len 1 --out " + q(d + "/a.safetensors"); },
      {"--max-seq-len"});
  add("MaxSeqLenBeyondModel", [](W w, D d) { return ft(w) + " --max-seq-len 100000 --out " + q(d + "/a.safetensors"); },
      {"--max-seq-len"});
  add("WeightDecayNaN", [](W w, D d) { return ft(w) + " --weight-decay nan --out " + q(d + "/a.safetensors"); },
      {"--weight-decay"});
  add("GradClipNegative", [](W w, D d) { return ft(w) + " --grad-clip -1 --out " + q(d + "/a.safetensors"); },
      {"--grad-clip"});
  add("ScheduleBogus", [](W w, D d) { return ft(w) + " --schedule linear --out " + q(d + "/a.safetensors"); },
      {"--schedule"});
  add("LrHugeOverflows",
      [](W w, D d) { return ft(w) + " --lr 1e38 --steps 3 --warmup-steps 0 --out " + q(d + "/a.safetensors"); },
      {"step"});
  add("ConvertTypeBogus",
      [](W w, D d) {
        return "convert --model " + q(w.model) + " --tokenizer " + q(w.tok) + " --type q9_9 --out " + q(d + "/o.gguf");
      },
      {"--type"});
  add("BenchShapeBogus", [](W, D) { return std::string("bench --shape 3000b"); }, {"3000b"});
  add("ThreadsNegative", [](W w, D) { return gen(w) + " --threads -2"; }, {"--threads"});
  add("UnknownFlag", [](W w, D) { return gen(w) + " --temprature 0.5"; }, {"--temprature"});
  add("UnknownCommand", [](W, D) { return std::string("fine-tune --model x"); }, {"fine-tune"});

  // ---- outputs that are inputs, and outputs that cannot be written ----
  add("OutIsTheModel", [](W w, D) { return ft(w) + " --out " + q(w.model); }, {"model.bin", "--out"});
  add("OutIsTheData", [](W w, D) { return ft(w) + " --out " + q(w.data); }, {"data.json", "--out"});
  add("OutIsTheTokenizer", [](W w, D) { return ft(w) + " --out " + q(w.tok); }, {"tok.bin", "--out"});
  add("OutIsTheValData", [](W w, D) { return ft(w) + " --val-data " + q(w.val) + " --out " + q(w.val); },
      {"val.json", "--out"});
  add("OutSymlinkToModel",
      [](W w, D d) {
        fs::create_symlink(w.model, d + "/link.safetensors");
        return ft(w) + " --out " + q(d + "/link.safetensors");
      },
      {"link.safetensors", "--out"});
  add("OutHardLinkToData",
      [](W w, D d) {
        const std::string copy = put(d, "data.json", la::read_file(w.data));
        fs::create_hard_link(copy, d + "/hard.safetensors");
        return "finetune" + mt(w) + " --data " + q(copy) + " --batch-size 8 --micro-batch-size 8 --steps 1 --out " +
               q(d + "/hard.safetensors");
      },
      {"hard.safetensors", "--out"});
  add("CheckpointEqualsOut",
      [](W w, D d) {
        return ft(w) + " --out " + q(d + "/a.safetensors") + " --checkpoint " + q(d + "/a.safetensors") +
               " --save-every 1";
      },
      {"--checkpoint"});
  add("CheckpointIsTheModel",
      [](W w, D d) {
        return ft(w) + " --out " + q(d + "/a.safetensors") + " --checkpoint " + q(w.model) + " --save-every 1";
      },
      {"--checkpoint"});
  add("MetricsIsTheData",
      [](W w, D d) { return ft(w) + " --out " + q(d + "/a.safetensors") + " --metrics " + q(w.data); }, {"--metrics"});
  add("OutIsTheInitAdapter",
      [](W w, D d) {
        const std::string a = put(d, "init.safetensors", la::read_file(w.adapter));
        return ft(w) + " --init-adapter " + q(a) + " --out " + q(a);
      },
      {"--out"});
  add("OutIsTheResumeCheckpoint",
      [](W w, D d) {
        const std::string c = put(d, "r.ckpt", la::read_file(w.ckpt));
        return ft(w) + " --resume " + q(c) + " --out " + q(c);
      },
      {"--out"});
  add("ConvertOutIsItsInput",
      [](W w, D d) {
        const std::string m = put(d, "m.gguf", la::read_file(w.gguf));
        return "convert --model " + q(m) + " --type f16 --out " + q(m);
      },
      {"m.gguf", "--out"});
  add("ConvertAdapterOutIsItsInput",
      [](W w, D d) {
        const std::string a = put(d, "a.safetensors", la::read_file(w.adapter));
        return "convert --adapter " + q(a) + " --out " + q(a);
      },
      {"a.safetensors", "--out"});
  add("ConvertPeftOutIsAFile",
      [](W w, D d) {
        const std::string f = put(d, "peft", "a file where the PEFT folder would go");
        return "convert --adapter " + q(w.adapter) + " --to peft --out " + q(f);
      },
      {"--out", "not a folder"});
  add("ConvertToLitgptWithoutModel",
      [](W w, D d) { return "convert --adapter " + q(w.adapter) + " --to litgpt --out " + q(d + "/a.pth"); },
      {"needs --model"});
  add("ConvertOutIsTheTokenizer",
      [](W w, D) {
        return "convert --model " + q(w.model) + " --tokenizer " + q(w.tok) + " --type f16 --out " + q(w.tok);
      },
      {"--out"});
  add("OutDirectoryMissing", [](W w, D d) { return ft(w) + " --out " + q(d + "/no/such/dir/a.safetensors"); },
      {"--out", "no/such/dir"});
  add("OutNameTooLong",
      [](W w, D d) { return ft(w) + " --out " + q(d + "/" + std::string(300, 'a') + ".safetensors"); }, {"--out"});
  add("OutIsADirectory", [](W w, D d) { return ft(w) + " --out " + q(d); }, {"--out"});
  add("MetricsDirectoryMissing",
      [](W w, D d) { return ft(w) + " --out " + q(d + "/a.safetensors") + " --metrics " + q(d + "/nope/m.jsonl"); },
      {"--metrics"});
  add("CheckpointDirectoryMissing",
      [](W w, D d) {
        return ft(w) + " --out " + q(d + "/a.safetensors") + " --checkpoint " + q(d + "/nope/c.ckpt") +
               " --save-every 1";
      },
      {"--checkpoint"});
  add("ConvertOutDirectoryMissing",
      [](W w, D d) {
        return "convert --model " + q(w.model) + " --tokenizer " + q(w.tok) + " --type f16 --out " +
               q(d + "/nope/o.gguf");
      },
      {"--out"});
  // An existing output that is not a regular file is never replaced (renaming over a FIFO or a
  // device would destroy it).
  add("OutIsAFifo", [](W w, D d) { return ft(w) + " --out " + q(fifo(d, "out.fifo")); }, {"out.fifo", "--out"});

  // ---- resume ----
  add("ResumeGarbage",
      [](W w, D d) {
        return ft(w) + " --resume " + q(put(d, "g.ckpt", "not a checkpoint")) + " --out " + q(d + "/a.safetensors");
      },
      {"g.ckpt"});
  add("ResumeAdapterNotCheckpoint",
      [](W w, D d) { return ft(w) + " --resume " + q(w.adapter) + " --out " + q(d + "/a.safetensors"); },
      {"adapter.safetensors", "checkpoint"});
  add("ResumeOtherDataSameSize",
      [](W w, D d) {
        return "finetune" + mt(w) + " --data " + q(w.data2) +
               " --batch-size 8 --micro-batch-size 8 --epochs 1 --adapter-len 4 --adapter-layers 2 --max-seq-len 512 "
               "--threads 1 --resume " +
               q(w.ckpt) + " --out " + q(d + "/a.safetensors");
      },
      {"run.ckpt", "data"});
  add("ResumeOtherLr",
      [](W w, D d) { return ft(w) + " --lr 0.5 --resume " + q(w.ckpt) + " --out " + q(d + "/a.safetensors"); },
      {"run.ckpt", "lr"});
  add("ResumeOtherBatch",
      [](W w, D d) {
        return "finetune" + mt(w) + " --data " + q(w.data) +
               " --batch-size 16 --micro-batch-size 8 --epochs 1 --adapter-len 4 --adapter-layers 2 --max-seq-len 512 "
               "--resume " +
               q(w.ckpt) + " --out " + q(d + "/a.safetensors");
      },
      {"run.ckpt", "batch"});
  add("ResumePastTheEnd",
      [](W w, D d) { return ft(w) + " --steps 2 --resume " + q(w.ckpt) + " --out " + q(d + "/a.safetensors"); },
      {"run.ckpt", "nothing"});
  add("ResumeWithInitAdapter",
      [](W w, D d) {
        return ft(w) + " --resume " + q(w.ckpt) + " --init-adapter " + q(w.adapter) + " --out " +
               q(d + "/a.safetensors");
      },
      {"--init-adapter"});
  add("ResumeTruncated",
      [](W w, D d) {
        return ft(w) + " --resume " + q(put(d, "t.ckpt", head_of(w.ckpt, 300))) + " --out " + q(d + "/a.safetensors");
      },
      {"t.ckpt"});
  add("ResumeFifo",
      [](W w, D d) { return ft(w) + " --resume " + q(fifo(d, "c.fifo")) + " --out " + q(d + "/a.safetensors"); },
      {"c.fifo", "not a regular file"});
  return c;
}

class Hostile : public ::testing::TestWithParam<size_t> {};

TEST_P(Hostile, CleanErrorNothingChanged) {
  const World& w = world();
  const Case& c = cases()[GetParam()];
  la::test::TempDir d;
  // Make the case's inputs, then photograph every file the command could touch.
  const std::string args = c.args(w, d.path());
  const auto before_world = snapshot(w.dir), before_case = snapshot(d.path());
  const auto r = run_limited(args);
  SCOPED_TRACE(args);
  EXPECT_EQ(r.exit_code, 1) << "stderr: " << r.err;
  // The error is one line, the last; lines before it may only report progress (e.g. "train: 32
  // examples"), never a second error.
  ASSERT_TRUE(r.err.ends_with("\n")) << r.err;
  const size_t start = r.err.rfind('\n', r.err.size() - 2);
  const std::string last = r.err.substr(start == std::string::npos ? 0 : start + 1);
  EXPECT_TRUE(last.starts_with("error: ")) << "last line is not the error: " << r.err;
  size_t errors = r.err.starts_with("error") ? 1 : 0;
  for (size_t at = r.err.find("\nerror"); at != std::string::npos; at = r.err.find("\nerror", at + 1)) ++errors;
  EXPECT_EQ(errors, 1u) << "more than one error line: " << r.err;
  for (std::string n : c.needles) {
    if (n == kDirNeedle) n = d.path();
    EXPECT_NE(last.find(n), std::string::npos) << "no '" << n << "' in: " << last;
  }
  // Untrusted bytes are never echoed raw: no escape or control character but the final newline.
  EXPECT_EQ(std::count_if(last.begin(), last.end() - 1,
                          [](char ch) { return static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f; }),
            0)
      << last;
  EXPECT_EQ(snapshot(w.dir), before_world) << "a file of the shared materials changed";
  EXPECT_EQ(snapshot(d.path()), before_case) << "a file changed or appeared in the case folder";
}

INSTANTIATE_TEST_SUITE_P(Cases, Hostile, ::testing::Range<size_t>(0, cases().size()),
                         [](const auto& info) { return cases()[info.param].name; });

TEST(HostileSuite, HasAtLeastAHundredCases) {
  EXPECT_GE(cases().size(), 100u);
}

}  // namespace

// ---- signals -----------------------------------------------------------------------------------

namespace {

struct Background {
  int exit_code = -1;
  std::string err;
};

// Runs a finetune in the background, waits until its metrics file has `lines` lines, sends
// `signal` (once per entry), waits for it and returns its exit status and stderr.
Background interrupt_after(const std::string& args, const std::string& metrics, int lines,
                           const std::vector<std::string>& signals) {
  la::test::TempDir tmp;
  std::string script = std::string(LA_CLI_PATH) + " " + args + " 2>" + tmp.file("err") + " </dev/null & pid=$!\n" +
                       "for i in $(seq 1 3000); do [ \"$(cat " + q(metrics) + " 2>/dev/null | wc -l)\" -ge " +
                       std::to_string(lines) + " ] && break; sleep 0.01; done\n";
  for (const auto& s : signals) script += "kill -" + s + " $pid\n";
  script += "wait $pid; echo $? >" + tmp.file("rc") + "\n";
  write_text(tmp.file("run.sh"), script);
  std::system(("bash " + q(tmp.file("run.sh"))).c_str());
  Background b;
  b.exit_code = std::stoi(la::test::read_text(tmp.file("rc")));
  b.err = la::test::read_text(tmp.file("err"));
  return b;
}

std::vector<int64_t> metric_steps(const std::string& path) {
  std::vector<int64_t> steps;
  std::istringstream in(la::test::read_text(path));
  for (std::string line; std::getline(in, line);) steps.push_back(nlohmann::json::parse(line)["step"].get<int64_t>());
  return steps;
}

}  // namespace

// SIGINT / SIGTERM during finetune: a checkpoint at the next step boundary, a message saying how
// to resume, exit 128+signal, no final adapter; resuming ends byte-identical to an uninterrupted
// run, with every step in the metrics exactly once.
TEST(Signals, InterruptCheckpointsAndResumesIdentically) {
  const World& w = world();
  la::test::TempDir d;
  auto args = [&](const std::string& out, const std::string& metrics) {
    return "finetune" + mt(w) + " --data " + q(w.data) +
           " --batch-size 8 --micro-batch-size 8 --epochs 150 --adapter-len 4 --adapter-layers 2 --max-seq-len 512"
           " --threads 1 --out " +
           q(out) + " --metrics " + q(metrics);
  };
  const auto full = la::test::run_cli(args(d.file("ref.safetensors"), d.file("ref.jsonl")));
  ASSERT_EQ(full.exit_code, 0) << full.err;
  const int64_t total = static_cast<int64_t>(metric_steps(d.file("ref.jsonl")).size());
  ASSERT_EQ(total, 600);

  for (const std::string sig : {"INT", "TERM"}) {
    SCOPED_TRACE(sig);
    const std::string out = d.file(sig + ".safetensors"), metrics = d.file(sig + ".jsonl"), ckpt = out + ".ckpt";
    const Background b = interrupt_after(args(out, metrics), metrics, 5, {sig});
    ASSERT_EQ(b.exit_code, sig == "INT" ? 130 : 143) << b.err;
    EXPECT_NE(b.err.find("interrupted by SIG" + sig), std::string::npos) << b.err;
    EXPECT_NE(b.err.find("--resume " + ckpt), std::string::npos) << b.err;
    EXPECT_FALSE(fs::exists(out)) << "the final adapter was written by an interrupted run";
    ASSERT_TRUE(fs::exists(ckpt));
    const auto r = la::test::run_cli(args(out, metrics) + " --resume " + q(ckpt));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(la::read_file(out), la::read_file(d.file("ref.safetensors"))) << "resumed run differs";
    std::vector<int64_t> want(static_cast<size_t>(total));
    for (int64_t i = 0; i < total; ++i) want[static_cast<size_t>(i)] = i + 1;
    EXPECT_EQ(metric_steps(metrics), want) << "metrics lost or repeated a step";
  }
}

// Runs `args(path)` to the end in one folder, and again in another killed with SIGKILL after 20
// metrics lines, then resumed from its last periodic checkpoint: the two outputs must be the
// same bytes (the same file name in both folders: GGUF records it) and the metrics the same
// steps once each. Returns those steps.
static std::vector<int64_t> kill_resume_matches(const std::function<std::string(const std::string&)>& args,
                                                const std::string& file_name) {
  la::test::TempDir d;
  fs::create_directories(d.file("ref"));
  fs::create_directories(d.file("killed"));
  const std::string ref = d.file("ref/" + file_name), out = d.file("killed/" + file_name);
  EXPECT_EQ(la::test::run_cli(args(ref)).exit_code, 0);
  const Background b = interrupt_after(args(out), out + ".jsonl", 20, {"KILL"});
  EXPECT_EQ(b.exit_code, 137);
  EXPECT_TRUE(fs::exists(out + ".ckpt"));
  EXPECT_FALSE(fs::exists(out));
  const auto r = la::test::run_cli(args(out) + " --resume " + q(out + ".ckpt"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(out) && la::read_file(out) == la::read_file(ref)) << "the resumed run's output differs";
  EXPECT_EQ(metric_steps(out + ".jsonl"), metric_steps(ref + ".jsonl"));
  return metric_steps(ref + ".jsonl");
}

// kill -9 (no chance to save) then --resume from the last periodic checkpoint: byte-identical too.
TEST(Signals, KillThenResumeFromPeriodicCheckpoint) {
  const World& w = world();
  const auto steps = kill_resume_matches(
      [&](const std::string& out) {
        return "finetune" + mt(w) + " --data " + q(w.data) +
               " --batch-size 8 --micro-batch-size 8 --epochs 150 --adapter-len 4 --adapter-layers 2"
               " --max-seq-len 512 --threads 1 --save-every 7 --out " +
               q(out) + " --metrics " + q(out + ".jsonl");
      },
      "adapter.safetensors");
  EXPECT_EQ(steps.size(), 600u);
}

// pretrain (every parameter, a learned tokenizer) killed with SIGKILL, then resumed from its last
// periodic checkpoint: the same model, bit for bit, as a run that was never stopped.
TEST(Signals, PretrainKillThenResumeIsBitForBit) {
  la::test::TempDir d;
  std::string corpus;
  for (const auto& r : la::synthetic_instructions(200, 5)) corpus += r.instruction + " " + r.output + "\n\n";
  write_text(d.file("corpus.txt"), corpus);
  const auto steps = kill_resume_matches(
      [&](const std::string& out) {
        return "pretrain --data " + q(d.file("corpus.txt")) +
               " --vocab-size 300 --dim 32 --layers 2 --heads 4 --kv-heads 2 --seq-len 32 --batch-size 4"
               " --micro-batch-size 2 --epochs 3 --steps 120 --warmup-steps 5 --threads 1 --no-progress"
               " --save-every 7 --out " +
               q(out) + " --metrics " + q(out + ".jsonl");
      },
      "model.gguf");
  EXPECT_EQ(steps.size(), 120u);
}

// --threads far beyond the machine under an address-space limit: clamped to the cores this
// process may use (with a note), so OpenBLAS never sizes 64 per-thread buffers and spins on
// failing to map them.
TEST(Threads, ClampedUnderAnAddressSpaceLimit) {
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer reserves terabytes of shadow address space at start-up: under ulimit -v the
  // instrumented CLI cannot start at all, so this runs in the Release build only.
  GTEST_SKIP() << "AddressSanitizer cannot start under an address-space limit";
#endif
  const World& w = world();
  const auto r = la::test::run_cli_with_prefix("ulimit -v 6000000; timeout -k 2 60", gen(w) + " --threads 64");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("threads"), std::string::npos) << r.err;  // the note says it was clamped
}
