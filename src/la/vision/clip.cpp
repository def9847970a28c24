#include "la/vision/clip.h"

#include <omp.h>

#include <cstring>

#include "la/core/error.h"
#include "la/kernels/convert.h"
#include "la/kernels/matmul.h"
#include "la/kernels/ops.h"
#include "la/kernels/rowwise.h"

namespace la {

std::vector<int64_t> ClipConfig::feature_layers() const {
  const int64_t N = n_layers;
  return {(N + 2) / 3, (2 * N + 2) / 3, N};
}

std::string ClipConfig::feature_layers_string() const {
  return fmt::format("{}", fmt::join(feature_layers(), ","));
}

std::string ClipConfig::shape_string() const {
  return fmt::format("image {}/{}, width {}, {} layers, {} heads, ffn {}, embed {}", image_size, patch_size, width,
                     n_layers, n_heads, ffn_dim, embed_dim);
}

void ClipConfig::validate(const std::string& source) const {
  auto bad = [&](const char* what) { fail("{}: invalid CLIP shape ({}): {}", source, shape_string(), what); };
  if (image_size <= 0 || patch_size <= 0 || width <= 0 || n_layers <= 0 || n_heads <= 0 || ffn_dim <= 0 ||
      embed_dim <= 0)
    bad("every size must be positive");
  if (image_size % patch_size != 0) bad("the image size is not a multiple of the patch size");
  if (image_size > 4096 || width > 16384 || n_layers > 256 || ffn_dim > 65536 || embed_dim > 16384)
    bad("a size is implausibly large");
  if (width % n_heads != 0) bad("the width is not a multiple of the head count");
  if (!(eps > 0.0f && eps < 1.0f)) bad("the LayerNorm epsilon must lie in (0, 1)");
}

const float* ClipWeights::own_f32(DType t, const void* src, int64_t n) {
  owned.emplace_back(static_cast<size_t>(n));
  convert_to_f32(t, src, owned.back().data(), n);
  return owned.back().data();
}

void ClipWeights::widen_half_matrices() {
  auto widen = [&](WeightMatrix& m) {
    if (m.type == DType::F16 || m.type == DType::BF16)
      m = WeightMatrix{DType::F32, own_f32(m.type, m.data, m.numel()), m.rows, m.cols};
  };
  widen(patch);
  widen(proj);
  for (ClipLayer& l : layers)
    for (WeightMatrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.fc1, &l.fc2}) widen(*m);
}

namespace {

// Full (unmasked) multi-head attention over T tokens: att = softmax(q k^T / sqrt(d)) v per head.
// Heads run in parallel, each on contiguous copies of its q, k, v columns.
void full_attention(float* att, const float* q, const float* k, const float* v, int64_t T, int64_t W, int64_t H) {
  const int64_t hd = W / H;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const RowwiseKernels& rk = rowwise_kernels();
  const int threads = static_cast<int>(std::min<int64_t>(H, omp_get_max_threads()));
  const auto per_thread = static_cast<size_t>(4 * T * hd + T * T);
  std::vector<float> work(per_thread * static_cast<size_t>(threads));
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t h = 0; h < H; ++h) {
    float* qh = work.data() + per_thread * static_cast<size_t>(omp_get_thread_num());
    float *kh = qh + T * hd, *vh = kh + T * hd, *oh = vh + T * hd, *s = oh + T * hd;
    for (int64_t t = 0; t < T; ++t) {
      std::memcpy(qh + t * hd, q + t * W + h * hd, static_cast<size_t>(hd) * sizeof(float));
      std::memcpy(kh + t * hd, k + t * W + h * hd, static_cast<size_t>(hd) * sizeof(float));
      std::memcpy(vh + t * hd, v + t * W + h * hd, static_cast<size_t>(hd) * sizeof(float));
    }
    matmul_nt(s, qh, WeightMatrix{DType::F32, kh, T, hd}, T);  // scores [T, T]
    for (int64_t t = 0; t < T; ++t) rk.softmax(s + t * T, T, T, scale);
    matmul_nn(oh, s, WeightMatrix{DType::F32, vh, T, hd}, T, false);  // [T, hd]
    for (int64_t t = 0; t < T; ++t)
      std::memcpy(att + t * W + h * hd, oh + t * hd, static_cast<size_t>(hd) * sizeof(float));
  }
}

