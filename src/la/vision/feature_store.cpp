#include "la/vision/feature_store.h"

#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "la/core/error.h"
#include "la/core/mapped_file.h"
#include "la/vision/image.h"
#include "la/vision/preprocess.h"

namespace la {
namespace {

// FNV-1a, 64 bits: a cache key, not a security boundary (a collision would return another
// image's features; the key also covers the length).
struct Fnv {
  uint64_t h = 1469598103934665603ULL;
  void add(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ULL;
  }
  void add(const std::string& s) { add(s.data(), s.size() + 1); }
  void add(uint64_t v) { add(&v, sizeof v); }
};

// The CLIP's identity: its shape and, for each file, its size, modification time and first and
// last 64 KiB (hashing gigabytes of weights on every run would cost seconds).
uint64_t clip_key(const ClipWeights& w) {
  Fnv f;
  f.add(w.format);
  f.add(w.config.shape_string());
  f.add(w.config.feature_layers_string());
  for (const auto& file : w.files) {
    f.add(static_cast<uint64_t>(file->size()));
    std::error_code ec;
    const auto t = std::filesystem::last_write_time(file->path(), ec);
    f.add(static_cast<uint64_t>(ec ? 0 : t.time_since_epoch().count()));
    const size_t n = std::min<size_t>(file->size(), 65536);
    f.add(file->data(), n);
    f.add(file->data() + file->size() - n, n);
  }
  return f.h;
}

}  // namespace

std::string default_feature_cache_dir() {
  if (const char* d = std::getenv("LA_FEATURE_CACHE"); d && *d) return d;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/llama-adapter/clip-features";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/llama-adapter/clip-features";
  return "";
}

ImageFeatureStore::ImageFeatureStore(const ClipWeights& clip, std::string cache_dir) : clip_(clip) {
  if (!cache_dir.empty()) dir_ = fmt::format("{}/{:016x}", cache_dir, clip_key(clip));
}

const std::vector<float>& ImageFeatureStore::features(const std::string& path) {
  if (auto it = by_path_.find(path); it != by_path_.end()) return it->second;
  const std::string bytes = read_file(path, size_t{1} << 30);
  const auto n = static_cast<size_t>(clip_.config.feature_dim());
  std::string cached;
  if (!dir_.empty()) {
    Fnv f;
    f.add(bytes.data(), bytes.size());
    f.add(static_cast<uint64_t>(bytes.size()));
    cached = fmt::format("{}/{:016x}.f32", dir_, f.h);
    if (file_exists(cached)) {
      const std::string data = read_file(cached);
      if (data.size() == n * sizeof(float)) {
        std::vector<float> v(n);
        std::memcpy(v.data(), data.data(), data.size());
        ++from_disk_;
        return by_path_.emplace(path, std::move(v)).first->second;
      }
    }
  }
  const RgbImage im = decode_image({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, path);
  const std::vector<float> pixels = clip_preprocess(im, clip_.config.image_size, clip_.config.norm);
  std::vector<float> v = clip_encode(clip_, pixels.data()).features;
  ++encoded_;
  if (!cached.empty()) {
    // The cache only saves time: a folder that cannot be written is not an error.
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    if (!ec) {
      try {
        write_file_atomic(cached, v.data(), v.size() * sizeof(float));
      } catch (const Error&) {
      }
    }
  }
  return by_path_.emplace(path, std::move(v)).first->second;
}

}  // namespace la
