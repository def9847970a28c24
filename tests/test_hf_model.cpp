// Hugging Face LLaMA directories. stories260K.bin is rewritten here as an HF checkpoint
// (config.json + safetensors with HF names, q/k rows permuted for rotate-half RoPE, the
// SentencePiece tokenizer beside it) and must give the .bin's logits: the proof that the
// rotate-half path and the Meta/llama2.c interleaved path compute the same attention.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "la/core/cpu.h"
#include "la/core/half.h"
#include "la/formats/safetensors.h"
#include "la/io/loader.h"
#include "la/model/inference.h"
#include "la/sample/sampler.h"
#include "support/test_support.h"

namespace {

using la::test::run_cli;
using la::test::shared_data;
using la::test::shell_quote;

// The library runs here use one thread (the default thread count is exercised by the CLI golden
// run in test_llama2c).
[[maybe_unused]] const bool kOneThread = la::test::run_library_on_one_thread();

constexpr const char* kStories = "llama2c/stories260K.bin";
constexpr const char* kReference = "llama2c/stories260K_greedy_reference.json";
constexpr const char* kTokModel = "llama2c/tok512.model";

std::string data(const std::string& rel) {
  return la::test::shared_path(rel);
}

const float* f32(const la::WeightMatrix& m) {
  EXPECT_EQ(m.type, la::DType::F32);
  return static_cast<const float*>(m.data);
}

// One tensor of the HF checkpoint, still f32 (converted when written).
struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;
};

// stories260K's arrays under HF names, q_proj/k_proj rows in HF (rotate-half) order.
std::vector<Tensor> hf_tensors(const la::ModelWeights& w) {
  const la::ModelConfig& c = w.config;
  const int64_t D = c.dim, KV = c.kv_dim(), F = c.hidden_dim, V = c.vocab_size, hd = c.head_dim();
  std::vector<Tensor> out;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, const float* p) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    out.push_back({name, std::move(shape), std::vector<float>(p, p + n)});
  };
  auto add_permuted = [&](const std::string& name, const la::WeightMatrix& m, int64_t heads) {
    Tensor t{name, {m.rows, m.cols}, std::vector<float>(static_cast<size_t>(m.numel()))};
    la::permute_meta_to_hf(f32(m), t.values.data(), heads, hd, m.cols);
    out.push_back(std::move(t));
  };
  add("model.embed_tokens.weight", {V, D}, f32(w.tok_embeddings));
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const la::LayerWeights& l = w.layers[static_cast<size_t>(i)];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    add(p + "input_layernorm.weight", {D}, l.rms_att);
    add_permuted(p + "self_attn.q_proj.weight", l.wq, c.n_heads);
    add_permuted(p + "self_attn.k_proj.weight", l.wk, c.n_kv_heads);
    add(p + "self_attn.v_proj.weight", {KV, D}, f32(l.wv));
    add(p + "self_attn.o_proj.weight", {D, D}, f32(l.wo));
    add(p + "post_attention_layernorm.weight", {D}, l.rms_ffn);
    add(p + "mlp.gate_proj.weight", {F, D}, f32(l.w1));
    add(p + "mlp.down_proj.weight", {D, F}, f32(l.w2));
    add(p + "mlp.up_proj.weight", {F, D}, f32(l.w3));
  }
  add("model.norm.weight", {D}, w.rms_final);
  return out;
}

void add_tensor(la::SafetensorsWriter& wr, const Tensor& t, la::SafeDType dtype) {
  if (dtype == la::SafeDType::F32) {
    wr.add_f32(t.name, t.shape, t.values.data());
    return;
  }
  std::vector<uint16_t> h(t.values.size());
  for (size_t i = 0; i < h.size(); ++i)
    h[i] = dtype == la::SafeDType::F16 ? la::f32_to_f16(t.values[i]) : la::f32_to_bf16(t.values[i]);
  wr.add(t.name, dtype, t.shape, h.data(), h.size() * 2);
}

nlohmann::json hf_config(const la::ModelConfig& c) {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"hidden_size", c.dim},
          {"intermediate_size", c.hidden_dim},
          {"num_hidden_layers", c.n_layers},
          {"num_attention_heads", c.n_heads},
          {"num_key_value_heads", c.n_kv_heads},
          {"vocab_size", c.vocab_size},
          {"max_position_embeddings", c.max_seq_len},
          {"rms_norm_eps", 1e-5},
          {"rope_theta", 10000.0},
          {"tie_word_embeddings", true},
          {"hidden_act", "silu"},
          {"torch_dtype", "float32"}};
}

