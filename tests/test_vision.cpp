// The image side of the multi-modal adapter (SPEC §8) against the implementations people trust,
// through fixtures made by tests/reference/clip_fixtures.py (PIL, PyTorch, transformers):
//   - decoding: every fixture image equals PIL's Image.open(f).convert("RGB");
//   - preprocessing: PIL's bicubic resize + torchvision's centre crop, every pixel within 1/255;
//   - the CLIP tower: embedding and multi-scale features within 1e-4 relative L2 of transformers'
//     (float64), from the Hugging Face directory and from GGUFs we write of it;
//   - hostile images: one-line errors naming the file, nothing allocated for a lying header.
#include <zlib.h>

#include <cstdio>
// clang-format off
#include <jpeglib.h>  // needs <cstdio> first
// clang-format on

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "la/core/error.h"
#include "la/core/mapped_file.h"
#include "la/formats/gguf.h"
#include "la/io/clip_file.h"
#include "la/kernels/gemm.h"
#include "la/vision/clip.h"
#include "la/vision/feature_store.h"
#include "la/vision/image.h"
#include "la/vision/preprocess.h"
#include "support/test_support.h"

namespace la {
namespace {

[[maybe_unused]] const bool kOneThread = test::run_library_on_one_thread();

std::string fixture(const std::string& rel) {
  return std::string(LA_SOURCE_DIR) + "/tests/fixtures/clip/" + rel;
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  const std::string s = read_file(path);
  return {s.begin(), s.end()};
}

nlohmann::json read_json(const std::string& path) {
  return nlohmann::json::parse(read_file(path));
}

// A case's image path: in the fixtures, or SHARED/... in ../shared/data (empty when absent).
std::string case_image(const nlohmann::json& c) {
  const std::string rel = c["image"].get<std::string>();
  if (rel.rfind("SHARED/", 0) == 0) {
    const std::string shared = rel.substr(7);
    return test::shared_file_exists(shared) ? test::shared_path(shared) : std::string();
  }
  return fixture(rel);
}

// Largest |a - b| over the bytes, and how many differ.
std::pair<int, int64_t> byte_diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  int worst = 0;
  int64_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const int d = std::abs(int(a[i]) - int(b[i]));
    worst = std::max(worst, d);
    n += d != 0;
  }
  return {worst, n};
}

// For an image kept out of the tree: per-channel sums and every step-th pixel.
void expect_summary(const RgbImage& im, const nlohmann::json& sums, const nlohmann::json& sample, int64_t step) {
  std::array<int64_t, 3> s{};
  for (int64_t i = 0; i < im.width * im.height; ++i)
    for (int c = 0; c < 3; ++c) s[static_cast<size_t>(c)] += im.pixels[static_cast<size_t>(3 * i + c)];
  for (int c = 0; c < 3; ++c)  // within 1/255 per pixel on average
    EXPECT_NEAR(static_cast<double>(s[static_cast<size_t>(c)]), sums[static_cast<size_t>(c)].get<double>(),
                static_cast<double>(im.width * im.height));
  size_t k = 0;
  for (int64_t y = 0; y < im.height; y += step)
    for (int64_t x = 0; x < im.width; x += step)
      for (int c = 0; c < 3; ++c, ++k) {
        ASSERT_LT(k, sample.size());
        ASSERT_LE(std::abs(int(im.at(x, y)[c]) - sample[k].get<int>()), 1) << x << "," << y;
      }
  EXPECT_EQ(k, sample.size());
}

