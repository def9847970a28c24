// Times llama.cpp's CLIP image encode (tools/mtmd/clip.cpp: clip_encode_float_image, i.e.
// clip_image_encode on pixels we give it) for docs/PERFORMANCE.md, "Issue 13". The pixels are
// float32 HWC, already normalised (bench/clip_compare.py writes them), so llama.cpp's own
// preprocessing is not timed. Loads once (clip_init with its warm-up), encodes once more untimed,
// then times N encodes and prints each and the median; writes the last output to OUT.
// Not part of our build: bench/build_llama_clip.sh compiles it with llama.cpp's sources.
//   llama_clip_bench MMPROJ.gguf PIXELS.f32 SIZE THREADS N [OUT.f32] [FLASH_ATTN -1|0|1]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "clip.h"
int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr, "usage: %s mmproj.gguf pixels.f32 size threads iters [out.f32] [flash 0/1/-1]\n", argv[0]);
    return 2;
  }
  const char* model = argv[1];
  const char* pix = argv[2];
  const int S = std::atoi(argv[3]), threads = std::atoi(argv[4]), iters = std::atoi(argv[5]);
  clip_context_params p{};
  p.use_gpu = false;
  p.flash_attn_type = argc > 7 ? (clip_flash_attn_type)std::atoi(argv[7]) : CLIP_FLASH_ATTN_TYPE_AUTO;
  p.image_min_tokens = -1;
  p.image_max_tokens = -1;
  p.warmup = true;
  clip_init_result r = clip_init(model, p);
  if (!r.ctx_v) {
    std::fprintf(stderr, "clip_init failed\n");
    return 1;
  }
  std::vector<float> img(size_t(S) * S * 3);
  FILE* f = std::fopen(pix, "rb");
  if (!f || std::fread(img.data(), sizeof(float), img.size(), f) != img.size()) {
    std::fprintf(stderr, "bad pixels\n");
    return 1;
  }
  std::fclose(f);
  std::vector<float> out(clip_embd_nbytes_by_img(r.ctx_v, S, S) / sizeof(float));
  std::vector<double> ms;
  for (int i = 0; i < iters + 1; ++i) {  // the first is a warm-up
    auto t0 = std::chrono::steady_clock::now();
    if (!clip_encode_float_image(r.ctx_v, threads, img.data(), S, S, out.data())) return 1;
    auto t1 = std::chrono::steady_clock::now();
    if (i > 0) ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  for (double m : ms) std::printf("encode %.1f ms\n", m);
  std::sort(ms.begin(), ms.end());
  std::printf("median %.1f ms over %zu\n", ms[ms.size() / 2], ms.size());
  if (argc > 6) {
    FILE* o = std::fopen(argv[6], "wb");
    std::fwrite(out.data(), sizeof(float), out.size(), o);
    std::fclose(o);
  }
  clip_free(r.ctx_v);
  return 0;
}