// SafetensorsWriter::write fsyncs (atomic replace); a scratch file does not need that, and an
// fsync on a busy disk can take seconds.
void write_bytes(const std::string& path, const std::string& bytes) {
  la::test::write_text(path, bytes);
}

// Writes `w` as an HF directory `dir` (created). Sharded: layers 0-2 (and the embedding) in one
// file, the rest in another, listed by model.safetensors.index.json.
void write_hf_dir(const la::ModelWeights& w, const std::string& dir, la::SafeDType dtype, bool sharded) {
  std::filesystem::create_directories(dir);
  la::test::write_text(dir + "/config.json", hf_config(w.config).dump(2));
  const auto tensors = hf_tensors(w);
  if (!sharded) {
    la::SafetensorsWriter wr;
    wr.set_metadata("format", "pt");
    for (const auto& t : tensors) add_tensor(wr, t, dtype);
    write_bytes(dir + "/model.safetensors", wr.serialize());
  } else {
    const std::string names[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
    la::SafetensorsWriter wr[2];
    nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
    for (const auto& t : tensors) {
      const bool first = t.name.starts_with("model.embed_tokens") || t.name.starts_with("model.layers.0.") ||
                         t.name.starts_with("model.layers.1.") || t.name.starts_with("model.layers.2.");
      add_tensor(wr[first ? 0 : 1], t, dtype);
      index["weight_map"][t.name] = names[first ? 0 : 1];
    }
    for (int s = 0; s < 2; ++s) write_bytes(dir + "/" + names[s], wr[s].serialize());
    la::test::write_text(dir + "/model.safetensors.index.json", index.dump(2));
  }
  if (la::test::shared_file_exists(kTokModel)) std::filesystem::copy_file(data(kTokModel), dir + "/tokenizer.model");
}

struct Trace {
  std::vector<int> tokens;                 // inputs, starting with BOS
  std::vector<std::vector<float>> logits;  // one row per input
};

// Greedy from BOS for `steps` tokens; with `forced`, feeds those inputs instead of its own picks.
Trace decode(const la::ModelWeights& w, int steps, const std::vector<int>* forced = nullptr) {
  la::InferenceModel m(w, w.config.max_seq_len);
  Trace r;
  int tok = 1;
  for (int s = 0; s < steps; ++s) {
    if (forced) tok = (*forced)[static_cast<size_t>(s)];
    r.tokens.push_back(tok);
    const float* l = m.forward(&tok, 1);
    r.logits.emplace_back(l, l + w.config.vocab_size);
    tok = la::argmax(l, w.config.vocab_size);
  }
  return r;
}

std::vector<int> greedy_ids(const Trace& r) {
  std::vector<int> ids;
  for (const auto& l : r.logits) ids.push_back(la::argmax(l.data(), static_cast<int64_t>(l.size())));
  return ids;
}

double max_abs_diff(const Trace& a, const Trace& b) {
  double m = 0;
  for (size_t s = 0; s < a.logits.size(); ++s)
    for (size_t i = 0; i < a.logits[s].size(); ++i)
      m = std::max(m, std::fabs(static_cast<double>(a.logits[s][i]) - b.logits[s][i]));
  return m;
}

class HfModel : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!la::test::shared_file_exists(kStories)) GTEST_SKIP() << "shared data not present: " << data(kStories);
    bin_ = la::load_model(data(kStories));
  }
  std::unique_ptr<la::ModelWeights> bin_;
  la::test::TempDir tmp_;
};

// ------------------------------------------------------------------------------------------------

