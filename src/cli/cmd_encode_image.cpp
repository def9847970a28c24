// encode-image (SPEC §8): one image through the CLIP tower; and the --clip plumbing every
// command that takes images shares.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "la/core/error.h"
#include "la/io/clip_file.h"
#include "la/vision/image.h"
#include "la/vision/preprocess.h"

namespace la::cli {

void ClipArgs::add_to(CLI::App* cmd) {
  cmd->add_option("--clip", clip, "CLIP image tower: a Hugging Face CLIP directory or a CLIP GGUF (multi-modal)");
  cmd->add_option("--feature-cache", feature_cache,
                  "Folder of the on-disk image-feature cache (default: $LA_FEATURE_CACHE or ~/.cache/llama-adapter)");
  cmd->add_flag("--no-feature-cache", no_feature_cache, "Encode every image in this run; read and write no cache");
}

LoadedClip load_clip_args(const ClipArgs& a) {
  LoadedClip lc;
  if (!a.given()) return lc;
  lc.weights = load_clip(a.clip);
  const std::string dir = a.no_feature_cache        ? ""
                          : a.feature_cache.empty() ? default_feature_cache_dir()
                                                    : a.feature_cache;
  lc.store = std::make_unique<ImageFeatureStore>(*lc.weights, dir);
  return lc;
}

int64_t attach_images(TokenizedDataset& d, const std::vector<AlpacaRecord>& records, LoadedClip& clip,
                      const std::string& data_path) {
  int64_t n = 0;
  for (size_t i = 0; i < records.size() && i < d.examples.size(); ++i) {
    if (records[i].image.empty()) continue;
    if (!clip.store)
      fail("{}: record {} has an image ({}); images need --clip", data_path, i, printable(records[i].image));
    d.examples[i].image = clip.store->features(records[i].image).data();
    ++n;
  }
  if (n > 0)
    std::fprintf(stderr, "images: %lld examples with an image; %lld encoded, %lld from the feature cache\n",
                 static_cast<long long>(n), static_cast<long long>(clip.store->encoded()),
                 static_cast<long long>(clip.store->from_disk()));
  return n;
}

void check_adapter_clip(const Adapter& a, const std::string& adapter_path, const LoadedClip& clip) {
  if (!clip.weights) return;
  if (!a.visual.enabled())
    fail("{}: a text-only adapter: --clip needs a multi-modal one (fine-tuned with --clip)", adapter_path);
  const ClipConfig& c = clip.weights->config;
  const VisualSpec& v = a.visual;
  if (v.in != c.feature_dim() || (!v.clip_layers.empty() && v.clip_layers != c.feature_layers_string()) ||
      (v.clip_embed_dim > 0 && v.clip_embed_dim != c.embed_dim) ||
      (v.clip_image_size > 0 && v.clip_image_size != c.image_size))
    fail(
        "{}: the adapter was made for a CLIP with features of {} values (blocks {}, embed {}, image {}), but {} has "
        "{} (blocks {}, embed {}, image {})",
        adapter_path, v.in, v.clip_layers, v.clip_embed_dim, v.clip_image_size, clip.weights->path, c.feature_dim(),
        c.feature_layers_string(), c.embed_dim, c.image_size);
}

void register_encode_image(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("encode-image", "One image through the CLIP image tower: embedding and multi-scale features");
  struct Args {
    std::string clip, image;
    bool json = false;
    int repeat = 1;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--clip", a->clip, "CLIP image tower: a Hugging Face CLIP directory or a CLIP GGUF")->required();
  cmd->add_option("-i,--image", a->image, "JPEG or PNG image")->required();
  cmd->add_flag("--json", a->json,
                "Print one JSON object: embedding (E values) and features (the multi-scale features, M*E values)");
  cmd->add_option("--repeat", a->repeat,
                  "Encode N times in all: the first is a warm-up, the median of the others is reported (benchmarks)")
      ->default_val(1)
      ->check(CLI::Range(1, 1000));
  add_threads_flag(cmd);
  cmd->callback([a] {
    const auto clip = load_clip(a->clip);
    const ClipConfig& c = clip->config;
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    const RgbImage im = load_image(a->image);
    const std::vector<float> pixels = clip_preprocess(im, c.image_size, c.norm);
    const auto t1 = clock::now();
    const ClipOutput out = clip_encode(*clip, pixels.data());
    const auto t2 = clock::now();
    auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
    // With --repeat: the first encode (page faults of the mapped weights, cold caches) is the
    // warm-up; the median of the others is what one more image costs.
    std::vector<double> times;
    for (int r = 1; r < a->repeat; ++r) {
      const auto s = clock::now();
      (void)clip_encode(*clip, pixels.data());
      times.push_back(ms(clock::now() - s));
    }
    std::sort(times.begin(), times.end());
    if (a->json) {
      nlohmann::ordered_json j;
      j["embedding"] = out.embedding;
      j["features"] = out.features;
      std::printf("%s\n", j.dump().c_str());
      return;
    }
    double norm = 0;
    for (float v : out.embedding) norm += static_cast<double>(v) * v;
    std::printf("clip:        %s (%s)\n", a->clip.c_str(), c.shape_string().c_str());
    std::printf("image:       %s, %lldx%lld -> %lldx%lld\n", a->image.c_str(), static_cast<long long>(im.width),
                static_cast<long long>(im.height), static_cast<long long>(c.image_size),
                static_cast<long long>(c.image_size));
    std::printf("embedding:   %lld values, L2 norm %.4f\n", static_cast<long long>(out.embedding.size()),
                std::sqrt(norm));
    std::printf("features:    %lld values (blocks %s)\n", static_cast<long long>(out.features.size()),
                c.feature_layers_string().c_str());
    std::printf("time:        preprocess %.1f ms, encode %.1f ms\n", ms(t1 - t0), ms(t2 - t1));
    if (!times.empty())
      std::printf("repeat:      median encode %.1f ms over %zu more runs (min %.1f, max %.1f)\n",
                  times[times.size() / 2], times.size(), times.front(), times.back());
  });
}

}  // namespace la::cli
