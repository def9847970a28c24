// Weights are used in place: loading a model maps its file and points every matrix into the
// mapping (SPEC §5, "weights are mapped, not copied"). Checked for a llama2.c checkpoint and for
// an F32 Hugging Face directory; an F16 one keeps its matrices in the file too (only the small
// norm vectors become f32 copies). Converting to GGUF holds one converted matrix at a time.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "la/core/half.h"
#include "la/core/memory.h"
#include "la/formats/gguf.h"
#include "la/formats/safetensors.h"
#include "la/io/convert.h"
#include "la/io/gguf_model.h"
#include "la/io/loader.h"
#include "la/io/shapes.h"
#include "support/test_support.h"

namespace {

constexpr const char* kStories = "llama2c/stories260K.bin";

// [p, p + bytes) lies inside the mapping of `f`.
bool inside(const la::MappedFile& f, const void* p, size_t bytes) {
  const auto* q = static_cast<const uint8_t*>(p);
  return q != nullptr && q >= f.data() && q + bytes <= f.data() + f.size();
}

bool inside_any(const la::ModelWeights& w, const void* p, size_t bytes) {
  for (const auto& f : w.files)
    if (inside(*f, p, bytes)) return true;
  return false;
}

// Every matrix and (when `norms_mapped`) every norm vector of `w` lies in one of its mappings.
void expect_all_mapped(const la::ModelWeights& w, bool norms_mapped) {
  const size_t D = static_cast<size_t>(w.config.dim) * sizeof(float);
  EXPECT_TRUE(inside_any(w, w.tok_embeddings.data, w.tok_embeddings.bytes()));
  EXPECT_TRUE(inside_any(w, w.output.data, w.output.bytes()));
  for (size_t i = 0; i < w.layers.size(); ++i) {
    SCOPED_TRACE("layer " + std::to_string(i));
    const la::LayerWeights& l = w.layers[i];
    for (const la::WeightMatrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3})
      EXPECT_TRUE(inside_any(w, m->data, m->bytes()));
    EXPECT_EQ(inside_any(w, l.rms_att, D), norms_mapped);
    EXPECT_EQ(inside_any(w, l.rms_ffn, D), norms_mapped);
  }
  EXPECT_EQ(inside_any(w, w.rms_final, D), norms_mapped);
}

TEST(Memory, Llama2cWeightsAreNotCopied) {
  REQUIRE_SHARED_DATA(kStories);
  auto m = la::load_model(la::test::shared_data() + "/" + kStories);
  ASSERT_EQ(m->files.size(), 1u);
  const la::MappedFile& f = *m->files[0];
  EXPECT_EQ(f.size(), 1056540u);
  ASSERT_NE(f.data(), nullptr);
  // The brief's two: the embedding and a query matrix, at their exact file offsets
  // (28-byte header, embedding, then the 5 attention norms, then wq of layer 0).
  EXPECT_EQ(m->tok_embeddings.data, f.data() + 28);
  EXPECT_TRUE(inside(f, m->tok_embeddings.data, m->tok_embeddings.bytes()));
  EXPECT_EQ(m->layers[0].wq.data, f.data() + 28 + (512 * 64 + 5 * 64) * 4);
  EXPECT_TRUE(inside(f, m->layers[4].wq.data, m->layers[4].wq.bytes()));
  expect_all_mapped(*m, /*norms_mapped=*/true);
  EXPECT_TRUE(m->owned.empty());  // nothing converted or copied
}

