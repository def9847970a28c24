// Meta base models (SPEC §10): a directory with params.json + consolidated.NN.pth.
//   - stories260K written in Meta's layout by our PthWriter (no torch needed): load_model gives
//     llama2.c's 200 golden greedy tokens, through the library and the CLI (tokenizer.model
//     found beside the folder, as Meta's downloads keep it);
//   - 2 and 4 model-parallel shards, split as Meta's fairscale layers split them, give exactly
//     the logits of one shard; bf16 ones run, close to f32;
//   - one shard is used zero-copy (every weight inside the mapping; RSS grows by about the
//     file size); shards are joined once and their files let go;
//   - what a broken directory gets: one line naming the file and the problem;
//   - the same with files written by real torch.save (tests/reference/llama2c_to_meta.py), when
//     python3 imports torch.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "la/core/error.h"
#include "la/core/half.h"
#include "la/core/memory.h"
#include "la/formats/pth.h"
#include "la/io/loader.h"
#include "la/model/inference.h"
#include "la/sample/sampler.h"
#include "la/tokenizer/tokenizer.h"
#include "support/test_support.h"

namespace la {
namespace {

namespace fs = std::filesystem;
using test::shell_quote;
using test::TempDir;

[[maybe_unused]] const bool kOneThread = test::run_library_on_one_thread();

constexpr const char* kStories = "llama2c/stories260K.bin";
constexpr const char* kReference = "llama2c/stories260K_greedy_reference.json";
constexpr const char* kTokModel = "llama2c/tok512.model";

nlohmann::json reference() {
  return nlohmann::json::parse(test::read_text(test::shared_path(kReference)));
}

// ------------------------------------------------------------------------------------------------
// Writing Meta directories with our PthWriter. The names and split axes are written out here by
// hand (not taken from io/tensor_names.h), so that a mistake in the loader's table shows.

enum Split { kWhole, kRows, kCols };

struct MetaTensor {
  std::string name;
  Split split;
  int64_t rows, cols;  // a norm: rows = 1 (written 1-D)
  const float* data;
};

std::vector<MetaTensor> meta_tensors(const ModelWeights& w) {
  const ModelConfig& c = w.config;
  auto f32 = [](const WeightMatrix& m) {
    EXPECT_EQ(m.type, DType::F32);
    return static_cast<const float*>(m.data);
  };
  std::vector<MetaTensor> t;
  t.push_back({"tok_embeddings.weight", kCols, c.vocab_size, c.dim, f32(w.tok_embeddings)});
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const LayerWeights& l = w.layers[static_cast<size_t>(i)];
    const std::string p = "layers." + std::to_string(i) + ".";
    t.push_back({p + "attention_norm.weight", kWhole, 1, c.dim, l.rms_att});
    t.push_back({p + "attention.wq.weight", kRows, l.wq.rows, l.wq.cols, f32(l.wq)});
    t.push_back({p + "attention.wk.weight", kRows, l.wk.rows, l.wk.cols, f32(l.wk)});
    t.push_back({p + "attention.wv.weight", kRows, l.wv.rows, l.wv.cols, f32(l.wv)});
    t.push_back({p + "attention.wo.weight", kCols, l.wo.rows, l.wo.cols, f32(l.wo)});
    t.push_back({p + "ffn_norm.weight", kWhole, 1, c.dim, l.rms_ffn});
    t.push_back({p + "feed_forward.w1.weight", kRows, l.w1.rows, l.w1.cols, f32(l.w1)});
    t.push_back({p + "feed_forward.w2.weight", kCols, l.w2.rows, l.w2.cols, f32(l.w2)});
    t.push_back({p + "feed_forward.w3.weight", kRows, l.w3.rows, l.w3.cols, f32(l.w3)});
  }
  t.push_back({"norm.weight", kWhole, 1, c.dim, w.rms_final});
  t.push_back({"output.weight", kRows, c.vocab_size, c.dim, f32(w.output)});
  return t;
}

nlohmann::json params_of(const ModelConfig& c) {
  nlohmann::json p = {{"dim", c.dim},
                      {"n_layers", c.n_layers},
                      {"n_heads", c.n_heads},
                      {"n_kv_heads", c.n_kv_heads},
                      {"vocab_size", c.vocab_size},
                      {"norm_eps", c.norm_eps},
                      {"max_seq_len", c.max_seq_len}};
  for (int64_t m : {256, 128, 64, 32, 16, 8, 4, 2, 1}) {  // Meta's FFN width rule, if one fits
    const int64_t h = 2 * 4 * c.dim / 3;
    if (m * ((h + m - 1) / m) == c.hidden_dim) {
      p["multiple_of"] = m;
      break;
    }
  }
  return p;
}

// Writes params.json and `shards` consolidated.NN.pth; `edit(k, name, values)` may change a
// shard's piece of a tensor before it is written (and return false to leave it out).
void write_meta_dir(const std::string& dir, const nlohmann::json& params, const std::vector<MetaTensor>& tensors,
                    int shards, DType dtype,
                    const std::function<bool(int, const std::string&, std::vector<float>&)>& edit = nullptr) {
  fs::create_directories(dir);
  test::write_text(dir + "/params.json", params.dump());
  for (int k = 0; k < shards; ++k) {
    std::deque<std::vector<float>> pieces;
    std::deque<std::vector<uint16_t>> halves;
    PthWriter w;
    for (const MetaTensor& t : tensors) {
      const int64_t r0 = t.split == kRows ? t.rows * k / shards : 0,
                    r1 = t.split == kRows ? t.rows * (k + 1) / shards : t.rows;
      const int64_t c0 = t.split == kCols ? t.cols * k / shards : 0,
                    c1 = t.split == kCols ? t.cols * (k + 1) / shards : t.cols;
      std::vector<float>& v = pieces.emplace_back();
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) v.push_back(t.data[r * t.cols + c]);
      if (edit && !edit(k, t.name, v)) continue;
      std::vector<int64_t> shape =
          t.rows == 1 && t.split == kWhole ? std::vector<int64_t>{c1 - c0} : std::vector<int64_t>{r1 - r0, c1 - c0};
      if (dtype == DType::F32) {
        w.add(t.name, DType::F32, shape, v.data());
      } else {
        std::vector<uint16_t>& h = halves.emplace_back();
        for (float x : v) h.push_back(dtype == DType::BF16 ? f32_to_bf16(x) : f32_to_f16(x));
        w.add(t.name, dtype, shape, h.data());
      }
    }
    char name[32];
    std::snprintf(name, sizeof name, "/consolidated.%02d.pth", k);
    w.write(dir + name);
  }
}

