#include "la/kernels/attention_blocked.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "la/kernels/fast_exp.h"
#include "la/kernels/gemm.h"
#include "la/kernels/rowwise.h"

namespace la {

namespace {

constexpr int64_t kBlockRows = 128;  // query rows per block: S and P are kBlockRows x keys
constexpr int64_t kMinRows = 32;     // below this the per-pair kernels are as fast

// Sizes of one attention call, and the column order Q and K are copied in: canonical column c
// comes from perm[c] (pairs (2i, 2i+1) of the interleaved layout; the rotate-half layout keeps
// pair i at (i, i + hd/2)); no permutation for the interleaved layout itself.
struct Heads {
  int64_t H, KV, hd, qdim, kvdim, group;
  float scale;
  std::vector<int64_t> order;
  const int64_t* perm;
  explicit Heads(const AttentionDims& d)
      : H(d.n_heads),
        KV(d.n_kv_heads),
        hd(d.head_dim),
        qdim(d.q_dim()),
        kvdim(d.kv_dim()),
        group(d.n_heads / d.n_kv_heads),
        scale(1.0f / std::sqrt(static_cast<float>(d.head_dim))),
        order(static_cast<size_t>(d.head_dim)) {
    for (int64_t c = 0; c < hd; ++c) order[static_cast<size_t>(c)] = c;
    for (int64_t i = 0; d.rope_half && i < hd / 2; ++i) {
      order[static_cast<size_t>(2 * i)] = i;
      order[static_cast<size_t>(2 * i + 1)] = i + hd / 2;
    }
    perm = d.rope_half ? order.data() : nullptr;
  }
};

// rows x hd block of a [*, stride] matrix starting at column col0, columns reordered by perm.
void gather(float* dst, const float* src, int64_t rows, int64_t stride, int64_t col0, const int64_t* perm, int64_t hd) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* s = src + r * stride + col0;
    float* d = dst + r * hd;
    if (perm)
      for (int64_t c = 0; c < hd; ++c) d[c] = s[perm[c]];
    else
      std::memcpy(d, s, static_cast<size_t>(hd) * sizeof(float));
  }
}

void scatter(float* dst, const float* src, int64_t rows, int64_t stride, int64_t col0, const int64_t* perm,
             int64_t hd) {
  for (int64_t r = 0; r < rows; ++r) {
    float* d = dst + r * stride + col0;
    const float* s = src + r * hd;
    if (perm)
      for (int64_t c = 0; c < hd; ++c) d[perm[c]] = s[c];
    else
      std::memcpy(d, s, static_cast<size_t>(hd) * sizeof(float));
  }
}

// dst block += a * src (rows x hd), columns reordered by perm as in scatter().
void scatter_add(float* dst, const float* src, float a, int64_t rows, int64_t stride, int64_t col0, const int64_t* perm,
                 int64_t hd) {
  for (int64_t r = 0; r < rows; ++r) {
    float* d = dst + r * stride + col0;
    const float* s = src + r * hd;
    if (perm)
      for (int64_t c = 0; c < hd; ++c) d[perm[c]] += a * s[c];
    else
#pragma omp simd
      for (int64_t c = 0; c < hd; ++c) d[c] += a * s[c];
  }
}

WeightMatrix f32_matrix(const float* data, int64_t rows, int64_t cols) {
  return {DType::F32, data, rows, cols};
}

// The block products: our blocked GEMM where the CPU runs it (gemm.h: AVX2 and up), OpenBLAS
// under the generic build. (Matrix products beat the per-pair kernels on AVX2 as on AVX-512: the
// 110M training step had spent 29% of its time in those on AVX2.) Either way an element of C is
// summed over k in one fixed order by one thread, so results do not depend on the thread count.
//   mm_nt: C[M, w.rows] (+)= A[M, w.cols] w^T      mm_nn: C[M, w.cols] (+)= A[M, w.rows] w
void mm_nt(float* C, const float* A, const WeightMatrix& w, int64_t M, bool accumulate) {
  if (gemm_available()) return gemm_nt(C, A, w, M, accumulate);
  const auto* B = static_cast<const float*>(w.data);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(M), static_cast<int>(w.rows),
              static_cast<int>(w.cols), 1.0f, A, static_cast<int>(w.cols), B, static_cast<int>(w.cols),
              accumulate ? 1.0f : 0.0f, C, static_cast<int>(w.rows));
}