// A small random HF model written here (no shared data needed).
void write_tiny_hf(const std::string& dir, la::SafeDType dtype) {
  std::filesystem::create_directories(dir);
  const int64_t D = 32, F = 48, L = 2, H = 4, KVH = 2, V = 40, KV = KVH * (D / H);
  nlohmann::json cfg = {{"model_type", "llama"},    {"hidden_size", D},
                        {"intermediate_size", F},   {"num_hidden_layers", L},
                        {"num_attention_heads", H}, {"num_key_value_heads", KVH},
                        {"vocab_size", V},          {"max_position_embeddings", 64},
                        {"rms_norm_eps", 1e-5},     {"tie_word_embeddings", false}};
  la::test::write_text(dir + "/config.json", cfg.dump());
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 0.1f);
  la::SafetensorsWriter wr;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = nd(rng);
    if (dtype == la::SafeDType::F32) {
      wr.add_f32(name, shape, v.data());
    } else {
      std::vector<uint16_t> h(v.size());
      for (size_t i = 0; i < v.size(); ++i) h[i] = la::f32_to_f16(v[i]);
      wr.add(name, dtype, shape, h.data(), h.size() * 2);
    }
  };
  add("model.embed_tokens.weight", {V, D});
  for (int64_t i = 0; i < L; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    add(p + "input_layernorm.weight", {D});
    add(p + "self_attn.q_proj.weight", {D, D});
    add(p + "self_attn.k_proj.weight", {KV, D});
    add(p + "self_attn.v_proj.weight", {KV, D});
    add(p + "self_attn.o_proj.weight", {D, D});
    add(p + "post_attention_layernorm.weight", {D});
    add(p + "mlp.gate_proj.weight", {F, D});
    add(p + "mlp.down_proj.weight", {D, F});
    add(p + "mlp.up_proj.weight", {F, D});
  }
  add("model.norm.weight", {D});
  add("lm_head.weight", {V, D});
  la::test::write_text(dir + "/model.safetensors", wr.serialize());
}

uint64_t checksum(const la::ModelWeights& w) {
  uint64_t h = 1469598103934665603ull;
  for (const auto& l : w.layers)
    for (const la::WeightMatrix* m : la::layer_matrices(l)) {
      const auto* p = static_cast<const uint8_t*>(m->data);
      for (size_t i = 0; i < m->bytes(); ++i) h = (h ^ p[i]) * 1099511628211ull;
    }
  return h;
}

// Preparing a mapped Q4_0 model for inference (pack_interleaved) holds its matrices about once: the
// repacked copy replaces the file's pages in memory, which come back, unchanged, when read.
TEST(Memory, Q4_0x8PackingHoldsTheWeightsOnce) {
  const la::ModelConfig c = la::test::config(512, 1536, 6, 8, 8, 512, 64);
  la::test::TempDir tmp;
  const std::string path = tmp.file("q4.gguf");
  la::save_gguf(*la::convert_weights(*la::random_model(c, 2), la::DType::Q4_0), nullptr, path, "test");
  auto w = la::load_model(path);
  const uint64_t before = checksum(*w);  // every stored page read: resident
  const int64_t rss0 = static_cast<int64_t>(la::current_rss_bytes());
  const auto added = static_cast<int64_t>(w->pack_interleaved());
  const int64_t rss1 = static_cast<int64_t>(la::current_rss_bytes());
  EXPECT_GT(added, 10 << 20);
  EXPECT_LT(rss1 - rss0, added / 4) << "RSS " << rss0 << " -> " << rss1 << " with " << added << " bytes packed";
  EXPECT_EQ(checksum(*w), before);
}

TEST(Memory, HfF32WeightsAreNotCopied) {
  la::test::TempDir tmp;
  write_tiny_hf(tmp.file("m"), la::SafeDType::F32);
  auto m = la::load_model(tmp.file("m"));
  ASSERT_EQ(m->files.size(), 1u);
  EXPECT_FALSE(m->config.tied_classifier);
  EXPECT_NE(m->output.data, m->tok_embeddings.data);
  // The embedding view is exactly the tensor's bytes in the mapping.
  auto st = la::SafetensorsFile::open(tmp.file("m/model.safetensors"));
  const size_t off = static_cast<size_t>(st.get("model.embed_tokens.weight").data - st.file()->data());
  EXPECT_EQ(m->tok_embeddings.data, m->files[0]->data() + off);
  expect_all_mapped(*m, /*norms_mapped=*/true);
  EXPECT_TRUE(m->owned.empty());
}

TEST(Memory, HfF16MatricesStayInTheFile) {
  la::test::TempDir tmp;
  write_tiny_hf(tmp.file("m"), la::SafeDType::F16);
  auto m = la::load_model(tmp.file("m"));
  EXPECT_EQ(m->layers[1].w2.type, la::DType::F16);
  EXPECT_EQ(m->tok_embeddings.type, la::DType::F16);
  expect_all_mapped(*m, /*norms_mapped=*/false);
  // Only the 2 * layers + 1 norm vectors were converted.
  EXPECT_EQ(m->owned.size(), 5u);
  for (const auto& v : m->owned) EXPECT_EQ(v.size(), 32u);
}

