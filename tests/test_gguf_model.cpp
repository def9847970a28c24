// GGUF models and adapters: our `convert` output loads with its embedded vocabulary and
// reproduces llama2.c's greedy text; F16/BF16 files stay close; quantised files reload exactly;
// a GGUF written by llama.cpp's own converter (when one is provided) reproduces the text too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <utility>

#include "la/core/error.h"
#include "la/formats/gguf.h"
#include "la/io/adapter_file.h"
#include "la/io/convert.h"
#include "la/io/gguf_model.h"
#include "la/io/loader.h"
#include "la/io/shapes.h"
#include "la/kernels/quant_dot.h"
#include "la/model/inference.h"
#include "la/sample/sampler.h"
#include "la/tokenizer/tokenizer.h"
#include "support/test_support.h"

namespace la {
namespace {

std::string golden_text() {
  return nlohmann::json::parse(test::read_text(test::shared_data() + "/llama2c/stories260K_greedy_reference.json"))
      .at("decoded_text")
      .get<std::string>();
}

// Greedy logits of `steps` positions from BOS, concatenated.
std::vector<float> greedy_logits(const ModelWeights& w, int steps) {
  InferenceModel m(w, steps + 1);
  std::vector<float> all;
  int tok = 1;
  for (int i = 0; i < steps; ++i) {
    const float* l = m.forward(&tok, 1);
    all.insert(all.end(), l, l + w.config.vocab_size);
    tok = argmax(l, w.config.vocab_size);
  }
  return all;
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

TEST(GgufModel, ConvertedStories260KReproducesTheGoldenText) {
  REQUIRE_SHARED_DATA("llama2c/stories260K.bin");
  test::TempDir tmp;
  const std::string d = test::shared_data() + "/llama2c/";
  const std::string out = tmp.file("stories260K-f32.gguf");
  auto r = test::run_cli("convert --threads 1 --model " + d + "stories260K.bin --tokenizer " + d +
                         "tok512.model --type f32 --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The vocabulary travels inside the file: no --tokenizer.
  r = test::run_cli("generate --threads 1 -q --model " + out + " --prompt '' --temperature 0 --max-new-tokens 200");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, golden_text() + "\n");
  // Same logits as the .bin, bit for bit (same f32 values, same kernels).
  auto bin = load_model(d + "stories260K.bin");
  auto gguf = load_model(out);
  EXPECT_EQ(gguf->format, "gguf");
  EXPECT_EQ(greedy_logits(*bin, 16), greedy_logits(*gguf, 16));
}

TEST(GgufModel, HalfPrecisionFilesStayClose) {
  REQUIRE_SHARED_DATA("llama2c/stories260K.bin");
  test::TempDir tmp;
  const std::string d = test::shared_data() + "/llama2c/";
  auto bin = load_model(d + "stories260K.bin");
  const auto ref = greedy_logits(*bin, 24);
  for (const char* type : {"f16", "bf16"}) {
    const std::string out = tmp.file(std::string("s-") + type + ".gguf");
    auto r = test::run_cli("convert --threads 1 --model " + d + "stories260K.bin --tokenizer " + d +
                           "tok512.bin --type " + type + " --out " + out);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto w = load_model(out);
    EXPECT_EQ(w->layers[0].wq.type, std::string(type) == "f16" ? DType::F16 : DType::BF16);
    // Logits are ~20 in magnitude: f16 keeps 11 significant bits, bf16 8.
    EXPECT_LT(max_abs_diff(ref, greedy_logits(*w, 24)), std::string(type) == "f16" ? 0.05f : 0.3f) << type;
  }
}

TEST(GgufModel, QuantisedFileReloadsExactly) {
  const ModelConfig c = test::config(64, 192, 3, 4, 2, 300, 64);
  auto base = random_model(c, 5);
  test::TempDir tmp;
  for (DType t : {DType::Q8_0, DType::Q4_0}) {
    auto q = convert_weights(*base, t);
    const std::string path = tmp.file(std::string(dtype_name(t)) + ".gguf");
    save_gguf(*q, nullptr, path, "test");
    auto back = load_model(path);
    EXPECT_EQ(back->layers[1].w2.type, t);
    EXPECT_EQ(greedy_logits(*q, 12), greedy_logits(*back, 12)) << dtype_name(t);
  }
}

// A quantised file prepared for inference (ModelWeights::pack_interleaved), for each type with an
// x8 layout: every matrix with rows in eights gets the interleaved copy, the stored bytes stay
// readable (their pages were dropped from memory, the file maps them in again), the logits move
// by float rounding only, exact products (eval, training) are unchanged, and a second call adds
// nothing.
TEST(GgufModel, X8PackingKeepsTheModel) {
  for (DType t : {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q6_K}) {
    SCOPED_TRACE(dtype_name(t));
    // The output head's 300 rows are not eights: it stays as stored. K-quants need 256 columns.
    const bool k = t == DType::Q4_K || t == DType::Q6_K;
    const ModelConfig c = k ? test::config(256, 512, 2, 4, 2, 300, 64) : test::config(64, 192, 2, 4, 2, 300, 64);
    test::TempDir tmp;
    const std::string path = tmp.file("q.gguf");
    save_gguf(*convert_weights(*random_model(c, 8), t), nullptr, path, "test");
    auto plain = load_model(path), packed = load_model(path);
    EXPECT_GT(packed->pack_interleaved(), 0u);
    EXPECT_EQ(packed->pack_interleaved(), 0u);
    for (size_t l = 0; l < packed->layers.size(); ++l) {
      const auto a = layer_matrices(plain->layers[l]);
      const auto b = layer_matrices(packed->layers[l]);
      for (size_t i = 0; i < a.size(); ++i) {
        ASSERT_EQ(b[i]->type, t);
        EXPECT_NE(b[i]->packed, nullptr);
        ASSERT_EQ(std::memcmp(a[i]->data, b[i]->data, a[i]->bytes()), 0) << "layer " << l << " matrix " << i;
      }
    }
    EXPECT_EQ(packed->output.packed, nullptr);
    const auto ref = greedy_logits(*plain, 12), got = greedy_logits(*packed, 12);
    float amax = 0;
    for (float v : ref) amax = std::max(amax, std::fabs(v));
    EXPECT_NE(ref, got);  // another summation order
    // Per step the logits differ by float rounding, except where an activation sits on a
    // quantisation tie and one side rounds it a step the other way (seen once in 12 steps here
    // for Q4_K and Q6_K, ~2e-3 x amax): the same greedy tokens, at most two such steps.
    const int64_t V = c.vocab_size;
    int jumps = 0;
    for (int64_t s = 0; s < 12; ++s) {
      const std::vector<float> a(ref.begin() + s * V, ref.begin() + (s + 1) * V),
          b(got.begin() + s * V, got.begin() + (s + 1) * V);
      EXPECT_EQ(argmax(a.data(), V), argmax(b.data(), V)) << "step " << s;
      const float d = max_abs_diff(a, b);
      EXPECT_LT(d, 1e-2f * amax) << "step " << s;
      jumps += d > 1e-4f * amax;
    }
    EXPECT_LE(jumps, 2);
    ExactActivations exact;
    EXPECT_EQ(greedy_logits(*plain, 6), greedy_logits(*packed, 6));
  }
}

// The former `convert`, whole in memory: Hugging Face q/k rows moved to the Meta layout in an f32
// copy of the model, then every matrix converted into a second copy, then written.
void convert_then_save(const ModelWeights& src, DType type, const std::string& path) {
  std::unique_ptr<ModelWeights> meta;
  const ModelWeights* m = &src;
  if (src.config.rope_style == RopeStyle::Half) {
    meta = dequantized_copy(src);
    const ModelConfig& c = meta->config;
    for (auto& l : meta->layers)
      for (auto [w, heads] : {std::pair{&l.wq, c.n_heads}, std::pair{&l.wk, c.n_kv_heads}}) {
        meta->owned.emplace_back(static_cast<size_t>(w->rows * w->cols));
        permute_hf_to_meta(static_cast<const float*>(w->data), meta->owned.back().data(), heads, c.head_dim(), w->cols);
        w->data = meta->owned.back().data();
      }
    meta->config.rope_style = RopeStyle::Interleaved;
    m = meta.get();
  }
  save_gguf(*convert_weights(*m, type, false, DType::F16), nullptr, path, "test");
}

// convert_to_gguf converts one matrix at a time while it writes; the file must be the one the
// whole-model path wrote, byte for byte: every target type, the F16 fallback (hidden 80 does
// not fill Q8_0/Q4_0 blocks), a quantised source, an untied classifier, and rotate-half rows.
TEST(GgufModel, StreamedConvertWritesTheSameBytes) {
  ModelConfig c = test::config(64, 80, 2, 4, 2, 96, 32);
  c.tied_classifier = false;
  test::TempDir tmp;
  for (DType stored : {DType::F32, DType::F16, DType::BF16, DType::Q8_0}) {
    ModelConfig sc = c;
    if (stored == DType::Q8_0) sc.hidden_dim = 96;
    // Hugging Face checkpoints hold f32/f16/bf16 only; the tied case once.
    for (RopeStyle rope : {RopeStyle::Interleaved, RopeStyle::Half}) {
      if (rope == RopeStyle::Half && dtype_is_quantized(stored)) continue;
      sc.rope_style = rope;
      sc.tied_classifier = stored == DType::F16;
      auto base = random_model(sc, 11, stored);
      for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0}) {
        SCOPED_TRACE(fmt::format("{} -> {}, {}", dtype_name(stored), dtype_name(t),
                                 rope == RopeStyle::Half ? "rotate-half" : "interleaved"));
        convert_then_save(*base, t, tmp.file("whole.gguf"));
        convert_to_gguf(*base, t, DType::F16, nullptr, tmp.file("streamed.gguf"), "test");
        const std::string whole = test::read_text(tmp.file("whole.gguf"));
        ASSERT_GT(whole.size(), 1000u);
        EXPECT_TRUE(whole == test::read_text(tmp.file("streamed.gguf")));
      }
    }
  }
  // Without a fallback, rows that do not fill whole blocks fail before anything is written.
  auto base = random_model(c, 11);
  EXPECT_THROW(convert_to_gguf(*base, DType::Q8_0, std::nullopt, nullptr, tmp.file("no.gguf"), "test"), Error);
  EXPECT_FALSE(file_exists(tmp.file("no.gguf")));
}

// general.file_type as llama.cpp numbers it (enum llama_ftype, a UINT32): without it llama.cpp
// labels our files "(guessed)". The type most matrices are in: norms (f32) do not count, nor do
// the few matrices a conversion stores as F16 because their rows do not fill whole blocks.
TEST(GgufModel, FilesCarryLlamaCppFileType) {
  auto file_type = [](const std::string& path) -> int64_t {
    GgufFile f = GgufFile::open(path);
    const GgufValue* v = f.find("general.file_type");
    if (!v) return -1;
    EXPECT_EQ(v->type, GgufType::UINT32);
    return f.get_int("general.file_type");
  };
  ModelConfig c;
  c.dim = 256;
  c.hidden_dim = 80;  // w2's rows of 80 fall back to F16 for Q8_0/Q4_0
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = 64;
  c.max_seq_len = 32;
  auto base = random_model(c, 3);
  test::TempDir tmp;
  const std::pair<DType, int64_t> want[] = {
      {DType::F32, 0}, {DType::F16, 1}, {DType::Q4_0, 2}, {DType::Q8_0, 7}, {DType::BF16, 32}};
  for (auto [t, ftype] : want) {
    convert_to_gguf(*base, t, DType::F16, nullptr, tmp.file("c.gguf"), "test");
    EXPECT_EQ(file_type(tmp.file("c.gguf")), ftype) << dtype_name(t);
  }
  // save_gguf: the stored types, K-quants included (LLAMA_FTYPE_MOSTLY_Q4_K_M, _Q6_K).
  c.hidden_dim = 512;
  for (auto [t, ftype] : {std::pair{DType::Q8_0, 7}, std::pair{DType::Q4_K, 15}, std::pair{DType::Q6_K, 18}}) {
    save_gguf(*random_model(c, 3, t), nullptr, tmp.file("s.gguf"), "test");
    EXPECT_EQ(file_type(tmp.file("s.gguf")), ftype) << dtype_name(t);
  }
  // From the CLI, on the real model.
  REQUIRE_SHARED_DATA("llama2c/stories260K.bin");
  const std::string d = test::shared_data() + "/llama2c/";
  auto r = test::run_cli("convert --threads 1 --model " + d + "stories260K.bin --tokenizer " + d +
                         "tok512.model --type q8_0 --out " + tmp.file("q8.gguf"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(file_type(tmp.file("q8.gguf")), 7);
}

TEST(GgufModel, VocabularyOnlyFileIsNotAModel) {
  REQUIRE_SHARED_DATA("gguf/ggml-vocab-llama-spm.gguf");
  const std::string p = test::shared_data() + "/gguf/ggml-vocab-llama-spm.gguf";
  try {
    load_model(p);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("vocabulary-only"), std::string::npos) << e.what();
  }
}

TEST(GgufModel, EmbeddedVocabularyReproducesLlamaCppExpectations) {
  REQUIRE_SHARED_DATA("gguf/ggml-vocab-llama-spm.gguf.out");
  const std::string base = test::shared_data() + "/gguf/ggml-vocab-llama-spm.gguf";
  auto tok = load_tokenizer(base);
  EXPECT_EQ(tok->vocab_size(), 32000);
  const std::string inp = test::read_text(base + ".inp"), out = test::read_text(base + ".out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> cases;
  for (size_t pos = 0;;) {
    const size_t next = inp.find(sep, pos);
    if (next == std::string::npos) break;
    cases.push_back(inp.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::vector<std::string> lines;
  for (size_t pos = 0; pos < out.size();) {
    size_t next = out.find('\n', pos);
    if (next == std::string::npos) next = out.size();
    lines.push_back(out.substr(pos, next - pos));
    pos = next + 1;
  }
  ASSERT_GE(cases.size(), 40u);
  ASSERT_GE(lines.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    std::string got;
    for (int id : tok->encode(cases[i], false, false)) {
      got += ' ';
      got += std::to_string(id);
    }
    std::string want = lines[i];
    while (!want.empty() && want.back() == ' ') want.pop_back();
    EXPECT_EQ(got, want) << "case " << i << ": '" << cases[i] << "'";
  }
}

TEST(GgufAdapter, RoundTripsThroughGguf) {
  ModelConfig c = *named_shape("stories260k");
  Adapter a = Adapter::create(c, 7, 3, GateMode::Identity, 9);
  for (size_t i = 0; i < a.gate().size(); ++i) a.gate()[i] = 0.01f * static_cast<float>(i);
  test::TempDir tmp;
  save_adapter(a, tmp.file("a.gguf"));
  Adapter b = load_adapter(tmp.file("a.gguf"));
  EXPECT_EQ(b.len, 7);
  EXPECT_EQ(b.n_layers, 3);
  EXPECT_EQ(b.gate_mode, GateMode::Identity);
  EXPECT_EQ(test::to_vec(b.query()), test::to_vec(a.query()));
  EXPECT_EQ(test::to_vec(b.gate()), test::to_vec(a.gate()));
  GgufFile f = GgufFile::open(tmp.file("a.gguf"));
  EXPECT_EQ(f.get_string("general.architecture"), "llama_adapter");
  EXPECT_EQ(f.get_int("llama_adapter.adapter_len"), 7);
  // convert --adapter goes both ways.
  auto r = test::run_cli("convert --adapter " + tmp.file("a.gguf") + " --out " + tmp.file("a.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(test::to_vec(load_adapter(tmp.file("a.safetensors")).query()), test::to_vec(a.query()));
}

// A stories260K GGUF made by llama.cpp's own converter (llama-convert-llama2c-to-ggml, built in
// /tmp from llama.cpp's public source; never committed). Skips unless $LA_LLAMACPP_STORIES_GGUF
// names such a file.
TEST(GgufModel, LlamaCppConvertedFileReproducesTheGoldenText) {
  const char* p = std::getenv("LA_LLAMACPP_STORIES_GGUF");
  if (!p || !std::ifstream(p)) GTEST_SKIP() << "set LA_LLAMACPP_STORIES_GGUF to a stories260K GGUF made by llama.cpp";
  REQUIRE_SHARED_DATA("llama2c/stories260K_greedy_reference.json");
  // llama.cpp's llama2.c converter records a context length of 128 (its own default), not the
  // checkpoint's 512: ask for the context the 200 tokens need.
  auto r = test::run_cli(std::string("generate --threads 1 -q --context 512 --model ") + p +
                         " --prompt '' --temperature 0 --max-new-tokens 200");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, golden_text() + "\n");
}

}  // namespace
}  // namespace la