TEST(HfPermutation, RoundTripAndLayout) {
  // Known layout: head_dim 4, Meta rows (h, 2i+c) -> HF rows (h, c*2+i).
  const float meta[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  float hf[8], back[8];
  la::permute_meta_to_hf(meta, hf, 2, 4, 1);
  const float want[8] = {0, 2, 1, 3, 4, 6, 5, 7};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(hf[i], want[i]) << i;
  la::permute_hf_to_meta(hf, back, 2, 4, 1);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(back[i], meta[i]) << i;

  // Random [heads*head_dim, cols] matrices, several shapes: the two are inverses, and the
  // forward one really moves rows (head_dim > 2).
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  for (auto [heads, hd, cols] :
       {std::tuple{8, 8, 64}, std::tuple{4, 16, 3}, std::tuple{1, 2, 5}, std::tuple{3, 6, 7}}) {
    SCOPED_TRACE(std::to_string(heads) + "x" + std::to_string(hd) + "x" + std::to_string(cols));
    std::vector<float> x(static_cast<size_t>(heads * hd * cols)), y(x.size()), z(x.size());
    for (float& v : x) v = nd(rng);
    la::permute_meta_to_hf(x.data(), y.data(), heads, hd, cols);
    la::permute_hf_to_meta(y.data(), z.data(), heads, hd, cols);
    EXPECT_EQ(std::memcmp(x.data(), z.data(), x.size() * 4), 0);
    la::permute_hf_to_meta(x.data(), y.data(), heads, hd, cols);
    la::permute_meta_to_hf(y.data(), z.data(), heads, hd, cols);
    EXPECT_EQ(std::memcmp(x.data(), z.data(), x.size() * 4), 0);
    if (hd > 2) {
      EXPECT_NE(std::memcmp(x.data(), y.data(), x.size() * 4), 0);
    }
    // HF row h*hd + c*hd/2 + i holds Meta row h*hd + 2i + c.
    la::permute_meta_to_hf(x.data(), y.data(), heads, hd, cols);
    for (int h = 0; h < heads; ++h)
      for (int c = 0; c < 2; ++c)
        for (int i = 0; i < hd / 2; ++i)
          EXPECT_EQ(y[static_cast<size_t>((h * hd + c * hd / 2 + i) * cols)],
                    x[static_cast<size_t>((h * hd + 2 * i + c) * cols)]);
  }
}

// Both layouts give bit-identical logits: the q/k rows hold the same values in another order,
// RoPE rotates the same pairs, and the attention kernel sums q.k pair by pair in the same order
// for both layouts (AttentionDims::rope_half). The issue asks for 1e-5; we hold exact equality.
// A wrong q/k layout is off by ~18 (see the control below).
constexpr double kF32Tolerance = 0.0;

TEST_F(HfModel, F32LogitsMatchBinAtEveryPosition) {
  const std::string dir = tmp_.file("stories260K-hf");
  write_hf_dir(*bin_, dir, la::SafeDType::F32, false);
  auto hf = la::load_model(dir);
  EXPECT_EQ(hf->format, "hf-safetensors");
  const la::ModelConfig& c = hf->config;
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.hidden_dim, 172);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.max_seq_len, 512);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope_theta, 10000.0f);
  EXPECT_TRUE(c.tied_classifier);
  EXPECT_EQ(hf->output.data, hf->tok_embeddings.data);

  const Trace a = decode(*bin_, 64);
  const Trace b = decode(*hf, 64, &a.tokens);  // same inputs at every position
  EXPECT_EQ(greedy_ids(a), greedy_ids(b));
  ASSERT_EQ(b.logits.size(), 64u);
  for (size_t s = 0; s < a.logits.size(); ++s)
    for (size_t i = 0; i < a.logits[s].size(); ++i)
      ASSERT_NEAR(a.logits[s][i], b.logits[s][i], kF32Tolerance) << "position " << s << " token " << i;

  // A free-running greedy decode on the HF model picks the same 64 tokens.
  EXPECT_EQ(decode(*hf, 64).tokens, a.tokens);

  // Control: without the q/k permutation (HF rows read as if they were Meta rows, i.e. the .bin
  // loaded with rotate-half RoPE) the logits are clearly different, so the test above can fail.
  la::ModelWeights wrong;
  wrong.config = bin_->config;
  wrong.config.rope_style = la::RopeStyle::Half;
  wrong.tok_embeddings = bin_->tok_embeddings;
  wrong.output = bin_->output;
  wrong.layers = bin_->layers;
  wrong.rms_final = bin_->rms_final;
  const Trace w = decode(wrong, 64, &a.tokens);
  EXPECT_GT(max_abs_diff(a, w), 1e-2);
}

TEST_F(HfModel, CliFindsTokenizerInDirectoryAndMatchesGolden) {
  if (!la::test::shared_file_exists(kReference) || !la::test::shared_file_exists(kTokModel))
    GTEST_SKIP() << "shared data not present";
  const std::string dir = tmp_.file("stories260K-hf");
  write_hf_dir(*bin_, dir, la::SafeDType::F32, false);
  auto r =
      run_cli("generate --model " + shell_quote(dir) + " --prompt '' --temperature 0 --max-new-tokens 200 --threads 1");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const auto ref = nlohmann::json::parse(la::test::read_text(data(kReference)));
  EXPECT_EQ(r.out, ref["decoded_text"].get<std::string>() + "\n");

  auto info = run_cli("info --model " + shell_quote(dir));
  EXPECT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("hf-safetensors"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("rotate-half"), std::string::npos) << info.out;
}