void mm_nn(float* C, const float* A, const WeightMatrix& w, int64_t M, bool accumulate) {
  if (gemm_available()) return gemm_nn(C, A, w, M, accumulate);
  const auto* B = static_cast<const float*>(w.data);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(M), static_cast<int>(w.cols),
              static_cast<int>(w.rows), 1.0f, A, static_cast<int>(w.rows), B, static_cast<int>(w.cols),
              accumulate ? 1.0f : 0.0f, C, static_cast<int>(w.cols));
}

void transpose(float* dst, const float* src, int64_t rows, int64_t cols) {  // dst[cols, rows]
  for (int64_t r0 = 0; r0 < rows; r0 += 16)
    for (int64_t c = 0; c < cols; ++c)
      for (int64_t r = r0; r < std::min(rows, r0 + 16); ++r) dst[c * rows + r] = src[r * cols + c];
}

// Per-thread buffers that outlive one call (grown, never shrunk).
struct Buffers {
  std::vector<float> kc, vc, dkc, dvc, qb, ob, dqb, s, s2, t;
  // For n keys/values of kv head g, gathered into kc (pair order) and vc, against blocks of
  // kBlockRows query rows; with `grads` the backward's buffers too (dK, dV zeroed).
  void prepare(const float* k, const float* v, int64_t n, int64_t g, const Heads& h, bool grads) {
    const auto size = [](int64_t x) { return static_cast<size_t>(x); };
    kc.resize(size(n * h.hd));
    vc.resize(size(n * h.hd));
    qb.resize(size(kBlockRows * h.hd));
    ob.resize(size(kBlockRows * h.hd));  // the backward: dO block, then dQ block
    s.resize(size(kBlockRows * n));
    if (grads) {
      dkc.assign(size(n * h.hd), 0.0f);
      dvc.assign(size(n * h.hd), 0.0f);
      dqb.resize(size(kBlockRows * h.hd));
      s2.resize(size(kBlockRows * n));
      t.resize(size(kBlockRows * n));  // a transposed block
    }
    gather(kc.data(), k, n, h.kvdim, g * h.hd, h.perm, h.hd);
    gather(vc.data(), v, n, h.kvdim, g * h.hd, nullptr, h.hd);
  }
};

bool run_parallel(const AttentionDims& d, int64_t T, int64_t S) {
  return d.n_kv_heads > 1 && static_cast<double>(d.n_heads) * T * S * d.head_dim > 1e6;
}

}  // namespace

bool attention_blocked_applies(int64_t T) {
  return T >= kMinRows;
}

void attention_tokens_forward_blocked(float* out, float* lse_tok, const float* q, const float* k, const float* v,
                                      int64_t T, int64_t pos0, const AttentionDims& d) {
  const Heads heads(d);
  const int64_t KV = heads.KV, hd = heads.hd, qdim = heads.qdim, group = heads.group;
  const float scale = heads.scale;
  const int64_t* perm = heads.perm;
  const RowwiseKernels& rk = rowwise_kernels();
  const int64_t S = pos0 + T;
#pragma omp parallel for schedule(dynamic, 1) if (run_parallel(d, T, S))
  for (int64_t g = 0; g < KV; ++g) {
    thread_local Buffers b;
    b.prepare(k, v, S, g, heads, false);
    for (int64_t h = g * group; h < (g + 1) * group; ++h)
      for (int64_t t0 = 0; t0 < T; t0 += kBlockRows) {
        const int64_t bq = std::min(kBlockRows, T - t0), n = pos0 + t0 + bq;  // keys this block sees
        gather(b.qb.data(), q + t0 * qdim, bq, qdim, h * hd, perm, hd);
        float* sc = b.s.data();
        mm_nt(sc, b.qb.data(), f32_matrix(b.kc.data(), n, hd), bq, false);
        for (int64_t r = 0; r < bq; ++r) {
          const float lse = rk.softmax(sc + r * n, pos0 + t0 + r + 1, n, scale);
          if (lse_tok) lse_tok[h * T + t0 + r] = lse;
        }
        mm_nn(b.ob.data(), sc, f32_matrix(b.vc.data(), n, hd), bq, false);
        scatter(out + t0 * qdim, b.ob.data(), bq, qdim, h * hd, nullptr, hd);
      }
  }
}

