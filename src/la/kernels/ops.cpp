#include "la/kernels/ops.h"

#include <algorithm>
#include <cmath>

#include "la/kernels/rowwise.h"
#include "la/kernels/vec.h"

namespace la {

void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t rows, int64_t dim, float eps) {
#pragma omp parallel for schedule(static) if (rows * dim > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* o = out + r * dim;
    const float ss = dot(xr, xr, dim);
    const float s = 1.0f / std::sqrt(ss / static_cast<float>(dim) + eps);
    if (rstd) rstd[r] = s;
    for (int64_t i = 0; i < dim; ++i) o[i] = xr[i] * s * w[i];
  }
}

// With n = x * s (s = rstd) and out = n * w:
//   dx = s * (dout*w) - s^3 / dim * x * sum(dout * w * x)
void rmsnorm_backward(float* dx, const float* dout, const float* x, const float* w, const float* rstd, int64_t rows,
                      int64_t dim) {
#pragma omp parallel for schedule(static) if (rows * dim > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    const float* g = dout + r * dim;
    float* d = dx + r * dim;
    const float s = rstd[r];
    float acc = 0;
    for (int64_t i = 0; i < dim; ++i) acc += g[i] * w[i] * xr[i];
    const float c = s * s * s * acc / static_cast<float>(dim);
    for (int64_t i = 0; i < dim; ++i) d[i] += s * g[i] * w[i] - c * xr[i];
  }
}

void rmsnorm_weight_grad(float* dw, const float* dout, const float* x, const float* rstd, int64_t rows, int64_t dim) {
  // Columns split between threads; each column's sum runs over the rows in order (the same bits
  // for any thread count).
#pragma omp parallel for schedule(static) if (rows * dim > 32768)
  for (int64_t i0 = 0; i0 < dim; i0 += 64) {
    const int64_t i1 = std::min<int64_t>(dim, i0 + 64);
    for (int64_t r = 0; r < rows; ++r) {
      const float s = rstd[r];
      const float* g = dout + r * dim;
      const float* xr = x + r * dim;
      for (int64_t i = i0; i < i1; ++i) dw[i] += g[i] * xr[i] * s;
    }
  }
}

void rmsnorm_forward_ref(float* out, float* rstd, const float* x, const float* w, int64_t rows, int64_t dim,
                         float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(x[r * dim + i]) * x[r * dim + i];
    const double s = 1.0 / std::sqrt(ss / static_cast<double>(dim) + eps);
    if (rstd) rstd[r] = static_cast<float>(s);
    for (int64_t i = 0; i < dim; ++i) out[r * dim + i] = static_cast<float>(x[r * dim + i] * s * w[i]);
  }
}

void rmsnorm_backward_ref(float* dx, const float* dout, const float* x, const float* w, const float* rstd, int64_t rows,
                          int64_t dim) {
  for (int64_t r = 0; r < rows; ++r) {
    const double s = rstd[r];
    for (int64_t i = 0; i < dim; ++i) {
      // d out_j / d x_i = w_j (s δij - s^3 x_i x_j / dim)
      double g = 0;
      for (int64_t j = 0; j < dim; ++j) {
        double dij = (i == j ? s : 0.0) - s * s * s * x[r * dim + i] * x[r * dim + j] / static_cast<double>(dim);
        g += static_cast<double>(dout[r * dim + j]) * w[j] * dij;
      }
      dx[r * dim + i] += static_cast<float>(g);
    }
  }
}

RopeTable::RopeTable(int64_t max_pos, int64_t head_dim, float theta) : max_pos_(max_pos), half_(head_dim / 2) {
  cos_.resize(static_cast<size_t>(max_pos * half_));
  sin_.resize(static_cast<size_t>(max_pos * half_));
  for (int64_t p = 0; p < max_pos; ++p)
    for (int64_t i = 0; i < half_; ++i) {
      // Computed in double so long contexts keep accurate angles.
      const double freq =
          std::pow(static_cast<double>(theta), -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
      const double a = static_cast<double>(p) * freq;
      cos_[p * half_ + i] = static_cast<float>(std::cos(a));
      sin_[p * half_ + i] = static_cast<float>(std::sin(a));
    }
}

void rope_apply(float* x, int64_t rows, int64_t n_heads, const int32_t* pos, const RopeTable& table, RopeStyle style,
                bool inverse) {
  const int64_t hd = table.head_dim(), half = hd / 2;
  const float sgn = inverse ? -1.0f : 1.0f;
#pragma omp parallel for schedule(static) if (rows * n_heads * hd > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    const float* c = table.cos_at(pos[r]);
    const float* s = table.sin_at(pos[r]);
    for (int64_t h = 0; h < n_heads; ++h) {
      float* v = x + (r * n_heads + h) * hd;
      if (style == RopeStyle::Interleaved) {
        for (int64_t i = 0; i < half; ++i) {
          const float a = v[2 * i], b = v[2 * i + 1], si = sgn * s[i];
          v[2 * i] = a * c[i] - b * si;
          v[2 * i + 1] = a * si + b * c[i];
        }
      } else {
        for (int64_t i = 0; i < half; ++i) {
          const float a = v[i], b = v[i + half], si = sgn * s[i];
          v[i] = a * c[i] - b * si;
          v[i + half] = a * si + b * c[i];
        }
      }
    }
  }
}

