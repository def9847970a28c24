// The multi-modal adapter (SPEC §8): CLIP features through visual_proj into every adapted layer's
// prompts.
//   - eval equals a float64 reference written on transformers' CLIP and PyTorch
//     (tests/reference/mm_adapter_reference.py), with and without images;
//   - fc2 = 0 is the text-only adapter bit for bit; records without an image are the
//     single-modal path bit for bit;
//   - gradients of prompts, gates and visual_proj against finite differences;
//   - inference (KV cache, one image row per layer) gives training's logits;
//   - a short fine-tune on a synthetic picture task learns what the text-only adapter cannot.
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "la/core/error.h"
#include "la/core/mapped_file.h"
#include "la/data/alpaca.h"
#include "la/data/dataset.h"
#include "la/io/adapter_file.h"
#include "la/io/clip_file.h"
#include "la/io/loader.h"
#include "la/model/inference.h"
#include "la/model/train_graph.h"
#include "la/model/visual_proj.h"
#include "la/sample/generate.h"
#include "la/sample/sampler.h"
#include "la/tokenizer/tokenizer.h"
#include "la/vision/feature_store.h"
#include "support/grad_check.h"
#include "support/test_support.h"

namespace la {
namespace {

[[maybe_unused]] const bool kOneThread = test::run_library_on_one_thread();

std::string fixture(const std::string& rel) {
  return std::string(LA_SOURCE_DIR) + "/tests/fixtures/clip/" + rel;
}
nlohmann::json read_json(const std::string& path) {
  return nlohmann::json::parse(read_file(path));
}

struct Base {
  std::unique_ptr<ModelWeights> w;
  std::unique_ptr<ClipWeights> clip;
  std::unique_ptr<ImageFeatureStore> store;
};

Base load_base() {
  Base b;
  b.w = load_model(test::shared_path("llama2c/stories260K.bin"));
  b.clip = load_clip(fixture("tiny_clip_a"));
  b.store = std::make_unique<ImageFeatureStore>(*b.clip, "");
  return b;
}

std::string cli_eval(const std::string& adapter, const std::string& data, const std::string& extra = "") {
  const test::CommandResult r = test::run_cli("eval -m " + test::shared_path("llama2c/stories260K.bin") + " -t " +
                                              test::shared_path("llama2c/tok512.model") + " --adapter " + adapter +
                                              " --data " + data + " --json --no-feature-cache " + extra);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.out;
}

TEST(Multimodal, EvalMatchesFloat64Reference) {
  REQUIRE_SHARED_DATA("llama2c/stories260K.bin");
  const nlohmann::json ref = read_json(fixture("mm_reference.json"))["runs"];
  for (const auto& [file, run] :
       {std::pair{"mm_adapter.safetensors", "adapter"}, {"mm_adapter_fc2zero.safetensors", "fc2zero"}}) {
    SCOPED_TRACE(file);
    const nlohmann::json got =
        nlohmann::json::parse(cli_eval(fixture(file), fixture("mm_records.json"), "--clip " + fixture("tiny_clip_a")));
    EXPECT_EQ(got["tokens"], ref[run]["tokens"]);
    EXPECT_NEAR(got["loss"].get<double>(), ref[run]["loss"].get<double>(), 1e-4 * ref[run]["loss"].get<double>());
  }
  // Without --clip, records with images are refused, not silently read as text.
  const test::CommandResult r = test::run_cli(
      "eval -m " + test::shared_path("llama2c/stories260K.bin") + " -t " + test::shared_path("llama2c/tok512.model") +
      " --adapter " + fixture("mm_adapter.safetensors") + " --data " + fixture("mm_records.json"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("images need --clip"), std::string::npos) << r.err;
}

TEST(Multimodal, ProjectionMatchesReference) {
  REQUIRE_SHARED_DATA("llama2c/stories260K.bin");
  Base b = load_base();
  const Adapter a = load_adapter(fixture("mm_adapter.safetensors"), &b.w->config);
  ASSERT_TRUE(a.visual.enabled());
  EXPECT_EQ(a.visual.width, 8);
  EXPECT_EQ(a.visual.in, 48);
  EXPECT_EQ(a.visual.clip_layers, "2,4,6");
  const nlohmann::json images = read_json(fixture("mm_reference.json"))["images"];
  ASSERT_FALSE(images.empty());
  for (const auto& [name, want] : images.items()) {
    SCOPED_TRACE(name);
    std::vector<float> ip(static_cast<size_t>(a.dim));
    visual_proj_forward(a, b.store->features(fixture(name)).data(), ip.data(), nullptr);
    ASSERT_EQ(want["I_p"].size(), ip.size());
    for (size_t i = 0; i < ip.size(); ++i)
      EXPECT_NEAR(ip[i], want["I_p"][i].get<double>(), 1e-4 * (1 + std::fabs(want["I_p"][i].get<double>())));
  }
}

// A batch of the fixture's records: tokens and, per sequence, its image features or none.
struct MmBatch {
  PackedBatch with_images, without_images;
};

MmBatch fixture_batch(Base& b, size_t max_records = 100) {
  std::vector<AlpacaRecord> recs = load_alpaca(fixture("mm_records.json"));
  if (recs.size() > max_records) recs.resize(max_records);
  auto tok = load_tokenizer(test::shared_path("llama2c/tok512.model"));
  TokenizedDataset d = tokenize_alpaca(recs, *tok, 512);
  MmBatch m;
  m.with_images.clear();
  m.without_images.clear();
  for (size_t i = 0; i < recs.size(); ++i) {
    const float* f = recs[i].image.empty() ? nullptr : b.store->features(recs[i].image).data();
    m.with_images.add(d.examples[i].tokens, d.examples[i].prompt_len, f);
    m.without_images.add(d.examples[i].tokens, d.examples[i].prompt_len, nullptr);
  }
  return m;
}

Adapter text_part(const Adapter& a) {
  Adapter t = a;
  t.visual = {};
  t.allocate();
  std::copy(a.query().begin(), a.query().end(), t.query().begin());
  std::copy(a.gate().begin(), a.gate().end(), t.gate().begin());
  return t;
}

TEST(Multimodal, ZeroProjectionAndImagelessRecordsAreTheTextAdapterBitForBit) {
  REQUIRE_SHARED_DATA("llama2c/stories260K.bin");
  Base b = load_base();
  const Adapter zero = load_adapter(fixture("mm_adapter_fc2zero.safetensors"), &b.w->config);
  const Adapter mm = load_adapter(fixture("mm_adapter.safetensors"), &b.w->config);
  MmBatch m = fixture_batch(b);
  ASSERT_TRUE(m.with_images.has_images());
  TrainGraph g(*b.w, mm, m.with_images.rows(), 512, false);
  const Adapter text = text_part(zero);
  const double text_loss = g.evaluate(m.without_images, &text).loss_sum;
  const double zero_loss = g.evaluate(m.with_images, &zero).loss_sum;
  EXPECT_EQ(std::memcmp(&text_loss, &zero_loss, sizeof(double)), 0) << text_loss << " vs " << zero_loss;
  // The non-zero projection changes the image records and nothing else.
  const double mm_no_images = g.evaluate(m.without_images, &mm).loss_sum;
  const Adapter mm_text = text_part(mm);
  const double text_mm = g.evaluate(m.without_images, &mm_text).loss_sum;
  EXPECT_EQ(std::memcmp(&mm_no_images, &text_mm, sizeof(double)), 0);
  EXPECT_NE(g.evaluate(m.with_images, &mm).loss_sum, text_mm);
  // Per record: those without an image have exactly the text adapter's logits.
  const int64_t V = b.w->config.vocab_size, R = m.with_images.rows();
  std::vector<float> lw(static_cast<size_t>(R * V)), lt(lw.size());
  g.logits(m.with_images, &mm, lw.data());
  g.logits(m.without_images, &mm, lt.data());
  for (int64_t s = 0; s < m.with_images.sequences(); ++s) {
    const int64_t r0 = m.with_images.seq_offsets[static_cast<size_t>(s)],
                  r1 = m.with_images.seq_offsets[static_cast<size_t>(s) + 1];
    const bool same = std::memcmp(lw.data() + r0 * V, lt.data() + r0 * V, static_cast<size_t>((r1 - r0) * V) * 4) == 0;
    EXPECT_EQ(same, m.with_images.images[static_cast<size_t>(s)] == nullptr) << "sequence " << s;
  }
}

TEST(Multimodal, GradientsMatchFiniteDifferences) {
  REQUIRE_SHARED_DATA("llama2c/stories260K.bin");
  Base b = load_base();
  Adapter a = load_adapter(fixture("mm_adapter.safetensors"), &b.w->config);
  MmBatch m = fixture_batch(b, 3);  // two with an image, one without
  std::mt19937 rng(77);
  TrainGraph g(*b.w, a, m.with_images.rows(), 512, /*recompute=*/true);
  test::expect_adapter_grads_match_fd(g, m.with_images, a, rng);
  // The stored-activation graph gives the same gradients.
  TrainGraph stored(*b.w, a, m.with_images.rows(), 512, false);
  ParamSet g1 = a.params.zeros_like(), g2 = g1;
  g.run(m.with_images, a, &g1, 0.1f);
  stored.run(m.with_images, a, &g2, 0.1f);
  EXPECT_EQ(g1.values(), g2.values());
}

TEST(Multimodal, InferenceWithAnImageGivesTrainingsLogits) {
  REQUIRE_SHARED_DATA("llama2c/stories260K.bin");
  Base b = load_base();
  const Adapter a = load_adapter(fixture("mm_adapter.safetensors"), &b.w->config);
  const std::vector<float>& f = b.store->features(fixture("images/rgb_37x23.jpg"));
  std::vector<int> toks = {1, 40, 81, 7, 300, 22, 19, 400, 9};
  PackedBatch pb;
  pb.clear();
  pb.add(toks, 1, f.data());
  const int64_t V = b.w->config.vocab_size, T = pb.rows();
  TrainGraph g(*b.w, a, T, 64, false);
  std::vector<float> train(static_cast<size_t>(T * V));
  g.logits(pb, &a, train.data());
  InferenceModel im(*b.w, 64);
  im.set_adapter(&a);
  im.set_image(f.data());
  im.reset();
  for (int64_t t = 0; t < T; ++t) {  // decode token by token
    const float* lg = im.forward(&toks[static_cast<size_t>(t)], 1);
    float scale = 0;
    for (int64_t v = 0; v < V; ++v) scale = std::max(scale, std::fabs(train[static_cast<size_t>(t * V + v)]));
    for (int64_t v = 0; v < V; ++v) ASSERT_NEAR(lg[v], train[static_cast<size_t>(t * V + v)], 5e-6 * scale) << t;
  }
  // An image without a multi-modal adapter is an error, not ignored.
  InferenceModel plain(*b.w, 64);
  EXPECT_THROW(plain.set_image(f.data()), Error);
}

TEST(Multimodal, AdapterFileRoundTripsAndChecksItsClip) {
  REQUIRE_SHARED_DATA("llama2c/stories260K.bin");
  Base b = load_base();
  test::TempDir tmp;
  Adapter a = Adapter::create(b.w->config, 3, 2, GateMode::Tanh, 5);
  a.add_visual({48, 8, "2,4,6", 16, 32}, 5);
  EXPECT_EQ(a.parameter_count(), 3 * 2 * 64 + 2 * 8 + (8 * 48 + 8) + (64 * 8 + 64));
  for (float v : a.params["visual_proj.fc2.weight"]) ASSERT_EQ(v, 0.0f);
  float bound = 0;
  for (float v : a.params["visual_proj.fc1.weight"]) bound = std::max(bound, std::fabs(v));
  EXPECT_GT(bound, 0.1f);
  EXPECT_LE(bound, 1.0f / std::sqrt(48.0f));
  save_adapter(a, tmp.file("a.safetensors"));
  const Adapter back = load_adapter(tmp.file("a.safetensors"), &b.w->config);
  EXPECT_TRUE(back.visual == a.visual);
  EXPECT_EQ(back.params.values(), a.params.values());
  EXPECT_THROW(save_adapter(a, tmp.file("a.gguf")), Error);
  // With a CLIP of another shape: an error naming both.
  const test::CommandResult r =
      test::run_cli("eval -m " + test::shared_path("llama2c/stories260K.bin") + " -t " +
                    test::shared_path("llama2c/tok512.model") + " --adapter " + tmp.file("a.safetensors") + " --clip " +
                    fixture("tiny_clip_b") + " --data " + fixture("mm_records.json"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("was made for a CLIP with features of 48 values"), std::string::npos) << r.err;
}

TEST(Multimodal, GenerateWithAnImage) {
  REQUIRE_SHARED_DATA("llama2c/stories260K.bin");
  const std::string base = "generate -m " + test::shared_path("llama2c/stories260K.bin") + " -t " +
                           test::shared_path("llama2c/tok512.model") + " --temperature 0 -n 12 -q --instruction Hi";
  const std::string mm = " --adapter " + fixture("mm_adapter.safetensors") + " --no-feature-cache";
  const test::CommandResult with =
      test::run_cli(base + mm + " --clip " + fixture("tiny_clip_a") + " --image " + fixture("images/rgb_37x23.jpg"));
  ASSERT_EQ(with.exit_code, 0) << with.err;
  const test::CommandResult without = test::run_cli(base + mm);
  ASSERT_EQ(without.exit_code, 0) << without.err;
  EXPECT_NE(with.out, without.out) << "the image changes what the adapter says";
  // Misuse: one line each.
  for (const std::string& bad :
       {base + mm + " --image " + fixture("images/rgb_37x23.jpg"),
        base + " --clip " + fixture("tiny_clip_a") + " --image " + fixture("images/rgb_37x23.jpg"),
        base + mm + " --clip " + fixture("tiny_clip_a") + " --image /nonexistent.png"}) {
    const test::CommandResult r = test::run_cli(bad);
    EXPECT_NE(r.exit_code, 0) << bad;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

// A multi-modal run resumed from its checkpoint ends where the uninterrupted one does (the visual
// projection and its AdamW moments are rows of the checkpoint like the prompts').
TEST(Multimodal, ResumeIsBitIdentical) {
  REQUIRE_SHARED_DATA("llama2c/stories260K.bin");
  test::TempDir tmp;
  const std::string common =
      "finetune -m " + test::shared_path("llama2c/stories260K.bin") + " -t " +
      test::shared_path("llama2c/tok512.model") + " --clip " + fixture("tiny_clip_a") + " --no-feature-cache --data " +
      fixture("mm_records.json") +
      " --adapter-len 3 --adapter-layers 2 --visual-width 8 --batch-size 3 --micro-batch-size 3 --lr 1e-2 --seed 2"
      " --no-progress";
  auto ok = [](const test::CommandResult& r) { ASSERT_EQ(r.exit_code, 0) << r.err; };
  ok(test::run_cli(common + " --steps 4 --out " + tmp.file("straight.safetensors")));
  ok(test::run_cli(common + " --steps 2 --save-every 1 --out " + tmp.file("a.safetensors")));
  ok(test::run_cli(common + " --steps 4 --resume " + tmp.file("a.safetensors.ckpt") + " --out " +
                   tmp.file("resumed.safetensors")));
  EXPECT_EQ(read_file(tmp.file("resumed.safetensors")), read_file(tmp.file("straight.safetensors")));
  const Adapter a = load_adapter(tmp.file("resumed.safetensors"));
  EXPECT_TRUE(a.visual.enabled());
  double fc2 = 0;
  for (float v : a.params["visual_proj.fc2.weight"]) fc2 += std::fabs(v);
  EXPECT_GT(fc2, 0.0) << "fc2 starts at zero and must have been trained";
}

// ---- a synthetic picture task ----------------------------------------------------------------

// A PNG of w x h RGB pixels (zlib at level 1; filter 0 on every row).
void write_png(const std::string& path, int w, int h, const std::vector<uint8_t>& rgb) {
  std::vector<uint8_t> raw;
  for (int y = 0; y < h; ++y) {
    raw.push_back(0);
    raw.insert(raw.end(), rgb.begin() + 3 * y * w, rgb.begin() + 3 * (y + 1) * w);
  }
  uLongf n = compressBound(static_cast<uLong>(raw.size()));
  std::vector<uint8_t> z(n);
  ASSERT_EQ(compress2(z.data(), &n, raw.data(), static_cast<uLong>(raw.size()), 1), Z_OK);
  z.resize(n);
  std::string out("\x89PNG\r\n\x1a\n", 8);
  auto chunk = [&](const char* type, const std::vector<uint8_t>& data) {
    auto be32 = [&](uint32_t v) {
      for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>(v >> (8 * i)));
    };
    be32(static_cast<uint32_t>(data.size()));
    std::string body(type, 4);
    body.append(data.begin(), data.end());
    out += body;
    be32(static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()))));
  };
  chunk("IHDR", {0, 0, 0, static_cast<uint8_t>(w), 0, 0, 0, static_cast<uint8_t>(h), 8, 2, 0, 0, 0});
  chunk("IDAT", z);
  chunk("IEND", {});
  test::write_text(path, out);
}

TEST(Multimodal, LearnsAPictureTaskTheTextAdapterCannot) {
  REQUIRE_SHARED_DATA("llama2c/stories260K.bin");
  test::TempDir tmp;
  const std::vector<std::pair<std::string, std::array<int, 3>>> colours = {
      {"red", {220, 30, 30}}, {"green", {30, 200, 40}}, {"blue", {30, 40, 220}}, {"yellow", {230, 220, 30}}};
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> noise(-40, 40), size(20, 44);
  nlohmann::json train = nlohmann::json::array(), train_text = nlohmann::json::array();
  std::vector<std::pair<std::string, std::string>> held;  // image, colour
  for (int i = 0; i < 96; ++i) {
    const auto& [name, rgb] = colours[static_cast<size_t>(i % 4)];
    const int w = size(rng), h = size(rng);
    std::vector<uint8_t> px(static_cast<size_t>(3 * w * h));
    for (size_t p = 0; p < px.size(); ++p) px[p] = static_cast<uint8_t>(std::clamp(rgb[p % 3] + noise(rng), 0, 255));
    const std::string file = "img" + std::to_string(i) + ".png";
    write_png(tmp.file(file), w, h, px);
    nlohmann::json r = {
        {"instruction", "What colour is the picture?"}, {"input", ""}, {"output", "It is " + name + "."}};
    if (i < 64) {
      train_text.push_back(r);
      r["image"] = file;
      train.push_back(r);
    } else {
      held.push_back({tmp.file(file), name});
    }
  }
  test::write_text(tmp.file("train.json"), train.dump());
  test::write_text(tmp.file("train_text.json"), train_text.dump());
  const std::string model =
      " -m " + test::shared_path("llama2c/stories260K.bin") + " -t " + test::shared_path("llama2c/tok512.model");
  const std::string common =
      " --adapter-len 4 --adapter-layers 3 --epochs 12 --batch-size 16 --lr 3e-2 --seed 1 --no-progress";
  const std::string clip = " --clip " + fixture("tiny_clip_a") + " --no-feature-cache";
  test::CommandResult r = test::run_cli("finetune" + model + clip + common + " --data " + tmp.file("train.json") +
                                        " --out " + tmp.file("mm.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_cli("finetune" + model + common + " --data " + tmp.file("train_text.json") + " --out " +
                    tmp.file("text.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.err;

  Base b = load_base();
  auto tok = load_tokenizer(test::shared_path("llama2c/tok512.model"));
  const std::vector<int> prompt = tok->encode(alpaca_prompt("What colour is the picture?", ""), true, false);
  auto exact = [&](const std::string& adapter_file, bool images) {
    const Adapter a = load_adapter(adapter_file, &b.w->config);
    InferenceModel im(*b.w, 256);
    im.set_adapter(&a);
    int right = 0;
    for (const auto& [image, name] : held) {
      im.set_image(images ? b.store->features(image).data() : nullptr);
      Sampler greedy(SamplerOptions{0.0f, 1.0f, 0, 1});
      const std::string out = generate(im, *tok, prompt, greedy, 12, nullptr);
      right += out.rfind("It is " + name + ".", 0) == 0;
    }
    return right;
  };
  const int mm = exact(tmp.file("mm.safetensors"), true), text = exact(tmp.file("text.safetensors"), false);
  std::printf("  held-out exact: multi-modal %d/%zu, text-only %d/%zu (chance %zu)\n", mm, held.size(), text,
              held.size(), held.size() / 4);
  EXPECT_GE(mm, static_cast<int>(0.9 * static_cast<double>(held.size())));
  EXPECT_LE(text, static_cast<int>(held.size() / 4));  // one answer for every picture at best
}

}  // namespace
}  // namespace la