// Logits after each of `inputs`, fed one at a time.
std::vector<std::vector<float>> logits_for(const ModelWeights& w, const std::vector<int>& inputs) {
  InferenceModel m(w, w.config.max_seq_len);
  std::vector<std::vector<float>> out;
  for (int t : inputs) {
    const float* l = m.forward(&t, 1);
    out.emplace_back(l, l + w.config.vocab_size);
  }
  return out;
}

std::vector<int> greedy_ids(const ModelWeights& w, int steps) {
  InferenceModel m(w, w.config.max_seq_len);
  std::vector<int> ids;
  int tok = 1;  // BOS
  for (int s = 0; s < steps; ++s) {
    tok = argmax(m.forward(&tok, 1), w.config.vocab_size);
    ids.push_back(tok);
  }
  return ids;
}

const std::vector<int> kProbe = {1, 403, 407, 261, 290, 1, 500, 17};

// Every logit of `b` within tol * (largest |logit| of `a`) of `a`'s.
void expect_close(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b, double tol) {
  ASSERT_EQ(a.size(), b.size());
  double scale = 0, worst = 0;
  for (size_t p = 0; p < a.size(); ++p)
    for (size_t i = 0; i < a[p].size(); ++i) {
      scale = std::max(scale, std::fabs(static_cast<double>(a[p][i])));
      worst = std::max(worst, std::fabs(static_cast<double>(a[p][i]) - b[p][i]));
    }
  EXPECT_LE(worst, tol * scale) << "largest difference " << worst << " of logits up to " << scale;
}