TEST(Image, DecodesAsPil) {
  const nlohmann::json p = read_json(fixture("preprocess.json"));
  std::set<std::string> seen;
  int64_t differing = 0, checked = 0;
  for (const auto& c : p["cases"]) {
    const std::string path = case_image(c);
    if (path.empty() || !seen.insert(path).second) continue;
    SCOPED_TRACE(path);
    const RgbImage im = load_image(path);
    EXPECT_EQ(im.width, c["width"].get<int64_t>());
    EXPECT_EQ(im.height, c["height"].get<int64_t>());
    if (c["decoded"].is_null()) {
      expect_summary(im, c["decoded_sums"], c["decoded_sample"], p["sample_step"]["decoded"].get<int64_t>());
      continue;
    }
    const std::vector<uint8_t> want = read_bytes(fixture(c["decoded"].get<std::string>()));
    ASSERT_EQ(im.pixels.size(), want.size());
    const auto [worst, n] = byte_diff(im.pixels, want);
    EXPECT_LE(worst, 1);
    differing += n;
    checked += static_cast<int64_t>(want.size());
  }
  EXPECT_GE(seen.size(), 16u);
  // The decoders are PIL's own libraries: expect the same bytes, not just within 1.
  EXPECT_EQ(differing, 0) << "of " << checked;
}

TEST(Image, PreprocessesAsPil) {
  const nlohmann::json p = read_json(fixture("preprocess.json"));
  int cases = 0;
  int64_t differing = 0;
  for (const auto& c : p["cases"]) {
    const std::string path = case_image(c);
    if (path.empty()) continue;
    const int64_t size = c["size"].get<int64_t>();
    SCOPED_TRACE(path + " size " + std::to_string(size));
    const RgbImage im = load_image(path);
    const auto shape = clip_resize_shape(im.width, im.height, size);
    EXPECT_EQ(shape[0], c["resized"][0].get<int64_t>());
    EXPECT_EQ(shape[1], c["resized"][1].get<int64_t>());
    const RgbImage out = clip_resize_crop(im, size);
    ASSERT_EQ(out.width, size);
    ASSERT_EQ(out.height, size);
    ++cases;
    if (c["expected"].is_null()) {
      expect_summary(out, c["expected_sums"], c["expected_sample"], p["sample_step"]["expected"].get<int64_t>());
      continue;
    }
    const std::vector<uint8_t> want = read_bytes(fixture(c["expected"].get<std::string>()));
    ASSERT_EQ(out.pixels.size(), want.size());
    const auto [worst, n] = byte_diff(out.pixels, want);
    EXPECT_LE(worst, 1);
    differing += n;
  }
  EXPECT_GE(cases, 50);
  EXPECT_EQ(differing, 0) << "PIL's fixed-point resampling is reproduced to the bit";
}

TEST(Image, CentreCropRoundsHalvesToEven) {
  RgbImage im;
  im.width = 7;
  im.height = 6;
  im.pixels.resize(7 * 6 * 3);
  for (size_t i = 0; i < im.pixels.size(); ++i) im.pixels[i] = static_cast<uint8_t>(i / 3);
  // (7-4)/2 = 1.5 -> 2; (6-4)/2 = 1 -> 1. (5-4)/2 = 0.5 -> 0 (ties to even).
  const RgbImage a = center_crop(im, 4);
  EXPECT_EQ(a.at(0, 0)[0], 1 * 7 + 2);
  const RgbImage b = center_crop(im, 5);  // (7-5)/2 = 1, (6-5)/2 = 0.5 -> 0
  EXPECT_EQ(b.at(0, 0)[0], 0 * 7 + 1);
  EXPECT_THROW(center_crop(im, 8), Error);
}

// ---- CLIP -------------------------------------------------------------------------------------