void attention_tokens_backward_blocked(float* dq, float* dk, float* dv, const float* dout, const float* q,
                                       const float* k, const float* v, const float* lse_tok, int64_t T,
                                       const AttentionDims& d) {
  const Heads heads(d);
  const int64_t KV = heads.KV, hd = heads.hd, qdim = heads.qdim, kvdim = heads.kvdim, group = heads.group;
  const float scale = heads.scale;
  const int64_t* perm = heads.perm;
  const RowwiseKernels& rk = rowwise_kernels();
#pragma omp parallel for schedule(dynamic, 1) if (run_parallel(d, T, T))
  for (int64_t g = 0; g < KV; ++g) {
    thread_local Buffers b;
    b.prepare(k, v, T, g, heads, true);  // s: P; s2: dP, then dS
    for (int64_t h = g * group; h < (g + 1) * group; ++h)
      for (int64_t t0 = 0; t0 < T; t0 += kBlockRows) {
        const int64_t bq = std::min(kBlockRows, T - t0), n = t0 + bq;
        const WeightMatrix kw = f32_matrix(b.kc.data(), n, hd), vw = f32_matrix(b.vc.data(), n, hd);
        gather(b.qb.data(), q + t0 * qdim, bq, qdim, h * hd, perm, hd);
        gather(b.ob.data(), dout + t0 * qdim, bq, qdim, h * hd, nullptr, hd);
        float* P = b.s.data();
        float* dS = b.s2.data();
        mm_nt(P, b.qb.data(), kw, bq, false);
        mm_nt(dS, b.ob.data(), vw, bq, false);  // dP
        for (int64_t r = 0; r < bq; ++r)
          rk.softmax_backward(P + r * n, dS + r * n, t0 + r + 1, n, scale, lse_tok[h * T + t0 + r]);
        mm_nn(b.dqb.data(), dS, kw, bq, false);  // dQ = dS K
        scatter(dq + t0 * qdim, b.dqb.data(), bq, qdim, h * hd, perm, hd);
        transpose(b.t.data(), dS, bq, n);  // dK += dS^T Q
        mm_nn(b.dkc.data(), b.t.data(), f32_matrix(b.qb.data(), bq, hd), n, true);
        transpose(b.t.data(), P, bq, n);  // dV += P^T dO
        mm_nn(b.dvc.data(), b.t.data(), f32_matrix(b.ob.data(), bq, hd), n, true);
      }
    scatter(dk, b.dkc.data(), T, kvdim, g * hd, perm, hd);
    scatter(dv, b.dvc.data(), T, kvdim, g * hd, nullptr, hd);
  }
}

// The prompt branch: per kv head its len x hd prompt keys and values are gathered once; per query
// head of the group and block of rows, S = Q Kp^T (bq x len) goes through the row softmax and
// gamma · S Vp is added to the token output (nothing where gamma is 0, as in the per-ISA kernels).
void attention_prompt_forward_blocked(float* out, float* lse_prompt, const float* q, int64_t T, const AttentionDims& d,
                                      const PromptKV& prompt) {
  const Heads heads(d);
  const int64_t KV = heads.KV, hd = heads.hd, qdim = heads.qdim, group = heads.group;
  const float scale = heads.scale;
  const int64_t* perm = heads.perm;
  const RowwiseKernels& rk = rowwise_kernels();
  const int64_t P = prompt.len;
#pragma omp parallel for schedule(dynamic, 1) if (run_parallel(d, T, P))
  for (int64_t g = 0; g < KV; ++g) {
    thread_local Buffers b;
    b.prepare(prompt.keys, prompt.values, P, g, heads, false);
    const WeightMatrix kw = f32_matrix(b.kc.data(), P, hd), vw = f32_matrix(b.vc.data(), P, hd);
    for (int64_t h = g * group; h < (g + 1) * group; ++h) {
      const float gamma = prompt.gamma[h];
      if (gamma == 0.0f && !lse_prompt) continue;
      for (int64_t t0 = 0; t0 < T; t0 += kBlockRows) {
        const int64_t bq = std::min(kBlockRows, T - t0);
        gather(b.qb.data(), q + t0 * qdim, bq, qdim, h * hd, perm, hd);
        float* sc = b.s.data();
        mm_nt(sc, b.qb.data(), kw, bq, false);
        for (int64_t r = 0; r < bq; ++r) {
          const float lse = rk.softmax(sc + r * P, P, P, scale);
          if (lse_prompt) lse_prompt[h * T + t0 + r] = lse;
        }
        if (gamma == 0.0f) continue;
        mm_nn(b.ob.data(), sc, vw, bq, false);
        scatter_add(out + t0 * qdim, b.ob.data(), gamma, bq, qdim, h * hd, nullptr, hd);
      }
    }
  }
}