bool inside(const MappedFile& f, const void* p, size_t n) {
  const auto* q = static_cast<const uint8_t*>(p);
  return q >= f.data() && q + n <= f.data() + f.size();
}

// Every weight of a one-shard model lies in its one mapping; nothing was copied.
void expect_all_mapped(const ModelWeights& m) {
  ASSERT_EQ(m.files.size(), 1u);
  const MappedFile& f = *m.files[0];
  const size_t D = static_cast<size_t>(m.config.dim) * 4;
  EXPECT_TRUE(inside(f, m.tok_embeddings.data, m.tok_embeddings.bytes()));
  EXPECT_TRUE(inside(f, m.output.data, m.output.bytes()));
  EXPECT_TRUE(inside(f, m.rms_final, D));
  for (const LayerWeights& l : m.layers) {
    for (const WeightMatrix* w : layer_matrices(l)) EXPECT_TRUE(inside(f, w->data, w->bytes()));
    EXPECT_TRUE(inside(f, l.rms_att, D));
    EXPECT_TRUE(inside(f, l.rms_ffn, D));
  }
  EXPECT_TRUE(m.owned.empty());
  EXPECT_TRUE(m.assembled.empty());
}

void expect_same_config(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.dim, b.dim);
  EXPECT_EQ(a.hidden_dim, b.hidden_dim);
  EXPECT_EQ(a.n_layers, b.n_layers);
  EXPECT_EQ(a.n_heads, b.n_heads);
  EXPECT_EQ(a.n_kv_heads, b.n_kv_heads);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.max_seq_len, b.max_seq_len);
  EXPECT_EQ(b.rope_style, RopeStyle::Interleaved);
}

// stories260K in Meta's layout, written once per test binary: f32 in 1, 2 and 4 shards, bf16 in
// 1 and 2; tok512.model as tokenizer.model beside the folders.
std::string own_meta_dirs() {
  return test::shared_fixture_dir("meta260k_own", [](const std::string& dir) {
    auto w = load_model(test::shared_path(kStories));
    const auto tensors = meta_tensors(*w);
    const auto params = params_of(w->config);
    write_meta_dir(dir + "/f32", params, tensors, 1, DType::F32);
    write_meta_dir(dir + "/f32x2", params, tensors, 2, DType::F32);
    write_meta_dir(dir + "/f32x4", params, tensors, 4, DType::F32);
    write_meta_dir(dir + "/bf16", params, tensors, 1, DType::BF16);
    write_meta_dir(dir + "/bf16x2", params, tensors, 2, DType::BF16);
    fs::copy_file(test::shared_path(kTokModel), dir + "/tokenizer.model");
  });
}

#define REQUIRE_STORIES()            \
  do {                               \
    REQUIRE_SHARED_DATA(kStories);   \
    REQUIRE_SHARED_DATA(kReference); \
    REQUIRE_SHARED_DATA(kTokModel);  \
  } while (0)

TEST(MetaModel, OwnWriterGivesTheGoldenGreedyTokens) {
  REQUIRE_STORIES();
  const std::string dir = own_meta_dirs() + "/f32";
  auto llama2c = load_model(test::shared_path(kStories));
  auto m = load_model(dir);
  EXPECT_EQ(m->format, "meta-pth");
  expect_same_config(llama2c->config, m->config);
  EXPECT_FALSE(m->config.tied_classifier);
  EXPECT_EQ(greedy_ids(*m, 200), reference()["generated_ids"].get<std::vector<int>>());
  EXPECT_EQ(logits_for(*m, kProbe), logits_for(*llama2c, kProbe));
}

TEST(MetaModel, CliGeneratesTheGoldenTextWithTheTokenizerBesideTheFolder) {
  REQUIRE_STORIES();
  const std::string dir = own_meta_dirs() + "/f32";
  const auto r = test::run_cli("generate --model " + shell_quote(dir) +
                               " --prompt '' --temperature 0 --max-new-tokens 200 --threads 1");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, reference()["decoded_text"].get<std::string>() + "\n");
}

