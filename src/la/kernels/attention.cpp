#include "la/kernels/attention.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "la/kernels/vec.h"

namespace la {

namespace {

// scores[j] = scale * q·k_j for j < n, then softmax in place; returns the log-sum-exp.
float softmax_scores(float* scores, const float* q, const float* k, int64_t kstride, int64_t n, int64_t hd,
                     float scale) {
  float m = -INFINITY;
  for (int64_t j = 0; j < n; ++j) {
    scores[j] = scale * dot(q, k + j * kstride, hd);
    m = scores[j] > m ? scores[j] : m;
  }
  float s = 0;
  for (int64_t j = 0; j < n; ++j) {
    scores[j] = std::exp(scores[j] - m);
    s += scores[j];
  }
  const float inv = 1.0f / s;
  for (int64_t j = 0; j < n; ++j) scores[j] *= inv;
  return m + std::log(s);
}

}  // namespace

void attention_forward(float* out, float* lse_tok, float* lse_prompt, const float* q, const float* k, const float* v,
                       int64_t T, int64_t pos0, const AttentionDims& d, const PromptKV* prompt) {
  const int64_t H = d.n_heads, hd = d.head_dim, qdim = d.q_dim(), kvdim = d.kv_dim();
  const int64_t group = H / d.n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t S = pos0 + T;
  const int64_t plen = prompt ? prompt->len : 0;
#pragma omp parallel if (H * T * S * hd > 32768)
  {
    std::vector<float> scores(static_cast<size_t>(S > plen ? S : plen));
    std::vector<float> acc(static_cast<size_t>(hd));
#pragma omp for collapse(2) schedule(static)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < T; ++t) {
        const int64_t g = h / group;
        const float* qt = q + t * qdim + h * hd;
        float* o = out + t * qdim + h * hd;
        const int64_t n = pos0 + t + 1;  // causal: keys 0..pos0+t
        float lse = softmax_scores(scores.data(), qt, k + g * hd, kvdim, n, hd, scale);
        if (lse_tok) lse_tok[h * T + t] = lse;
        std::memset(o, 0, static_cast<size_t>(hd) * sizeof(float));
        for (int64_t j = 0; j < n; ++j) axpy(o, scores[j], v + j * kvdim + g * hd, hd);
        if (plen > 0) {
          lse = softmax_scores(scores.data(), qt, prompt->keys + g * hd, kvdim, plen, hd, scale);
          if (lse_prompt) lse_prompt[h * T + t] = lse;
          const float gamma = prompt->gamma[h];
          // gamma == 0 adds nothing at all, so a zero-initialised adapter reproduces the base
          // model bit for bit (x + 0*y could turn -0 into +0).
          if (gamma != 0.0f) {
            std::memset(acc.data(), 0, static_cast<size_t>(hd) * sizeof(float));
            for (int64_t j = 0; j < plen; ++j) axpy(acc.data(), scores[j], prompt->values + j * kvdim + g * hd, hd);
            axpy(o, gamma, acc.data(), hd);
          }
        }
      }
  }
}