double rel_l2(const std::vector<float>& got, const nlohmann::json& want) {
  double num = 0, den = 0;
  EXPECT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    const double w = want[i].get<double>();
    num += (got[i] - w) * (got[i] - w);
    den += w * w;
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

struct ClipCase {
  nlohmann::json c;
  std::vector<float> pixels;
};

std::vector<ClipCase> clip_cases(const std::string& model) {
  std::vector<ClipCase> out;
  const nlohmann::json ref = read_json(fixture("clip_reference.json"));
  for (const auto& c : ref["cases"]) {
    if (c["model"] != model) continue;
    const RgbImage im = load_image(fixture(c["image"].get<std::string>()));
    out.push_back({c, clip_preprocess(im, c["size"].get<int64_t>(), ImageNorm{})});
  }
  return out;
}

TEST(Clip, LoadsHuggingFaceShapesAndFeatureLayers) {
  const auto w = load_clip(fixture("tiny_clip_a"));
  EXPECT_EQ(w->config.width, 32);
  EXPECT_EQ(w->config.n_layers, 6);
  EXPECT_EQ(w->config.embed_dim, 16);
  EXPECT_EQ(w->config.tokens(), 17);
  EXPECT_EQ(w->config.feature_layers_string(), "2,4,6");
  ClipConfig l14;  // ViT-L/14: 8, 16, 24 (SPEC §8)
  EXPECT_EQ(l14.feature_layers_string(), "8,16,24");
  EXPECT_EQ(l14.feature_dim(), 2304);
  EXPECT_EQ(l14.tokens(), 257);
}

TEST(Clip, MatchesTransformers) {
  for (const std::string model : {"tiny_clip_a", "tiny_clip_b"}) {
    SCOPED_TRACE(model);
    const auto w = load_clip(fixture(model));
    const auto cases = clip_cases(model);
    ASSERT_GE(cases.size(), 2u);
    for (const ClipCase& k : cases) {
      SCOPED_TRACE(k.c["image"].get<std::string>());
      // Our preprocessing gives transformers' input to float rounding.
      const auto& px = k.c["pixel_values"];
      ASSERT_EQ(px.size(), k.pixels.size());
      double worst = 0;
      for (size_t i = 0; i < px.size(); ++i) worst = std::max(worst, std::fabs(k.pixels[i] - px[i].get<double>()));
      EXPECT_LT(worst, 1e-5);
      const ClipOutput o = clip_encode(*w, k.pixels.data());
      EXPECT_LT(rel_l2(o.embedding, k.c["embedding"]), 1e-4);
      EXPECT_LT(rel_l2(o.features, k.c["features"]), 1e-4);
    }
  }
}

TEST(Clip, GgufRoundTrips) {
  test::TempDir tmp;
  const auto hf = load_clip(fixture("tiny_clip_a"));
  const auto cases = clip_cases("tiny_clip_a");
  ASSERT_FALSE(cases.empty());
  const ClipOutput want = clip_encode(*hf, cases[0].pixels.data());
  // F32: the same weights, so the same bits. F16 and Q8_0: within their rounding.
  for (auto [type, tol] : {std::pair{DType::F32, 0.0}, {DType::F16, 2e-3}, {DType::Q8_0, 3e-2}}) {
    SCOPED_TRACE(dtype_name(type));
    const std::string path = tmp.file(std::string("clip-") + dtype_name(type) + ".gguf");
    save_clip_gguf(*hf, type, path);
    const auto g = load_clip(path);
    EXPECT_EQ(g->format, "gguf-clip");
    EXPECT_EQ(g->config.shape_string(), hf->config.shape_string());
    // F16 is widened to f32 at load where products on it would widen it for every image.
    EXPECT_EQ(g->layers[0].wq.type, type == DType::F16 && !gemm_available() ? DType::F32 : type);
    const ClipOutput got = clip_encode(*g, cases[0].pixels.data());
    if (tol == 0.0) {
      EXPECT_EQ(got.features, want.features);
    } else {
      nlohmann::json ref = want.features;
      const double e = rel_l2(got.features, ref);
      EXPECT_LT(e, tol);
      EXPECT_GT(e, 0.0);
    }
    EXPECT_LT(rel_l2(got.features, cases[0].c["features"]), type == DType::F32 ? 1e-4 : tol);
  }
}

TEST(Clip, GgufWithOlderMlpNamesLoadsByShape) {
  // Older llama.cpp converters wrote fc1 as ffn_down and fc2 as ffn_up: rename ours that way.
  test::TempDir tmp;
  const auto hf = load_clip(fixture("tiny_clip_a"));
  const std::string path = tmp.file("clip.gguf"), swapped = tmp.file("swapped.gguf");
  save_clip_gguf(*hf, DType::F32, path);
  GgufFile f = GgufFile::open(path);
  GgufWriter w;
  for (const auto& [key, v] : f.metadata()) {
    if (v.type == GgufType::UINT32) w.set_u32(key, static_cast<uint32_t>(std::get<uint64_t>(v.scalar)));
    if (v.type == GgufType::FLOAT32) w.set_f32(key, static_cast<float>(std::get<double>(v.scalar)));
    if (v.type == GgufType::BOOL) w.set_bool(key, std::get<bool>(v.scalar));
    if (v.type == GgufType::STRING) w.set_string(key, std::get<std::string>(v.scalar));
    if (v.is_array()) w.set_f32s(key, {v.numbers.begin(), v.numbers.end()});
  }
  for (const GgufTensor& t : f.tensors()) {
    std::string name = t.name;
    if (name.find("ffn_up") != std::string::npos)
      name.replace(name.find("ffn_up"), 6, "ffn_down");
    else if (name.find("ffn_down") != std::string::npos)
      name.replace(name.find("ffn_down"), 8, "ffn_up");
    w.add_tensor(name, t.dims, t.type, t.data, t.nbytes);
  }
  w.write(swapped);
  const auto cases = clip_cases("tiny_clip_a");
  ASSERT_FALSE(cases.empty());
  EXPECT_EQ(clip_encode(*load_clip(swapped), cases[0].pixels.data()).features,
            clip_encode(*hf, cases[0].pixels.data()).features);
}

// The command line: encode-image --json on the Hugging Face directory and on GGUFs written by
// convert --clip, against transformers (float64). F32 and F16 within 1e-4 and 2e-3 relative L2;
// Q8_0 (every layer matrix 8-bit) within 3e-2.
TEST(Clip, EncodeImageJsonMatchesTransformers) {
  test::TempDir tmp;
  const nlohmann::json ref = read_json(fixture("clip_reference.json"));
  const nlohmann::json& c = ref["cases"][0];
  ASSERT_EQ(c["model"], "tiny_clip_a");
  std::vector<std::pair<std::string, double>> clips = {{fixture("tiny_clip_a"), 1e-4}};
  for (auto [type, tol] : {std::pair{"f32", 1e-4}, {"f16", 2e-3}, {"q8_0", 3e-2}}) {
    const std::string out = tmp.file(std::string("clip-") + type + ".gguf");
    const test::CommandResult r =
        test::run_cli("convert --clip " + fixture("tiny_clip_a") + " --type " + type + " --out " + out);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    clips.push_back({out, tol});
  }
  for (const auto& [clip, tol] : clips) {
    SCOPED_TRACE(clip);
    const test::CommandResult r =
        test::run_cli("encode-image --json --clip " + clip + " --image " + fixture(c["image"].get<std::string>()));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const nlohmann::json j = nlohmann::json::parse(r.out);
    EXPECT_LT(rel_l2(j["embedding"].get<std::vector<float>>(), c["embedding"]), tol);
    EXPECT_LT(rel_l2(j["features"].get<std::vector<float>>(), c["features"]), tol);
  }
  // A bad image: one line naming the file, non-zero exit.
  test::write_text(tmp.file("bad.png"), "\x89PNG\r\n\x1a\n not really");
  const test::CommandResult bad =
      test::run_cli("encode-image --clip " + fixture("tiny_clip_a") + " --image " + tmp.file("bad.png"));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find(tmp.file("bad.png")), std::string::npos) << bad.err;
}

