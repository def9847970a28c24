// A Llama-3-family model end to end (issue 15): a random Llama-3-shaped model (grouped-query
// attention, rope_theta 500000, tied embeddings, the real 128256-piece vocabulary) in Hugging Face
// layout with Llama-3's own tokenizer.json and chat template, then
//   finetune an adapter on it -> generate with it -> convert it to GGUF (vocabulary and template
//   embedded) -> the same greedy tokens from the GGUF -> chat under the model's template.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "la/core/half.h"
#include "la/formats/gguf.h"
#include "la/formats/safetensors.h"
#include "support/test_support.h"

namespace {

using json = nlohmann::json;
using la::test::read_text;
using la::test::run_cli;
using la::test::run_cli_with_input;
using la::test::shared_path;
using la::test::shell_quote;
using la::test::TempDir;
using la::test::write_text;

constexpr const char* kTokenizer = "tokenizer/llama3/tokenizer.json";
constexpr const char* kTemplate = "gguf/templates/meta-llama-Llama-3.1-8B-Instruct.jinja";
constexpr const char* kAlpaca = "alpaca/alpaca_data_1k_subset.json";
constexpr int64_t kVocab = 128256, kDim = 64, kHidden = 160, kLayers = 2, kHeads = 4, kKvHeads = 2;

// Random bf16 weights under Hugging Face names (q/k rows in their rotate-half order: random
// numbers are random in either order).
void write_model(const std::string& dir) {
  std::filesystem::create_directories(dir);
  json cfg = {{"architectures", {"LlamaForCausalLM"}},
              {"model_type", "llama"},
              {"hidden_size", kDim},
              {"intermediate_size", kHidden},
              {"num_hidden_layers", kLayers},
              {"num_attention_heads", kHeads},
              {"num_key_value_heads", kKvHeads},
              {"vocab_size", kVocab},
              {"max_position_embeddings", 256},
              {"rms_norm_eps", 1e-5},
              {"rope_theta", 500000.0},
              {"tie_word_embeddings", true},
              {"bos_token_id", 128000},
              {"eos_token_id", 128009},
              {"torch_dtype", "bfloat16"}};
  write_text(dir + "/config.json", cfg.dump(2));
  std::mt19937 rng(3);
  la::SafetensorsWriter w;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float scale, float offset = 0.0f) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<uint16_t> v(static_cast<size_t>(n));
    for (auto& x : v) x = la::f32_to_bf16(offset + dist(rng));
    w.add(name, la::SafeDType::BF16, shape, v.data(), v.size() * 2);
  };
  const int64_t hd = kDim / kHeads;
  add("model.embed_tokens.weight", {kVocab, kDim}, 0.5f);
  for (int64_t l = 0; l < kLayers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "self_attn.q_proj.weight", {kDim, kDim}, 0.15f);
    add(p + "self_attn.k_proj.weight", {kKvHeads * hd, kDim}, 0.15f);
    add(p + "self_attn.v_proj.weight", {kKvHeads * hd, kDim}, 0.15f);
    add(p + "self_attn.o_proj.weight", {kDim, kDim}, 0.15f);
    add(p + "mlp.gate_proj.weight", {kHidden, kDim}, 0.15f);
    add(p + "mlp.up_proj.weight", {kHidden, kDim}, 0.15f);
    add(p + "mlp.down_proj.weight", {kDim, kHidden}, 0.1f);
    add(p + "input_layernorm.weight", {kDim}, 0.05f, 1.0f);
    add(p + "post_attention_layernorm.weight", {kDim}, 0.05f, 1.0f);
  }
  add("model.norm.weight", {kDim}, 0.05f, 1.0f);
  w.write(dir + "/model.safetensors");
  std::filesystem::copy_file(shared_path(kTokenizer), dir + "/tokenizer.json");
  json tc = {{"bos_token", "<|begin_of_text|>"},
             {"eos_token", "<|eot_id|>"},
             {"chat_template", read_text(shared_path(kTemplate))}};
  write_text(dir + "/tokenizer_config.json", tc.dump(2));
}

std::string greedy(const std::string& model, const std::string& adapter) {
  const auto r = run_cli("generate --model " + shell_quote(model) + " --adapter " + shell_quote(adapter) +
                         " --prompt " + shell_quote("The llama said") + " -n 12 --temperature 0 --quiet");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.out;
}

TEST(Llama3, FinetuneGenerateConvertChat) {
  REQUIRE_SHARED_DATA(kTokenizer);
  REQUIRE_SHARED_DATA(kTemplate);
  REQUIRE_SHARED_DATA(kAlpaca);
  TempDir tmp;
  const std::string hf = tmp.file("llama3-random");
  write_model(hf);

  // The tokenizer is found in the directory and is Llama-3's.
  const auto ids = run_cli("tokenize --model " + shell_quote(hf) + " --text " + shell_quote("Hello world") + " --json");
  ASSERT_EQ(ids.exit_code, 0) << ids.err;
  EXPECT_EQ(ids.out, "{\"ids\":[9906,1917]}\n");

  // A few steps of adapter training on Alpaca records.
  json all = json::parse(read_text(shared_path(kAlpaca)));
  json some = json::array();
  for (size_t i = 0; i < 16; ++i) some.push_back(all[i]);
  write_text(tmp.file("train.json"), some.dump());
  const std::string adapter = tmp.file("adapter.safetensors");
  const auto ft = run_cli(
      "finetune --model " + shell_quote(hf) + " --data " + shell_quote(tmp.file("train.json")) + " --out " +
      shell_quote(adapter) +
      " --adapter-len 4 --adapter-layers 2 --batch-size 4 --micro-batch-size 4 --steps 4 --lr 5e-2 --warmup-epochs 0"
      " --max-seq-len 96 --no-progress --metrics " +
      shell_quote(tmp.file("m.jsonl")));
  ASSERT_EQ(ft.exit_code, 0) << ft.err;
  const std::string metrics = read_text(tmp.file("m.jsonl"));
  EXPECT_NE(metrics.find("\"step\":4"), std::string::npos) << metrics;

  // Greedy text from the directory, then from its GGUF (bf16 matrices: the same numbers).
  const std::string from_hf = greedy(hf, adapter);
  EXPECT_NE(from_hf.find("The llama said"), std::string::npos) << from_hf;
  EXPECT_GT(from_hf.size(), std::string("The llama said").size());
  const std::string gguf = tmp.file("llama3.gguf");
  const auto cv = run_cli("convert --model " + shell_quote(hf) + " --type bf16 -o " + shell_quote(gguf));
  ASSERT_EQ(cv.exit_code, 0) << cv.err;
  {
    const la::GgufFile f = la::GgufFile::open(gguf);
    EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "gpt2");
    EXPECT_EQ(f.get_string("tokenizer.ggml.pre"), "llama-bpe");
    EXPECT_EQ(f.get_string("tokenizer.chat_template"), read_text(shared_path(kTemplate)));
  }
  EXPECT_EQ(greedy(gguf, adapter), from_hf);

  // Chat under the model's own template (from the GGUF): two turns, replies end at 8 tokens. (With
  // the adapter, its recorded template -- Alpaca, what it was trained with -- would come first.)
  const auto chat =
      run_cli_with_input("chat --model " + shell_quote(gguf) + " -n 8 --temperature 0", "Hi there\nAnd again\n");
  ASSERT_EQ(chat.exit_code, 0) << chat.err;
  EXPECT_NE(chat.err.find("template"), std::string::npos) << chat.err;
  EXPECT_EQ(chat.err.find("template alpaca"), std::string::npos) << "the model's template was not used: " << chat.err;
}

}  // namespace