void attention_backward(float* dq, float* dk, float* dv, float* dprompt_k, float* dprompt_v, float* dgamma,
                        const float* dout, const float* q, const float* k, const float* v, const float* lse_tok,
                        const float* lse_prompt, int64_t T, const AttentionDims& d, const PromptKV* prompt) {
  const int64_t H = d.n_heads, KV = d.n_kv_heads, hd = d.head_dim, qdim = d.q_dim(), kvdim = d.kv_dim();
  const int64_t group = H / KV;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t plen = prompt ? prompt->len : 0;
  const bool want_tokens = dq != nullptr;
  if (want_tokens) {
    std::memset(dq, 0, static_cast<size_t>(T * qdim) * sizeof(float));
    std::memset(dk, 0, static_cast<size_t>(T * kvdim) * sizeof(float));
    std::memset(dv, 0, static_cast<size_t>(T * kvdim) * sizeof(float));
  }
  if (plen > 0) {
    std::memset(dprompt_k, 0, static_cast<size_t>(plen * kvdim) * sizeof(float));
    std::memset(dprompt_v, 0, static_cast<size_t>(plen * kvdim) * sizeof(float));
    std::memset(dgamma, 0, static_cast<size_t>(H) * sizeof(float));
  }
  // Each kv head owns its dk/dv columns and its prompt-gradient columns: no two threads write
  // the same memory.
#pragma omp parallel for schedule(dynamic, 1) if (H * T * T * hd > 32768)
  for (int64_t g = 0; g < KV; ++g) {
    std::vector<float> p(static_cast<size_t>(T > plen ? T : plen)), dp(p.size());
    for (int64_t h = g * group; h < (g + 1) * group; ++h) {
      for (int64_t t = 0; t < T; ++t) {
        const float* qt = q + t * qdim + h * hd;
        const float* go = dout + t * qdim + h * hd;
        if (want_tokens) {
          const int64_t n = t + 1;
          const float lse = lse_tok[h * T + t];
          float D = 0;  // sum_j p_j dp_j
          for (int64_t j = 0; j < n; ++j) {
            p[j] = std::exp(scale * dot(qt, k + j * kvdim + g * hd, hd) - lse);
            dp[j] = dot(go, v + j * kvdim + g * hd, hd);
            D += p[j] * dp[j];
          }
          float* dqt = dq + t * qdim + h * hd;
          for (int64_t j = 0; j < n; ++j) {
            const float ds = p[j] * (dp[j] - D) * scale;
            axpy(dqt, ds, k + j * kvdim + g * hd, hd);
            axpy(dk + j * kvdim + g * hd, ds, qt, hd);
            axpy(dv + j * kvdim + g * hd, p[j], go, hd);
          }
        }
        if (plen > 0) {
          const float gamma = prompt->gamma[h];
          const float lse = lse_prompt[h * T + t];
          float D = 0, dgam = 0;
          for (int64_t j = 0; j < plen; ++j) {
            p[j] = std::exp(scale * dot(qt, prompt->keys + j * kvdim + g * hd, hd) - lse);
            const float gv = dot(go, prompt->values + j * kvdim + g * hd, hd);  // dout · Vp_j
            dgam += p[j] * gv;
            dp[j] = gamma * gv;
            D += p[j] * dp[j];
          }
          dgamma[h] += dgam;
          float* dqt = want_tokens ? dq + t * qdim + h * hd : nullptr;
          for (int64_t j = 0; j < plen; ++j) {
            const float ds = p[j] * (dp[j] - D) * scale;
            if (dqt) axpy(dqt, ds, prompt->keys + j * kvdim + g * hd, hd);
            axpy(dprompt_k + j * kvdim + g * hd, ds, qt, hd);
            axpy(dprompt_v + j * kvdim + g * hd, gamma * p[j], go, hd);
          }
        }
      }
    }
  }
}

void attention_forward_ref(float* out, const float* q, const float* k, const float* v, int64_t T, int64_t pos0,
                           const AttentionDims& d, const PromptKV* prompt) {
  const int64_t H = d.n_heads, hd = d.head_dim, qdim = d.q_dim(), kvdim = d.kv_dim();
  const int64_t group = H / d.n_kv_heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  auto branch = [&](const float* qt, const float* keys, const float* vals, int64_t n, int64_t g, double* res) {
    std::vector<double> s(static_cast<size_t>(n));
    double m = -INFINITY;
    for (int64_t j = 0; j < n; ++j) {
      double a = 0;
      for (int64_t i = 0; i < hd; ++i) a += static_cast<double>(qt[i]) * keys[j * kvdim + g * hd + i];
      s[j] = a * scale;
      m = std::max(m, s[j]);
    }
    double z = 0;
    for (auto& x : s) z += (x = std::exp(x - m));
    for (int64_t i = 0; i < hd; ++i) {
      double a = 0;
      for (int64_t j = 0; j < n; ++j) a += s[j] / z * vals[j * kvdim + g * hd + i];
      res[i] = a;
    }
  };
  std::vector<double> a(static_cast<size_t>(hd)), b(static_cast<size_t>(hd));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / group;
      const float* qt = q + t * qdim + h * hd;
      branch(qt, k, v, pos0 + t + 1, g, a.data());
      if (prompt && prompt->len > 0) {
        branch(qt, prompt->keys, prompt->values, prompt->len, g, b.data());
        for (int64_t i = 0; i < hd; ++i) a[i] += prompt->gamma[h] * b[i];
      }
      for (int64_t i = 0; i < hd; ++i) out[t * qdim + h * hd + i] = static_cast<float>(a[i]);
    }
}

}  // namespace la
