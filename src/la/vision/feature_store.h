// Images' multi-scale CLIP features for a run (SPEC §8): each distinct image (by path) is encoded
// once per run, as the official training pre-extracted its features; and an on-disk cache keyed
// by the image's bytes and the CLIP's identity is reused across runs.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "la/vision/clip.h"

namespace la {

// $LA_FEATURE_CACHE, else $XDG_CACHE_HOME/llama-adapter/clip-features, else
// ~/.cache/llama-adapter/clip-features ("" when none of them can be formed).
std::string default_feature_cache_dir();

class ImageFeatureStore {
 public:
  // cache_dir "": no disk cache (every image is encoded once in this run).
  ImageFeatureStore(const ClipWeights& clip, std::string cache_dir);
  // The features [M*E] of the image at `path` (decoded, preprocessed, encoded; or from a cache).
  // The reference stays valid for the store's lifetime. Errors name the file.
  const std::vector<float>& features(const std::string& path);
  int64_t encoded() const { return encoded_; }           // images run through CLIP
  int64_t from_disk() const { return from_disk_; }       // images read from the disk cache
  const std::string& cache_dir() const { return dir_; }  // this CLIP's folder of the cache, or ""

 private:
  const ClipWeights& clip_;
  std::string dir_;
  std::map<std::string, std::vector<float>> by_path_;
  int64_t encoded_ = 0, from_disk_ = 0;
};

}  // namespace la