void rope_apply_ref(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, const int32_t* pos, float theta,
                    RopeStyle style, bool inverse) {
  const int64_t half = head_dim / 2;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t h = 0; h < n_heads; ++h) {
      float* v = x + (r * n_heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const double ang = (inverse ? -1.0 : 1.0) * pos[r] * std::pow(static_cast<double>(theta), -2.0 * i / head_dim);
        const int64_t ia = style == RopeStyle::Interleaved ? 2 * i : i;
        const int64_t ib = style == RopeStyle::Interleaved ? 2 * i + 1 : i + half;
        const double a = v[ia], b = v[ib];
        v[ia] = static_cast<float>(a * std::cos(ang) - b * std::sin(ang));
        v[ib] = static_cast<float>(a * std::sin(ang) + b * std::cos(ang));
      }
    }
}

// Over spans of the CPU's full vector width (rowwise.h): these run over every hidden unit of
// every token (training: 25M values a step at 110M, each way).
namespace {
constexpr int64_t kSpan = 4096;
}

void swiglu_forward(float* out, const float* a, const float* b, int64_t n) {
  const RowwiseKernels& k = rowwise_kernels();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i += kSpan) k.swiglu_forward(out + i, a + i, b + i, std::min(kSpan, n - i));
}

void swiglu_backward(float* da, float* db, const float* dout, const float* a, const float* b, int64_t n) {
  const RowwiseKernels& k = rowwise_kernels();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i += kSpan)
    k.swiglu_backward(da + i, db + i, dout + i, a + i, b + i, std::min(kSpan, n - i));
}

void swiglu_forward_ref(float* out, const float* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    out[i] = static_cast<float>(a[i] / (1.0 + std::exp(-static_cast<double>(a[i]))) * b[i]);
}

void swiglu_backward_ref(float* da, float* db, const float* dout, const float* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double sig = 1.0 / (1.0 + std::exp(-static_cast<double>(a[i])));
    db[i] = static_cast<float>(dout[i] * a[i] * sig);
    da[i] = static_cast<float>(dout[i] * b[i] * (sig + a[i] * sig * (1.0 - sig)));
  }
}

float softmax_inplace(float* x, int64_t n) {
  return rowwise_kernels().softmax(x, n, n, 1.0f);
}

void layernorm_forward(float* out, const float* x, const float* w, const float* b, int64_t rows, int64_t dim,
                       float eps) {
  const RowwiseKernels& k = rowwise_kernels();
#pragma omp parallel for schedule(static) if (rows * dim > 65536)
  for (int64_t r = 0; r < rows; ++r) k.layernorm(out + r * dim, x + r * dim, w, b, dim, eps);
}

void layernorm_forward_ref(float* out, const float* x, const float* w, const float* b, int64_t rows, int64_t dim,
                           float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    double mean = 0, var = 0;
    for (int64_t i = 0; i < dim; ++i) mean += xr[i];
    mean /= static_cast<double>(dim);
    for (int64_t i = 0; i < dim; ++i) var += (xr[i] - mean) * (xr[i] - mean);
    const double rstd = 1.0 / std::sqrt(var / static_cast<double>(dim) + eps);
    for (int64_t i = 0; i < dim; ++i) out[r * dim + i] = static_cast<float>((xr[i] - mean) * rstd * w[i] + b[i]);
  }
}

void quick_gelu(float* x, int64_t n) {
  const RowwiseKernels& k = rowwise_kernels();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i += kSpan) k.quick_gelu(x + i, std::min(kSpan, n - i));
}

void quick_gelu_ref(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(x[i] / (1.0 + std::exp(-1.702 * x[i])));
}

void gelu_erf(float* x, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * 0.70710678118654752f));
}

void gelu_erf_backward(float* dx, const float* dout, const float* x, int64_t n) {
  // d/dx x*Phi(x) = Phi(x) + x*phi(x)
  for (int64_t i = 0; i < n; ++i) {
    const float cdf = 0.5f * (1.0f + std::erf(x[i] * 0.70710678118654752f));
    const float pdf = 0.39894228040143268f * std::exp(-0.5f * x[i] * x[i]);
    dx[i] = dout[i] * (cdf + x[i] * pdf);
  }
}

void add_bias(float* out, const float* bias, int64_t rows, int64_t n) {
#pragma omp parallel for schedule(static) if (rows * n > 65536)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n; ++i) out[r * n + i] += bias[i];
}

}  // namespace la