void linear(float* out, const float* x, const WeightMatrix& w, const float* bias, int64_t rows) {
  matmul_nt(out, x, w, rows);
  if (bias) add_bias(out, bias, rows, w.rows);
}

}  // namespace

ClipOutput clip_encode(const ClipWeights& w, const float* pixels) {
  const ClipConfig& c = w.config;
  const int64_t T = c.tokens(), W = c.width, F = c.ffn_dim, E = c.embed_dim, G = c.grid(), p = c.patch_size,
                S = c.image_size, P = G * G;
  std::vector<float> x(static_cast<size_t>(T * W)), h(x.size()), q(x.size()), k(x.size()), v(x.size()), att(x.size()),
      mlp(static_cast<size_t>(T * F));
  // The patch convolution as one product: row i of `patches` is patch i's pixels in the kernel's
  // (channel, y, x) order.
  std::vector<float> patches(static_cast<size_t>(P * c.patch_values()));
  for (int64_t gy = 0; gy < G; ++gy)
    for (int64_t gx = 0; gx < G; ++gx) {
      float* dst = patches.data() + (gy * G + gx) * c.patch_values();
      for (int64_t ch = 0; ch < 3; ++ch)
        for (int64_t ky = 0; ky < p; ++ky)
          std::memcpy(dst + (ch * p + ky) * p, pixels + (ch * S + gy * p + ky) * S + gx * p,
                      static_cast<size_t>(p) * sizeof(float));
    }
  matmul_nt(x.data() + W, patches.data(), w.patch, P);
  std::memcpy(x.data(), w.class_embedding, static_cast<size_t>(W) * sizeof(float));
  for (int64_t i = 0; i < T * W; ++i) x[static_cast<size_t>(i)] += w.positions[i];
  layernorm_forward(x.data(), x.data(), w.pre_ln_w, w.pre_ln_b, T, W, c.eps);

  const std::vector<int64_t> keep = c.feature_layers();
  ClipOutput out;
  out.features.resize(static_cast<size_t>(c.feature_dim()));
  std::vector<float> cls(static_cast<size_t>(W));
  size_t next = 0;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const ClipLayer& L = w.layers[static_cast<size_t>(l)];
    layernorm_forward(h.data(), x.data(), L.ln1_w, L.ln1_b, T, W, c.eps);
    linear(q.data(), h.data(), L.wq, L.bq, T);
    linear(k.data(), h.data(), L.wk, L.bk, T);
    linear(v.data(), h.data(), L.wv, L.bv, T);
    full_attention(att.data(), q.data(), k.data(), v.data(), T, W, c.n_heads);
    linear(h.data(), att.data(), L.wo, L.bo, T);
    for (int64_t i = 0; i < T * W; ++i) x[static_cast<size_t>(i)] += h[static_cast<size_t>(i)];
    layernorm_forward(h.data(), x.data(), L.ln2_w, L.ln2_b, T, W, c.eps);
    linear(mlp.data(), h.data(), L.fc1, L.b1, T);
    if (c.act == ClipAct::QuickGelu)
      quick_gelu(mlp.data(), T * F);
    else
      gelu_erf(mlp.data(), T * F);
    linear(h.data(), mlp.data(), L.fc2, L.b2, T);
    for (int64_t i = 0; i < T * W; ++i) x[static_cast<size_t>(i)] += h[static_cast<size_t>(i)];
    while (next < keep.size() && keep[next] == l + 1) {  // (a block may be named twice when N < 3)
      layernorm_forward(cls.data(), x.data(), w.post_ln_w, w.post_ln_b, 1, W, c.eps);
      matmul_nt(out.features.data() + static_cast<int64_t>(next) * E, cls.data(), w.proj, 1);
      ++next;
    }
  }
  out.embedding.assign(out.features.end() - E, out.features.end());
  return out;
}

}  // namespace la