TEST(MetaModel, ShardsJoinToTheSameModel) {
  REQUIRE_STORIES();
  const std::string root = own_meta_dirs();
  auto one = load_model(root + "/f32");
  const auto expected = logits_for(*one, kProbe);
  for (const char* sharded : {"/f32x2", "/f32x4"}) {
    SCOPED_TRACE(sharded);
    auto m = load_model(root + sharded);
    expect_same_config(one->config, m->config);
    EXPECT_TRUE(m->files.empty());  // joined into memory; the shards' mappings are gone
    EXPECT_EQ(m->assembled.size(), 2u + 7u * m->layers.size());
    EXPECT_EQ(logits_for(*m, kProbe), expected);
  }
}

TEST(MetaModel, Bf16RunsCloseToF32) {
  REQUIRE_STORIES();
  const std::string root = own_meta_dirs();
  auto f32 = load_model(root + "/f32");
  auto bf16 = load_model(root + "/bf16");
  EXPECT_EQ(bf16->layers[0].wq.type, DType::BF16);
  EXPECT_EQ(bf16->tok_embeddings.type, DType::BF16);
  ASSERT_EQ(bf16->files.size(), 1u);
  EXPECT_TRUE(inside(*bf16->files[0], bf16->layers[2].w2.data, bf16->layers[2].w2.bytes()));
  const auto logits = logits_for(*bf16, kProbe);
  expect_close(logits_for(*f32, kProbe), logits, 0.02);
  auto bf16x2 = load_model(root + "/bf16x2");
  EXPECT_EQ(bf16x2->layers[0].wo.type, DType::BF16);
  EXPECT_EQ(logits_for(*bf16x2, kProbe), logits);
}

TEST(MetaModel, OneShardIsUsedInPlace) {
  REQUIRE_STORIES();
  auto m = load_model(own_meta_dirs() + "/f32");
  expect_all_mapped(*m);
}

// A checkpoint may hold views (torch.save keeps a transpose a transpose): those weights are
// copied into row-major order at load, the rest stay mapped, and the model is the same.
TEST(MetaModel, StridedTensorsAreGathered) {
  REQUIRE_STORIES();
  TempDir dir;
  auto w = load_model(test::shared_path(kStories));
  const ModelConfig& c = w->config;
  const auto tensors = meta_tensors(*w);
  // layers.1's wo stored as the transpose of a [cols, rows] storage; layers.2's ffn_norm as every
  // other value of a storage twice its length.
  const WeightMatrix& wo = w->layers[1].wo;
  std::vector<float> wo_t(static_cast<size_t>(wo.numel())), norm2(static_cast<size_t>(2 * c.dim), -9.0f);
  for (int64_t r = 0; r < wo.rows; ++r)
    for (int64_t k = 0; k < wo.cols; ++k)
      wo_t[static_cast<size_t>(k * wo.rows + r)] = static_cast<const float*>(wo.data)[r * wo.cols + k];
  for (int64_t i = 0; i < c.dim; ++i) norm2[static_cast<size_t>(2 * i)] = w->layers[2].rms_ffn[i];
  PthWriter wr;
  for (const MetaTensor& t : tensors) {
    if (t.name == "layers.1.attention.wo.weight") {
      wr.add("wo_storage", DType::F32, {wo.cols, wo.rows}, wo_t.data());
      wr.add_view(t.name, "wo_storage", 0, {wo.rows, wo.cols}, {1, wo.rows});
    } else if (t.name == "layers.2.ffn_norm.weight") {
      wr.add("norm_storage", DType::F32, {2 * c.dim}, norm2.data());
      wr.add_view(t.name, "norm_storage", 0, {c.dim}, {2});
    } else {
      wr.add(t.name, DType::F32,
             t.split == kWhole ? std::vector<int64_t>{t.cols} : std::vector<int64_t>{t.rows, t.cols}, t.data);
    }
  }
  fs::create_directories(dir.file("m"));
  test::write_text(dir.file("m/params.json"), params_of(c).dump());
  wr.write(dir.file("m/consolidated.00.pth"));
  auto m = load_model(dir.file("m"));
  EXPECT_EQ(m->assembled.size(), 1u);  // wo, in row-major order
  EXPECT_EQ(m->owned.size(), 1u);      // the strided norm
  EXPECT_FALSE(inside(*m->files[0], m->layers[1].wo.data, m->layers[1].wo.bytes()));
  EXPECT_TRUE(inside(*m->files[0], m->layers[1].wq.data, m->layers[1].wq.bytes()));
  EXPECT_EQ(logits_for(*m, kProbe), logits_for(*w, kProbe));
}

