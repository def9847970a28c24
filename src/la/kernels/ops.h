// Row-wise transformer operations, each forward beside the backward that takes exactly what the
// forward saved (llm.c style), plus plain reference versions for the tests.
// Layout: `rows` rows of `dim` contiguous floats.
#pragma once
#include <cstdint>
#include <vector>

namespace la {

// out = x * rsqrt(mean(x^2) + eps) * w ; rstd[r] saved for the backward (may be null).
void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t rows, int64_t dim, float eps);
// dx += d(out)/dx · dout, given the forward's x, w and rstd.
void rmsnorm_backward(float* dx, const float* dout, const float* x, const float* w, const float* rstd, int64_t rows,
                      int64_t dim);
// The weight's gradient: dw[i] += sum over rows of dout · x · rstd (rows summed in order).
void rmsnorm_weight_grad(float* dw, const float* dout, const float* x, const float* rstd, int64_t rows, int64_t dim);
void rmsnorm_forward_ref(float* out, float* rstd, const float* x, const float* w, int64_t rows, int64_t dim, float eps);
void rmsnorm_backward_ref(float* dx, const float* dout, const float* x, const float* w, const float* rstd, int64_t rows,
                          int64_t dim);

// Rotary position embedding. Interleaved: pairs (x[2i], x[2i+1]) (Meta / llama2.c / GGUF).
// Half: pairs (x[i], x[i + d/2]) (the rotate-half convention of Hugging Face checkpoints, whose
// q/k rows are stored permuted to match it). Frequency of pair i: theta^(-2i/d) either way.
enum class RopeStyle { Interleaved, Half };

class RopeTable {
 public:
  RopeTable() = default;
  RopeTable(int64_t max_pos, int64_t head_dim, float theta);
  const float* cos_at(int64_t pos) const { return cos_.data() + pos * half_; }
  const float* sin_at(int64_t pos) const { return sin_.data() + pos * half_; }
  int64_t max_pos() const { return max_pos_; }
  int64_t head_dim() const { return 2 * half_; }

 private:
  int64_t max_pos_ = 0, half_ = 0;
  std::vector<float> cos_, sin_;
};

// Rotates each of `n_heads` heads of each row; row r is at position pos[r]. `inverse` rotates
// by the negative angle, which is the backward (the rotation is orthogonal).
void rope_apply(float* x, int64_t rows, int64_t n_heads, const int32_t* pos, const RopeTable& table, RopeStyle style,
                bool inverse);
void rope_apply_ref(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, const int32_t* pos, float theta,
                    RopeStyle style, bool inverse);

// SwiGLU gate: out = silu(a) * b.
void swiglu_forward(float* out, const float* a, const float* b, int64_t n);
// da = dout * b * silu'(a), db = dout * silu(a)  (overwrite).
void swiglu_backward(float* da, float* db, const float* dout, const float* a, const float* b, int64_t n);
void swiglu_forward_ref(float* out, const float* a, const float* b, int64_t n);
void swiglu_backward_ref(float* da, float* db, const float* dout, const float* a, const float* b, int64_t n);

// LayerNorm over each of `rows` rows of `dim` (CLIP): out = (x - mean) rsqrt(var + eps) w + b.
// out may be x.
void layernorm_forward(float* out, const float* x, const float* w, const float* b, int64_t rows, int64_t dim,
                       float eps);
void layernorm_forward_ref(float* out, const float* x, const float* w, const float* b, int64_t rows, int64_t dim,
                           float eps);
// Activations in place: QuickGELU x*sigmoid(1.702x) (CLIP) and GELU with erf x*(1+erf(x/sqrt2))/2.
void quick_gelu(float* x, int64_t n);
void quick_gelu_ref(float* x, int64_t n);
void gelu_erf(float* x, int64_t n);
// dx = dout * gelu'(x), from the pre-activation x.
void gelu_erf_backward(float* dx, const float* dout, const float* x, int64_t n);
// out[r] += bias for each of `rows` rows of `n`.
void add_bias(float* out, const float* bias, int64_t rows, int64_t n);

// In-place softmax of one row; returns log(sum(exp(x - max))) + max (the log-sum-exp).
float softmax_inplace(float* x, int64_t n);

}  // namespace la