// `convert` of a 1.1B model once peaked at 21 GB: the converted copy, the writer's copy of it and
// the serialized file were all in memory. Now each matrix is converted as it is written, so the
// peak grows by about one converted matrix (here 4.5 MB), not by the converted model (23 MB of
// Q8_0 per copy) -- measured against the model's 88 MB of f32 matrices.
TEST(Memory, ConvertHoldsOneConvertedMatrixAtATime) {
  la::ModelConfig c = la::test::config(512, 1536, 4, 8, 8, 8192, 256);
  c.tied_classifier = false;
  auto m = la::random_model(c, 1);
  size_t f32_bytes = m->tok_embeddings.bytes() + m->output.bytes();
  for (const auto& l : m->layers)
    for (const la::WeightMatrix* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3}) f32_bytes += w->bytes();
  ASSERT_GT(f32_bytes, size_t{80} << 20);
  const size_t limit = f32_bytes / 8;  // a whole Q8_0 copy is 34/128 of the f32 size
  la::test::TempDir tmp;
  const size_t before = la::current_rss_bytes();
  // The peak is a high-water mark for the whole process: only meaningful while building the model
  // was the largest thing this process did so far (always so when ctest runs the test alone).
  if (la::peak_rss_bytes() > before + limit / 2) GTEST_SKIP() << "an earlier peak hides the measurement";
  la::convert_to_gguf(*m, la::DType::Q8_0, la::DType::F16, nullptr, tmp.file("q8.gguf"), "test");
  const size_t growth = la::peak_rss_bytes() - before;
  EXPECT_LT(growth, limit) << "peak RSS grew by " << growth / 1e6 << " MB converting " << f32_bytes / 1e6
                           << " MB of f32 matrices to Q8_0";
  // And the file is the model.
  la::GgufFile f = la::GgufFile::open(tmp.file("q8.gguf"));
  EXPECT_EQ(f.find_tensor("blk.3.ffn_down.weight")->type, la::DType::Q8_0);
  EXPECT_EQ(f.tensors().size(), 2u + 9u * 4u + 1u);
}

// What the kernel reports as available, between 0 and MemTotal (read here independently), and it
// shrinks when this process takes and touches 256 MiB more (allowing for other processes' noise).
TEST(Memory, AvailableMemoryIsPlausibleAndFollowsTheKernel) {
  // MemAvailable from /proc/meminfo, in bytes (0 when absent).
  auto mem_available = [] {
    std::FILE* f = std::fopen("/proc/meminfo", "r");
    unsigned long long kib = 0;
    char line[256];
    while (f && std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "MemAvailable: %llu", &kib) == 1) break;
    if (f) std::fclose(f);
    return static_cast<size_t>(kib) * 1024;
  };
  std::FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) GTEST_SKIP() << "no /proc/meminfo";
  unsigned long long total_kib = 0;
  char line[256];
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "MemTotal: %llu", &total_kib) == 1) break;
  std::fclose(f);
  ASSERT_GT(total_kib, 0u);
  // The kernel's own figure, read just before and after ours: ours lies between them (or below,
  // where a cgroup limit is tighter). Whether it shrinks when this process allocates cannot be
  // tested on every host: on this VM the hypervisor hands the guest memory back as it is used
  // (MemFree fell by 0.15 GiB for a 1 GiB allocation).
  const size_t lo_before = mem_available();
  const size_t ours = la::available_memory_bytes();
  const size_t lo_after = mem_available();
  EXPECT_GT(ours, 0u);
  EXPECT_LE(ours, total_kib * 1024);
  const size_t slack = size_t{64} << 20;
  EXPECT_LE(ours, std::max(lo_before, lo_after) + slack);
  if (!std::filesystem::exists("/sys/fs/cgroup/memory.max")) {
    EXPECT_GE(ours + slack, std::min(lo_before, lo_after)) << "no cgroup limit: ours should be MemAvailable";
  }
}

}  // namespace