// A model large enough for resident memory to tell a copy from none: ~48 MB of f32 weights.
TEST(MetaModel, ResidentMemoryGrowsByAboutTheFileSize) {
  TempDir dir;
  const ModelConfig c = test::config(512, 1376, 4, 8, 8, 2048, 256);
  std::mt19937 rng(5);
  std::deque<std::vector<float>> data;
  auto random = [&](int64_t n) { return data.emplace_back(test::random_vec(rng, n, -0.05f, 0.05f)).data(); };
  std::vector<MetaTensor> tensors = {
      {"tok_embeddings.weight", kCols, c.vocab_size, c.dim, random(c.vocab_size * c.dim)}};
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    tensors.push_back({p + "attention_norm.weight", kWhole, 1, c.dim, random(c.dim)});
    for (const char* n : {"attention.wq", "attention.wk", "attention.wv"})
      tensors.push_back({p + n + ".weight", kRows, c.dim, c.dim, random(c.dim * c.dim)});
    tensors.push_back({p + "attention.wo.weight", kCols, c.dim, c.dim, random(c.dim * c.dim)});
    tensors.push_back({p + "ffn_norm.weight", kWhole, 1, c.dim, random(c.dim)});
    tensors.push_back({p + "feed_forward.w1.weight", kRows, c.hidden_dim, c.dim, random(c.hidden_dim * c.dim)});
    tensors.push_back({p + "feed_forward.w2.weight", kCols, c.dim, c.hidden_dim, random(c.hidden_dim * c.dim)});
    tensors.push_back({p + "feed_forward.w3.weight", kRows, c.hidden_dim, c.dim, random(c.hidden_dim * c.dim)});
  }
  tensors.push_back({"norm.weight", kWhole, 1, c.dim, random(c.dim)});
  tensors.push_back({"output.weight", kRows, c.vocab_size, c.dim, random(c.vocab_size * c.dim)});
  const auto params = params_of(c);
  ASSERT_EQ(params.value("multiple_of", 0), 32);
  write_meta_dir(dir.file("one"), params, tensors, 1, DType::F32);
  write_meta_dir(dir.file("two"), params, tensors, 2, DType::F32);
  data.clear();
  for (const char* sub : {"one", "two"}) {
    SCOPED_TRACE(sub);
    size_t file_bytes = 0;
    for (const auto& e : fs::directory_iterator(dir.file(sub))) file_bytes += fs::file_size(e.path());
    const int64_t rss0 = static_cast<int64_t>(current_rss_bytes());
    auto m = load_model(dir.file(sub));  // checks every weight is finite: every page is read
    const int64_t grew = static_cast<int64_t>(current_rss_bytes()) - rss0;
    EXPECT_LT(grew, static_cast<int64_t>(file_bytes + file_bytes / 10 + (4 << 20)))
        << "RSS grew by " << grew << " bytes loading " << file_bytes << " bytes of checkpoint";
    if (std::string(sub) == "one") {
      EXPECT_GT(grew, static_cast<int64_t>(file_bytes / 2));  // the measurement sees the mapped weights at all
      expect_all_mapped(*m);
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Broken directories

class MetaModelErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!test::shared_file_exists(kStories)) GTEST_SKIP() << "shared data not present";
    w_ = load_model(test::shared_path(kStories));
    tensors_ = meta_tensors(*w_);
    params_ = params_of(w_->config);
  }
  std::string write(const nlohmann::json& params, int shards = 1,
                    const std::function<bool(int, const std::string&, std::vector<float>&)>& edit = nullptr) {
    const std::string d = dir_.file("m" + std::to_string(n_++));
    write_meta_dir(d, params, tensors_, shards, DType::F32, edit);
    return d;
  }
  void expect_load_error(const std::string& dir, const std::string& path, std::initializer_list<std::string> needles) {
    test::expect_error([&] { load_model(dir); }, path, needles);
  }
  TempDir dir_;
  int n_ = 0;
  std::unique_ptr<ModelWeights> w_;
  std::vector<MetaTensor> tensors_;
  nlohmann::json params_;
};