// The four shapes people use, from their Hugging Face configs' fields (openai/clip-vit-*).
TEST(Clip, ConfigsOfTheCommonShapes) {
  struct Shape {
    const char* name;
    int width, ffn, layers, heads, image, patch, proj;
    int64_t tokens;
    const char* blocks;
  };
  for (const Shape& s : {Shape{"ViT-B/32", 768, 3072, 12, 12, 224, 32, 512, 50, "4,8,12"},
                         Shape{"ViT-B/16", 768, 3072, 12, 12, 224, 16, 512, 197, "4,8,12"},
                         Shape{"ViT-L/14", 1024, 4096, 24, 16, 224, 14, 768, 257, "8,16,24"},
                         Shape{"ViT-L/14-336", 1024, 4096, 24, 16, 336, 14, 768, 577, "8,16,24"}}) {
    SCOPED_TRACE(s.name);
    const nlohmann::json cfg = {{"model_type", "clip"},
                                {"projection_dim", s.proj},
                                {"vision_config",
                                 {{"hidden_size", s.width},
                                  {"intermediate_size", s.ffn},
                                  {"num_hidden_layers", s.layers},
                                  {"num_attention_heads", s.heads},
                                  {"image_size", s.image},
                                  {"patch_size", s.patch},
                                  {"projection_dim", s.proj},
                                  {"hidden_act", "quick_gelu"},
                                  {"layer_norm_eps", 1e-5}}}};
    const ClipConfig c = clip_config_from_hf(cfg, "config.json");
    EXPECT_EQ(c.tokens(), s.tokens);
    EXPECT_EQ(c.head_dim(), 64);
    EXPECT_EQ(c.feature_layers_string(), s.blocks);
    EXPECT_EQ(c.feature_dim(), 3 * s.proj);
  }
  // A vision-only config (CLIPVisionModelWithProjection) and Hugging Face's defaults (ViT-B/32).
  EXPECT_EQ(clip_config_from_hf({{"model_type", "clip_vision_model"}}, "c.json").tokens(), 50);
  EXPECT_THROW(clip_config_from_hf({{"model_type", "llama"}}, "c.json"), Error);
  EXPECT_THROW(clip_config_from_hf({{"vision_config", {{"image_size", 225}, {"patch_size", 14}}}}, "c.json"), Error);
}

