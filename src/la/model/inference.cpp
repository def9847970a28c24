#include "la/model/inference.h"

#include <algorithm>
#include <cstring>

#include "la/core/error.h"
#include "la/kernels/convert.h"
#include "la/kernels/gemv.h"
#include "la/kernels/matmul.h"
#include "la/model/visual_proj.h"

namespace la {

InferenceModel::InferenceModel(const ModelWeights& w, int64_t context, int64_t max_rows)
    : w_(w),
      c_(w.config),
      context_(context > 0 ? context : w.config.max_seq_len),
      max_rows_(std::max<int64_t>(max_rows, 1)),
      rope_(context_, c_.head_dim(), c_.rope_theta),
      ctx_(w, rope_),
      cache_(c_, context_) {
  const auto n = static_cast<size_t>(max_rows_);
  x_.resize(n * static_cast<size_t>(c_.dim));
  xb_.resize(x_.size());
  q_.resize(x_.size());
  att_.resize(x_.size());
  k_.resize(n * static_cast<size_t>(c_.kv_dim()));
  v_.resize(k_.size());
  hb_.resize(n * static_cast<size_t>(c_.hidden_dim));
  hb2_.resize(hb_.size());
  logits_.resize(static_cast<size_t>(c_.vocab_size));
  head_.resize(static_cast<size_t>(kGemvMaxRows * c_.vocab_size));
  positions_.resize(n);
}

size_t InferenceModel::state_bytes() const {
  size_t b = cache_.bytes() + (x_.size() * 4 + k_.size() * 2 + hb_.size() * 2 + logits_.size()) * sizeof(float);
  if (prompts_) b += prompts_->bytes();
  if (image_prompts_) b += image_prompts_->bytes();
  return b;
}

void InferenceModel::set_adapter(const Adapter* a) {
  image_prompts_.reset();
  prompts_.reset();
  adapter_ = a && a->n_layers > 0 ? a : nullptr;
  if (adapter_) prompts_ = std::make_unique<AdapterPrompts>(w_, *a);
}

void InferenceModel::set_image(const float* features) {
  image_prompts_.reset();
  if (!features) return;
  if (!adapter_ || !adapter_->visual.enabled()) fail("an image needs a multi-modal adapter (one trained with --clip)");
  std::vector<float> ip(static_cast<size_t>(c_.dim));
  visual_proj_forward(*adapter_, features, ip.data(), nullptr);
  image_prompts_ = std::make_unique<AdapterPrompts>(*prompts_, ip.data());
}

void InferenceModel::step(std::vector<SeqStep>& seqs) {
  const int64_t D = c_.dim, V = c_.vocab_size;
  int64_t R = 0;
  for (const SeqStep& s : seqs) {
    if (!s.cache || s.n <= 0) fail("forward: a sequence of the batch has no tokens or no cache");
    if (s.cache->pos() + s.n > std::min(s.cache->context(), context_))
      fail("sequence of {} tokens exceeds the context length {}", s.cache->pos() + s.n,
           std::min(s.cache->context(), context_));
    for (int64_t i = 0; i < s.n; ++i)
      if (s.tokens[i] < 0 || s.tokens[i] >= V)
        fail("token id {} is out of range for vocabulary size {}", s.tokens[i], V);
    R += s.n;
  }
  if (R > max_rows_) fail("batched step of {} rows exceeds the planned {}", R, max_rows_);
  batch_.seqs.clear();
  batch_.rows = R;
  batch_.positions = positions_.data();
  float* x = x_.data();
  int64_t row = 0;
  for (const SeqStep& s : seqs) {
    for (int64_t i = 0; i < s.n; ++i) {
      dequantize_row(w_.tok_embeddings, s.tokens[i], x + (row + i) * D);
      positions_[static_cast<size_t>(row + i)] = static_cast<int32_t>(s.cache->pos() + i);
    }
    batch_.seqs.push_back({row, s.n, s.cache->pos(), s.cache, s.prompts});
    row += s.n;
  }
  // Product groups (Batch::product_rows): runs of one-row sequences (decode) share a product of
  // at most kGemvMaxRows rows, where each row's value does not depend on the others; a sequence
  // of several rows (a prompt) has its own, as it would alone.
  batch_.product_rows.clear();
  bool last_single = false;
  for (const SeqStep& s : seqs) {
    if (s.n == 1 && last_single && batch_.product_rows.back() < kGemvMaxRows)
      ++batch_.product_rows.back();
    else
      batch_.product_rows.push_back(s.n);
    last_single = s.n == 1;
  }
  const BlockScratch scratch{xb_.data(), q_.data(), k_.data(), v_.data(), att_.data(), hb_.data(), hb2_.data()};
  for (int64_t l = 0; l < c_.n_layers; ++l) block_forward(ctx_, l, batch_, x, nullptr, scratch);
  for (const SeqStep& s : seqs) s.cache->set_pos(s.cache->pos() + s.n);
  // Logits: the last row of each sequence (or all of its rows when asked) through the final norm
  // and the output head, in the same groups: consecutive decode rows in one product of at most
  // kGemvMaxRows rows (the head is read once for them), a sequence's every row in its own.
  size_t i = 0;
  while (i < seqs.size()) {
    if (!seqs[i].logits) {
      ++i;
      continue;
    }
    const bool single = !seqs[i].every_row || seqs[i].n == 1;
    size_t j = i + 1;
    int64_t rows = single ? 1 : seqs[i].n;
    if (single)
      while (j < seqs.size() && seqs[j].logits && (!seqs[j].every_row || seqs[j].n == 1) && rows < kGemvMaxRows) {
        ++rows;
        ++j;
      }
    int64_t r = 0;
    for (size_t t = i; t < j; ++t) {
      const BatchSeq& bs = batch_.seqs[t];
      const int64_t first = seqs[t].every_row ? bs.row0 : bs.row0 + bs.rows - 1;
      for (int64_t q = first; q < bs.row0 + bs.rows; ++q, ++r)
        std::memcpy(xb_.data() + r * D, x + q * D, static_cast<size_t>(D) * sizeof(float));
    }
    rmsnorm_forward(q_.data(), nullptr, xb_.data(), w_.rms_final, rows, D, c_.norm_eps);
    if (j == i + 1) {
      matmul_nt(seqs[i].logits, q_.data(), w_.output, rows);
    } else {
      matmul_nt(head_.data(), q_.data(), w_.output, rows);
      for (size_t t = i; t < j; ++t)
        std::memcpy(seqs[t].logits, head_.data() + static_cast<int64_t>(t - i) * V,
                    static_cast<size_t>(V) * sizeof(float));
    }
    i = j;
  }
}

const float* InferenceModel::forward(const int* tokens, int64_t n) {
  if (n <= 0) fail("forward: no tokens");
  if (cache_.pos() + n > context_)
    fail("sequence of {} tokens exceeds the context length {}", cache_.pos() + n, context_);
  std::vector<SeqStep> one(1);
  for (int64_t off = 0; off < n; off += max_rows_) {
    const int64_t m = std::min(max_rows_, n - off);
    one[0] = {&cache_,
              image_prompts_ ? image_prompts_.get() : prompts_.get(),
              tokens + off,
              m,
              off + m == n ? logits_.data() : nullptr,
              false};
    step(one);
  }
  return logits_.data();
}

}  // namespace la