// Backward of the prompt branch from the saved log-sum-exps: P = softmax rows again, the gate's
// gradient sum(P ∘ dO Vp^T), dP = gamma dO Vp^T, dS = P∘(dP - rowsum(P∘dP))·scale; dQ += dS Kp,
// dKp += dS^T Q, dVp += gamma P^T dO, summed over the group's query heads per kv head.
void attention_prompt_backward_blocked(float* dq, float* dprompt_k, float* dprompt_v, float* dgamma, const float* dout,
                                       const float* q, const float* lse_prompt, int64_t T, const AttentionDims& d,
                                       const PromptKV& prompt) {
  const Heads heads(d);
  const int64_t KV = heads.KV, hd = heads.hd, qdim = heads.qdim, kvdim = heads.kvdim, group = heads.group;
  const float scale = heads.scale;
  const int64_t* perm = heads.perm;
  const int64_t P = prompt.len;
  std::memset(dprompt_k, 0, static_cast<size_t>(P * kvdim) * sizeof(float));
  std::memset(dprompt_v, 0, static_cast<size_t>(P * kvdim) * sizeof(float));
#pragma omp parallel for schedule(dynamic, 1) if (run_parallel(d, T, P))
  for (int64_t g = 0; g < KV; ++g) {
    thread_local Buffers b;
    b.prepare(prompt.keys, prompt.values, P, g, heads, true);  // s: P, then gamma P; s2: dO Vp^T, then dS
    const WeightMatrix kw = f32_matrix(b.kc.data(), P, hd), vw = f32_matrix(b.vc.data(), P, hd);
    for (int64_t h = g * group; h < (g + 1) * group; ++h) {
      const float gamma = prompt.gamma[h];
      float dgam = 0;
      for (int64_t t0 = 0; t0 < T; t0 += kBlockRows) {
        const int64_t bq = std::min(kBlockRows, T - t0);
        gather(b.qb.data(), q + t0 * qdim, bq, qdim, h * hd, perm, hd);
        gather(b.ob.data(), dout + t0 * qdim, bq, qdim, h * hd, nullptr, hd);
        float* pr = b.s.data();
        float* ds = b.s2.data();
        mm_nt(pr, b.qb.data(), kw, bq, false);
        mm_nt(ds, b.ob.data(), vw, bq, false);
        for (int64_t r = 0; r < bq; ++r) {
          float* p = pr + r * P;
          float* s = ds + r * P;
          const float lse = lse_prompt[h * T + t0 + r];
          float D = 0;
          for (int64_t j = 0; j < P; ++j) {
            p[j] = fast_exp(scale * p[j] - lse);
            dgam += p[j] * s[j];
            s[j] *= gamma;  // dP
            D += p[j] * s[j];
          }
          for (int64_t j = 0; j < P; ++j) {
            s[j] = p[j] * (s[j] - D) * scale;
            p[j] *= gamma;
          }
        }
        if (dq) {
          mm_nn(b.dqb.data(), ds, kw, bq, false);
          scatter_add(dq + t0 * qdim, b.dqb.data(), 1.0f, bq, qdim, h * hd, perm, hd);
        }
        transpose(b.t.data(), ds, bq, P);
        mm_nn(b.dkc.data(), b.t.data(), f32_matrix(b.qb.data(), bq, hd), P, true);
        transpose(b.t.data(), pr, bq, P);
        mm_nn(b.dvc.data(), b.t.data(), f32_matrix(b.ob.data(), bq, hd), P, true);
      }
      dgamma[h] = dgam;
    }
    scatter(dprompt_k, b.dkc.data(), P, kvdim, g * hd, perm, hd);
    scatter(dprompt_v, b.dvc.data(), P, kvdim, g * hd, nullptr, hd);
  }
}

}  // namespace la