TEST_F(HfModel, ShardedGivesIdenticalLogits) {
  const std::string one = tmp_.file("single"), two = tmp_.file("sharded");
  write_hf_dir(*bin_, one, la::SafeDType::F32, false);
  write_hf_dir(*bin_, two, la::SafeDType::F32, true);
  ASSERT_FALSE(std::filesystem::exists(two + "/model.safetensors"));
  auto a = la::load_model(one);
  auto b = la::load_model(two);
  ASSERT_EQ(b->files.size(), 2u);  // both shards mapped
  // Tensors come from the right shard.
  auto inside = [](const la::MappedFile& f, const void* p) {
    auto* q = static_cast<const uint8_t*>(p);
    return q >= f.data() && q < f.data() + f.size();
  };
  EXPECT_TRUE(inside(*b->files[0], b->tok_embeddings.data) || inside(*b->files[1], b->tok_embeddings.data));
  const la::MappedFile& first = inside(*b->files[0], b->tok_embeddings.data) ? *b->files[0] : *b->files[1];
  const la::MappedFile& second = &first == b->files[0].get() ? *b->files[1] : *b->files[0];
  EXPECT_TRUE(inside(first, b->layers[2].w3.data));
  EXPECT_TRUE(inside(second, b->layers[3].wq.data));
  EXPECT_TRUE(inside(second, b->rms_final));

  const Trace ra = decode(*a, 64);
  const Trace rb = decode(*b, 64, &ra.tokens);
  for (size_t s = 0; s < ra.logits.size(); ++s)
    ASSERT_EQ(std::memcmp(ra.logits[s].data(), rb.logits[s].data(), ra.logits[s].size() * 4), 0) << "position " << s;
}

// Half-precision checkpoints: the weights are rounded (f16: 11-bit significand, bf16: 8-bit), so
// logits move by roughly |logit| * 2^-11 resp. 2^-8, accumulated over the layers. Measured on
// this model over 64 positions x 512 logits: f16 max |diff| 0.0166, bf16 0.118 (above the 5e-2
// one might hope for: bf16 keeps only 8 significant bits and logits reach ~20). The bounds leave
// about 2x room. Greedy decoding from BOS measured: f16 agrees with the f32 .bin on all 200
// tokens, bf16 on the first 186; both must agree on the first 20.
struct HalfCase {
  la::SafeDType dtype;
  la::DType stored;
  double tolerance;
  int agree;  // greedy tokens that must agree from BOS
};

class HfHalf : public HfModel, public ::testing::WithParamInterface<HalfCase> {};

TEST_P(HfHalf, LoadsAndStaysClose) {
  const HalfCase hc = GetParam();
  const std::string dir = tmp_.file("half");
  write_hf_dir(*bin_, dir, hc.dtype, false);
  auto hf = la::load_model(dir);
  EXPECT_EQ(hf->layers[0].wq.type, hc.stored);  // used in place, not converted to f32
  EXPECT_EQ(hf->tok_embeddings.type, hc.stored);
  // Norm vectors are converted to f32 copies, the rounded values.
  const uint16_t h0 = hc.dtype == la::SafeDType::F16 ? la::f32_to_f16(bin_->layers[0].rms_att[0])
                                                     : la::f32_to_bf16(bin_->layers[0].rms_att[0]);
  EXPECT_EQ(hf->layers[0].rms_att[0], hc.dtype == la::SafeDType::F16 ? la::f16_to_f32(h0) : la::bf16_to_f32(h0));

  const Trace a = decode(*bin_, 64);
  const Trace b = decode(*hf, 64, &a.tokens);
  const double d = max_abs_diff(a, b);
  EXPECT_LT(d, hc.tolerance);
  EXPECT_GT(d, 0.0);  // it really is a rounded model
  const Trace free_run = decode(*hf, hc.agree);
  EXPECT_EQ(free_run.tokens, std::vector<int>(a.tokens.begin(), a.tokens.begin() + hc.agree));
}

INSTANTIATE_TEST_SUITE_P(Types, HfHalf,
                         ::testing::Values(HalfCase{la::SafeDType::F16, la::DType::F16, 4e-2, 20},
                                           HalfCase{la::SafeDType::BF16, la::DType::BF16, 2.5e-1, 20}),
                         [](const auto& info) { return std::string(la::safe_dtype_name(info.param.dtype)); });

}  // namespace