// Each distinct image is encoded once per run; the disk cache serves the next run, and a damaged
// cache entry is encoded again.
TEST(Clip, FeatureStoreCachesPerRunAndOnDisk) {
  test::TempDir tmp;
  const auto clip = load_clip(fixture("tiny_clip_a"));
  const std::string img = fixture("images/rgb_37x23.jpg"), img2 = fixture("images/rgba_23x45.png");
  std::vector<float> first;
  {
    ImageFeatureStore s(*clip, tmp.path());
    first = s.features(img);
    s.features(img);
    s.features(img2);
    EXPECT_EQ(s.encoded(), 2);
    EXPECT_EQ(s.from_disk(), 0);
  }
  ImageFeatureStore again(*clip, tmp.path());
  EXPECT_EQ(again.features(img), first);
  EXPECT_EQ(again.encoded(), 0);
  EXPECT_EQ(again.from_disk(), 1);
  for (const auto& e : std::filesystem::directory_iterator(again.cache_dir())) test::write_text(e.path(), "short");
  ImageFeatureStore damaged(*clip, tmp.path());
  EXPECT_EQ(damaged.features(img), first);
  EXPECT_EQ(damaged.encoded(), 1);
  ImageFeatureStore none(*clip, "");
  EXPECT_EQ(none.features(img), first);
  EXPECT_EQ(none.encoded(), 1);
  EXPECT_THROW(none.features(tmp.file("missing.png")), Error);
}

TEST(Clip, ShapeErrorsNameTheTensor) {
  test::TempDir tmp;
  EXPECT_THROW(load_clip(tmp.path()), Error);  // no config.json
  const std::string f = tmp.file("x.bin");
  test::write_text(f, "not a model");
  try {
    load_clip(f);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a CLIP model"), std::string::npos) << e.what();
  }
}

// ---- hostile images ---------------------------------------------------------------------------

std::string error_of(const std::vector<uint8_t>& bytes) {
  try {
    decode_image(bytes, "bad.img");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void put_be32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + static_cast<size_t>(i)] = static_cast<uint8_t>(v >> (24 - 8 * i));
}