TEST_F(MetaModelErrors, ParamsThatDoNotFitTheWeights) {
  auto p = params_;
  p["multiple_of"] = 256;
  std::string d = write(p);
  expect_load_error(d, d + "/params.json", {"feed_forward.w1.weight has 172 rows", "multiple_of 256", "give 256"});
  p = params_;
  p["vocab_size"] = 32000;
  d = write(p);
  expect_load_error(d, d + "/params.json", {"vocab_size is 32000", "512 rows"});
  p = params_;
  p.erase("multiple_of");
  p["dim"] = 32;
  d = write(p);
  expect_load_error(d, d + "/consolidated.00.pth", {"tok_embeddings.weight", "[512, 64]", "needs [512, 32]"});
  p = params_;
  p["n_layers"] = 4;
  d = write(p);
  expect_load_error(d, d + "/params.json", {"more than the 4 layers"});
  p = params_;
  p["use_scaled_rope"] = true;
  d = write(p);
  expect_load_error(d, d + "/params.json", {"use_scaled_rope"});
  p = params_;
  p["dim"] = "64";
  d = write(p);
  expect_load_error(d, d + "/params.json", {"'dim' is not an integer"});
}

TEST_F(MetaModelErrors, MissingAndDisagreeingShards) {
  std::string d = write(params_, 3);
  fs::remove(d + "/consolidated.01.pth");
  expect_load_error(d, d, {"shard 1 is missing", "consolidated.01.pth"});
  d = write(params_, 2, [](int k, const std::string& name, std::vector<float>& v) {
    if (k == 1 && name == "layers.3.ffn_norm.weight") v[7] += 1.0f;
    return true;
  });
  expect_load_error(d, d + "/consolidated.01.pth", {"layers.3.ffn_norm.weight", "differs"});
  d = write(params_, 1, [](int, const std::string& name, std::vector<float>&) {
    return name != "layers.4.feed_forward.w2.weight";
  });
  expect_load_error(d, d + "/consolidated.00.pth", {"missing tensor 'layers.4.feed_forward.w2.weight'"});
  d = dir_.file("empty");
  fs::create_directories(d);
  test::write_text(d + "/params.json", params_.dump());
  expect_load_error(d, d, {"params.json without consolidated.00.pth"});
  // A tensor that one shard has and another lacks.
  d = write(params_, 2, [](int k, const std::string& name, std::vector<float>&) {
    return !(k == 1 && name == "layers.0.feed_forward.w3.weight");
  });
  expect_load_error(d, d + "/consolidated.01.pth", {"missing tensor 'layers.0.feed_forward.w3.weight'"});
}