// A JPEG of `components` channels in `space` (4: CMYK; 2: an unusual one), written by libjpeg.
std::vector<uint8_t> jpeg_with(int components, J_COLOR_SPACE space) {
  jpeg_compress_struct c{};
  jpeg_error_mgr err{};
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* out = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &out, &size);
  c.image_width = 8;
  c.image_height = 8;
  c.input_components = components;
  c.in_color_space = space;
  jpeg_set_defaults(&c);
  jpeg_set_colorspace(&c, space);
  jpeg_start_compress(&c, TRUE);
  std::vector<uint8_t> row(static_cast<size_t>(8 * components), 100);
  while (c.next_scanline < c.image_height) {
    JSAMPROW r[1] = {row.data()};
    jpeg_write_scanlines(&c, r, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  std::vector<uint8_t> bytes(out, out + size);
  free(out);  // NOLINT: allocated by libjpeg
  return bytes;
}

// A PNG whose IHDR claims w x h, with a correct CRC (so the decoder gets as far as the size).
std::vector<uint8_t> png_claiming(uint32_t w, uint32_t h) {
  std::vector<uint8_t> b = read_bytes(fixture("images/rgb_41x19.png"));
  put_be32(b, 16, w);
  put_be32(b, 20, h);
  put_be32(b, 29, static_cast<uint32_t>(crc32(0, b.data() + 12, 17)));  // "IHDR" + 13 bytes
  return b;
}

TEST(Image, HostileFilesGetOneLineErrorsNamingTheFile) {
  const std::vector<uint8_t> jpg = read_bytes(fixture("images/rgb_37x23.jpg"));
  const std::vector<uint8_t> png = read_bytes(fixture("images/rgb_41x19.png"));
  std::vector<std::pair<std::string, std::vector<uint8_t>>> bad = {
      {"empty", {}},
      {"text", {'h', 'e', 'l', 'l', 'o'}},
      {"truncated jpeg", {jpg.begin(), jpg.begin() + static_cast<long>(jpg.size() / 2)}},
      {"jpeg header only", {jpg.begin(), jpg.begin() + 20}},
      {"truncated png", {png.begin(), png.begin() + static_cast<long>(png.size() / 2)}},
      {"png signature only", {png.begin(), png.begin() + 8}},
      {"0x0 png", png_claiming(0, 0)},
      {"30000x30000 png", png_claiming(30000, 30000)},
  };
  // A JPEG whose frame header claims 30000 x 30000.
  std::vector<uint8_t> big = jpg;
  for (size_t i = 0; i + 8 < big.size(); ++i)
    if (big[i] == 0xff && (big[i + 1] == 0xc0 || big[i + 1] == 0xc2)) {
      big[i + 5] = big[i + 7] = 30000 >> 8;
      big[i + 6] = big[i + 8] = 30000 & 0xff;
      break;
    }
  bad.push_back({"30000x30000 jpeg", big});
  // Flipped bytes in the middle of the compressed data.
  std::vector<uint8_t> corrupt = png;
  for (size_t i = 60; i < 90 && i < corrupt.size(); ++i) corrupt[i] ^= 0x5a;
  bad.push_back({"corrupt png", corrupt});
  bad.push_back({"cmyk jpeg", jpeg_with(4, JCS_CMYK)});
  bad.push_back({"2-channel jpeg", jpeg_with(2, JCS_UNKNOWN)});
  for (const auto& [what, bytes] : bad) {
    SCOPED_TRACE(what);
    const std::string e = error_of(bytes);
    ASSERT_FALSE(e.empty());
    EXPECT_EQ(e.rfind("bad.img: ", 0), 0u) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
  EXPECT_NE(error_of(png_claiming(30000, 30000)).find("more than"), std::string::npos);
  EXPECT_NE(error_of(big).find("more than"), std::string::npos) << error_of(big);
  EXPECT_NE(error_of(png_claiming(0, 0)).find("bad PNG"), std::string::npos);
  EXPECT_NE(error_of(jpeg_with(4, JCS_CMYK)).find("4 colour components (CMYK or YCCK)"), std::string::npos);
  EXPECT_NE(error_of(jpeg_with(2, JCS_UNKNOWN)).find("2 colour components"), std::string::npos);
}

}  // namespace
}  // namespace la