TEST_F(MetaModelErrors, TheCliSaysItInOneLine) {
  auto p = params_;
  p["vocab_size"] = 100;
  const std::string d = write(p);
  const auto r = test::run_cli("generate --model " + shell_quote(d) + " --prompt hi --max-new-tokens 2");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("vocab_size is 100"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST(MetaModel, TokenizerInsideOrBesideTheFolder) {
  TempDir dir;
  const std::string model = dir.file("llama-2-7b");
  fs::create_directories(model);
  test::write_text(model + "/params.json", "{}");
  EXPECT_EQ(find_tokenizer_for_model(model, 32000), "");
  test::write_text(dir.file("tokenizer.model"), "x");
  EXPECT_EQ(fs::path(find_tokenizer_for_model(model, 32000)), fs::path(dir.file("tokenizer.model")));
  EXPECT_EQ(fs::path(find_tokenizer_for_model(model + "/", 32000)), fs::path(dir.file("tokenizer.model")));
  test::write_text(model + "/tokenizer.model", "y");
  EXPECT_EQ(fs::path(find_tokenizer_for_model(model, 32000)), fs::path(model + "/tokenizer.model"));
  // A Hugging Face folder (no params.json) does not look outside itself.
  const std::string hf = dir.file("hf");
  fs::create_directories(hf);
  EXPECT_EQ(find_tokenizer_for_model(hf, 32000), "");
}

// ------------------------------------------------------------------------------------------------
// Files written by torch.save itself

bool have_torch() {
  return !test::torch_python().empty();
}

// stories260K converted by tests/reference/llama2c_to_meta.py with real torch: f32, bf16, and
// f32 in 2 shards; tok512.model beside them as tokenizer.model.
std::string torch_meta_dirs() {
  return test::shared_fixture_dir("meta260k_torch", [](const std::string& dir) {
    const std::string script = std::string(LA_SOURCE_DIR) + "/tests/reference/llama2c_to_meta.py";
    for (const auto& [sub, args] : std::vector<std::pair<std::string, std::string>>{
             {"f32", ""}, {"bf16", " --dtype bf16"}, {"f32x2", " --shards 2"}}) {
      const std::string cmd = test::torch_python() + " " + shell_quote(script) + " " +
                              shell_quote(test::shared_path(kStories)) + " " + shell_quote(dir + "/" + sub) + args;
      if (std::system(cmd.c_str()) != 0) throw std::runtime_error("failed: " + cmd);
    }
    fs::copy_file(test::shared_path(kTokModel), dir + "/tokenizer.model");
  });
}

#define REQUIRE_TORCH()                                                                            \
  do {                                                                                             \
    REQUIRE_STORIES();                                                                             \
    if (!have_torch())                                                                             \
      GTEST_SKIP() << "no python3 imports torch: the torch-written Meta checkpoints are not made " \
                   << "(set LA_TORCH_PYTHON to a python that has torch)";                          \
  } while (0)

TEST(MetaTorch, F32GivesTheGoldenText) {
  REQUIRE_TORCH();
  const std::string dir = torch_meta_dirs() + "/f32";
  const auto params = nlohmann::json::parse(test::read_text(dir + "/params.json"));
  EXPECT_EQ(params["vocab_size"], -1);  // as Meta's LLaMA 2: the embedding decides
  auto m = load_model(dir);
  EXPECT_EQ(m->format, "meta-pth");
  expect_same_config(load_model(test::shared_path(kStories))->config, m->config);
  EXPECT_EQ(greedy_ids(*m, 200), reference()["generated_ids"].get<std::vector<int>>());
  const auto r = test::run_cli("generate --model " + shell_quote(dir) +
                               " --prompt '' --temperature 0 --max-new-tokens 200 --threads 1");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, reference()["decoded_text"].get<std::string>() + "\n");
}

TEST(MetaTorch, F32IsUsedInPlace) {
  REQUIRE_TORCH();
  const std::string dir = torch_meta_dirs() + "/f32";
  const size_t file_bytes = fs::file_size(dir + "/consolidated.00.pth");
  const int64_t rss0 = static_cast<int64_t>(current_rss_bytes());
  auto m = load_model(dir);
  const int64_t grew = static_cast<int64_t>(current_rss_bytes()) - rss0;
  expect_all_mapped(*m);
  EXPECT_LT(grew, static_cast<int64_t>(file_bytes + (1 << 20))) << "RSS grew by " << grew;
}

TEST(MetaTorch, Bf16RunsCloseToF32) {
  REQUIRE_TORCH();
  const std::string root = torch_meta_dirs();
  auto f32 = load_model(root + "/f32");
  auto bf16 = load_model(root + "/bf16");
  EXPECT_EQ(bf16->layers[4].w3.type, DType::BF16);
  expect_close(logits_for(*f32, kProbe), logits_for(*bf16, kProbe), 0.02);
  // The same bits as our own writer's bf16 file (both round to nearest even).
  EXPECT_EQ(logits_for(*load_model(own_meta_dirs() + "/bf16"), kProbe), logits_for(*bf16, kProbe));
}

TEST(MetaTorch, TwoShardsGiveTheLogitsOfOne) {
  REQUIRE_TORCH();
  const std::string root = torch_meta_dirs();
  EXPECT_EQ(logits_for(*load_model(root + "/f32x2"), kProbe), logits_for(*load_model(root + "/f32"), kProbe));
}

}  // namespace
}  // namespace la
