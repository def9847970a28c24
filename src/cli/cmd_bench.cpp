// `bench`: prefill, decode and training throughput and peak memory for a model file or a named
// shape with random weights, so users and we can compare machines and peers. The training step is
// the adapter's (frozen base), or with --full the full-parameter one of `finetune --full`;
// --fma-peak measures the CPU's fp32 multiply-add peak to set model FLOP/s against.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "la/core/cpu.h"
#include "la/core/error.h"
#include "la/core/memory.h"
#include "la/core/runtime.h"
#include "la/io/loader.h"
#include "la/io/shapes.h"
#include "la/kernels/fma_peak.h"
#include "la/kernels/gemm.h"
#include "la/kernels/matmul.h"
#include "la/model/block.h"
#include "la/model/inference.h"
#include "la/model/model_params.h"
#include "la/model/train_graph.h"
#include "la/sample/sampler.h"
#include "la/train/optimizer.h"

namespace la::cli {

namespace {

struct BenchArgs {
  ModelArgs model;
  std::string shape, save_model, type = "f32";
  int64_t prompt_tokens = 128, gen_tokens = 64, repeat = 5;
  int64_t train_batch = 4, train_seq = 256, adapter_len = 10, adapter_layers = -1;
  bool no_infer = false, no_train = false, recompute = false, json = false, adapter_decode = false, bandwidth = false;
  bool adapter_overhead = false, full = false, fma_peak = false, images = false;
  std::vector<int64_t> decode_batch;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Model FLOPs of one full-parameter training token (forward, backward into every weight) for
// sequences of `seq` tokens:
//   6 * P  +  6 * n_layers * dim * (seq + 1)
// P = values in the matrices a token is multiplied with: every layer's wq, wk, wv, wo, w1, w2, w3
// and the classifier (the embedding is a row lookup, norms are element-wise: not counted).
// Forward 2P (a multiply-add per value), backward 4P (dX = dY W and dW = dY^T X). Attention:
// per layer, a token at position t (1-based) scores against t keys and sums t values, 2 * dim
// FLOP each (over all heads: n_heads * head_dim = dim, whatever the KV heads), i.e. 4 * dim * t;
// averaged over causal positions t = 1..seq that is 4 * dim * (seq + 1) / 2 forward, twice that
// backward (dQ, dK from dS; dP, dV from dO): 6 * dim * (seq + 1) per token and layer in all.
double full_train_flop_per_token(const ModelConfig& c, int64_t seq) {
  double p = static_cast<double>(c.vocab_size) * static_cast<double>(c.dim);  // classifier
  for (const LayerTensor& t : kLayerTensors)
    if (t.is_matrix()) p += static_cast<double>(c.n_layers) * static_cast<double>(t.numel(c));
  return 6.0 * p + 6.0 * static_cast<double>(c.n_layers) * static_cast<double>(c.dim) * static_cast<double>(seq + 1);
}

// Model FLOPs per token of an adapter step (SPEC: the base frozen, the top L of the n_layers
// layers adapted with K prompt rows): the forward of everything; the backward's input gradients
// from the head down to the lowest adapted layer, which needs none for its query/key/value
// products nor for its token attention; no weight gradients. Attention as above (2·dim·(seq+1)
// per layer forward, twice that backward); the prompt branch 4·dim·K forward and 8·dim·K
// backward (6·dim·K at the lowest adapted layer: no query gradient).
double adapter_train_flop_per_token(const ModelConfig& c, int64_t seq, int64_t K, int64_t L) {
  const auto d = [](int64_t v) { return static_cast<double>(v); };
  double layer = 0, qkv = 0;  // one layer's matrix values, and those of wq, wk, wv
  for (const LayerTensor& t : kLayerTensors)
    if (t.is_matrix()) {
      layer += d(t.numel(c));
      if (std::string_view(t.name) == "wq" || std::string_view(t.name) == "wk" || std::string_view(t.name) == "wv")
        qkv += d(t.numel(c));
    }
  const double D = d(c.dim), attn = 2.0 * D * d(seq + 1);
  double flop = 4.0 * d(c.vocab_size) * D;       // classifier: forward and input gradient
  flop += d(c.n_layers) * (2.0 * layer + attn);  // every layer's forward
  flop += d(L) * (2.0 * layer + 2.0 * attn + 12.0 * D * d(K)) - 2.0 * qkv - 2.0 * attn - 2.0 * D * d(K);
  return flop;
}

void report_fma_peak(nlohmann::ordered_json& out) {
  const FmaPeak p = measure_fma_peak();
  out["fma_peak_gflop_s"] = p.gflop_s;
  out["fma_peak_isa"] = p.isa;
  out["fma_peak_width"] = p.width;
  out["fma_peak_threads"] = p.threads;
}

void print(const nlohmann::ordered_json& out, bool json) {
  if (json) {
    std::printf("%s\n", out.dump().c_str());
    return;
  }
  for (auto it = out.begin(); it != out.end(); ++it)
    std::printf("%-24s %s\n", it.key().c_str(), it.value().dump().c_str());
}

void run_bench(const BenchArgs& a) {
  if (a.model.model.empty() && a.shape.empty()) {  // --fma-peak alone
    nlohmann::ordered_json out;
    out["threads"] = runtime().threads;
    out["isa"] = runtime().isa;
    report_fma_peak(out);
    print(out, a.json);
    return;
  }
  std::unique_ptr<ModelWeights> w;
  if (!a.shape.empty()) {
    auto c = named_shape(a.shape);
    if (!c) fail("unknown shape '{}' (known: {})", a.shape, fmt::join(shape_names(), ", "));
    DType t;
    if (!parse_dtype(a.type, &t)) fail("unknown --type '{}'", a.type);
    w = random_model(*c, 1, t);
    if (!a.save_model.empty()) {
      save_llama2c(*w, a.save_model);
      std::printf("wrote %s (%s, random f32 weights)\n", a.save_model.c_str(), c->shape_string().c_str());
      return;
    }
  } else {
    w = load_model(a.model.model);
  }
  if (runtime().bf16_compute) prepack_for_bf16_compute(*w);  // as finetune does
  if (!a.no_infer) w->pack_interleaved();                    // as generate does
  // A copy: the full-parameter step releases `w`.
  const ModelConfig c = w->config;
  nlohmann::ordered_json out;
  out["model"] = a.shape.empty() ? a.model.model : "shape:" + a.shape;
  out["threads"] = runtime().threads;
  out["isa"] = runtime().isa;
  out["gemm"] = gemm_kernels_name();
  out["blas_core"] = blas_core_name();
  out["bf16_compute"] = runtime().bf16_compute;
  out["params"] = c.parameter_count();
  out["rss_after_load_mib"] = static_cast<double>(current_rss_bytes()) / (1 << 20);
  std::vector<int> tokens(static_cast<size_t>(std::max(a.prompt_tokens, a.train_seq + 1)));
  uint64_t s = 12345;
  for (auto& t : tokens) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    t = static_cast<int>((s >> 33) % static_cast<uint64_t>(c.vocab_size));
  }
  const int64_t L = a.adapter_layers > 0 ? a.adapter_layers : c.n_layers;
  Adapter adapter = Adapter::create(c, a.adapter_len, L, GateMode::Tanh, 3);
  for (float& g : adapter.gate()) g = 0.1f;  // non-zero gates: the adapter branch really runs

  if (!a.no_infer) {
    const int64_t ctx = std::min(c.max_seq_len, a.prompt_tokens + a.gen_tokens);
    InferenceModel m(*w, ctx);
    if (a.adapter_decode) m.set_adapter(&adapter);
    std::vector<double> pre, dec;
    for (int64_t r = 0; r < a.repeat; ++r) {
      m.reset();
      auto t0 = std::chrono::steady_clock::now();
      const float* logits = m.forward(tokens.data(), a.prompt_tokens);
      pre.push_back(static_cast<double>(a.prompt_tokens) / seconds_since(t0));
      t0 = std::chrono::steady_clock::now();
      int64_t n = 0;
      for (; n < a.gen_tokens && m.pos() < ctx; ++n) {
        const int next = argmax(logits, c.vocab_size);
        logits = m.forward(&next, 1);
      }
      dec.push_back(static_cast<double>(n) / seconds_since(t0));
    }
    out["prefill_tokens"] = a.prompt_tokens;
    out["prefill_tok_s"] = median(pre);
    out["decode_tokens"] = a.gen_tokens;
    out["decode_tok_s"] = median(dec);
    out["decode_with_adapter"] = a.adapter_decode;
    // Every matrix is read once per decoded token (the embedding table only one row), and the
    // KV cache's rows so far: f32 keys and values of every layer, on average over the decoded
    // tokens (after the prompt's, the i-th decoded token attends over prompt + i + 1 rows).
    size_t weight_bytes = w->output.bytes();
    for (const LayerWeights& l : w->layers)
      for (const WeightMatrix* m : layer_matrices(l)) weight_bytes += m->bytes();
    const double mean_rows = static_cast<double>(a.prompt_tokens) + static_cast<double>(a.gen_tokens + 1) / 2.0;
    const double kv_bytes = mean_rows * static_cast<double>(2 * c.kv_dim() * c.n_layers) * sizeof(float);
    const double bytes = static_cast<double>(weight_bytes) + kv_bytes;
    out["decode_weight_mib"] = static_cast<double>(weight_bytes) / (1 << 20);
    out["decode_kv_mib"] = kv_bytes / (1 << 20);
    if (a.bandwidth) {
      const double bw = measure_read_bandwidth();
      out["read_gb_s"] = bw / 1e9;
      out["decode_roofline_tok_s"] = bw / bytes;
      out["decode_roofline_fraction"] = median(dec) * bytes / bw;
    }
    if (a.adapter_overhead) {
      // The same decode with and without the adapter, from two models side by side (own KV
      // caches, the same weights) taking turns in blocks of 4 tokens, the order alternating: a
      // noisy host's slow moments then hit both, where separate runs differ by 10-20%.
      InferenceModel plain(*w, ctx), adapted(*w, ctx);
      adapted.set_adapter(&adapter);
      std::vector<double> ratio, tok_plain, tok_adapted;
      for (int64_t r = 0; r < a.repeat; ++r) {
        plain.reset();
        adapted.reset();
        const float* logits[2] = {plain.forward(tokens.data(), a.prompt_tokens),
                                  adapted.forward(tokens.data(), a.prompt_tokens)};
        InferenceModel* models[2] = {&plain, &adapted};
        double secs[2] = {0, 0};
        int64_t n = 0;
        for (int64_t blk = 0; n < a.gen_tokens && plain.pos() < ctx; ++blk) {
          const int64_t len = std::min<int64_t>({4, a.gen_tokens - n, ctx - plain.pos()});
          for (int i = 0; i < 2; ++i) {
            const int which = (blk % 2 == 0) ? i : 1 - i;
            const auto t0 = std::chrono::steady_clock::now();
            for (int64_t k = 0; k < len; ++k) {
              const int next = argmax(logits[which], c.vocab_size);
              logits[which] = models[which]->forward(&next, 1);
            }
            secs[which] += seconds_since(t0);
          }
          n += len;
        }
        if (n == 0) break;
        ratio.push_back(secs[1] / secs[0]);
        tok_plain.push_back(static_cast<double>(n) / secs[0]);
        tok_adapted.push_back(static_cast<double>(n) / secs[1]);
      }
      if (!ratio.empty()) {
        out["decode_tok_s_plain"] = median(tok_plain);
        out["decode_tok_s_adapter"] = median(tok_adapted);
        out["adapter_overhead_pct"] = (median(ratio) - 1.0) * 100.0;
      }
    }
    if (!a.decode_batch.empty()) {
      // B sequences decoded together, one row each per step (the server's decode steps): each
      // prefilled alone first, then gen_tokens steps of B rows; aggregate tokens/s. With
      // --adapter-decode two such batches run side by side (their own KV caches), taking turns
      // every 4 steps, the order alternating (as --adapter-overhead does): every sequence on one
      // adapter ("same"), and sequence i on adapter i ("mixed", B adapters).
      const int64_t maxb = *std::max_element(a.decode_batch.begin(), a.decode_batch.end());
      InferenceModel bm(*w, ctx, std::max<int64_t>(maxb, a.prompt_tokens));
      const int sets = a.adapter_decode ? 2 : 1;
      std::vector<KVCache> caches;
      for (int64_t i = 0; i < sets * maxb; ++i) caches.emplace_back(c, ctx);
      std::vector<float> logits(static_cast<size_t>(maxb * c.vocab_size));
      std::vector<Adapter> adapters;
      std::vector<std::unique_ptr<AdapterPrompts>> prompts;
      if (a.adapter_decode)
        for (int64_t i = 0; i < maxb; ++i) {
          adapters.push_back(Adapter::create(c, a.adapter_len, L, GateMode::Tanh, static_cast<uint64_t>(11 + i)));
          for (float& g : adapters.back().gate()) g = 0.1f;
          prompts.push_back(std::make_unique<AdapterPrompts>(*w, adapters.back()));
        }
      // Set k's sequence i: its cache, and its adapter (set 1 = mixed: adapter i; else adapter 0,
      // or none without --adapter-decode).
      const auto cache = [&](int k, int64_t i) { return &caches[static_cast<size_t>(k * maxb + i)]; };
      const auto prompt_of = [&](int k, int64_t i) -> const AdapterPrompts* {
        return prompts.empty() ? nullptr : prompts[static_cast<size_t>(k == 1 ? i : 0)].get();
      };
      auto& rows = out["batched_decode"] = nlohmann::ordered_json::array();
      for (const int64_t B : a.decode_batch) {
        std::vector<double> rate[2], ratio;
        for (int64_t r = 0; r < a.repeat; ++r) {
          std::vector<int> next[2];
          for (int k = 0; k < sets; ++k) {
            next[k].resize(static_cast<size_t>(B));
            for (int64_t i = 0; i < B; ++i) {
              cache(k, i)->reset();
              std::vector<SeqStep> one{{cache(k, i), prompt_of(k, i), tokens.data(), a.prompt_tokens, logits.data()}};
              bm.step(one);
              next[k][static_cast<size_t>(i)] = argmax(logits.data(), c.vocab_size);
            }
          }
          double secs[2] = {0, 0};
          int64_t n = 0;
          for (int64_t blk = 0; n < a.gen_tokens && cache(0, 0)->pos() < ctx; ++blk) {
            const int64_t len = std::min<int64_t>({4, a.gen_tokens - n, ctx - cache(0, 0)->pos()});
            for (int j = 0; j < sets; ++j) {
              const int k = blk % 2 == 0 ? j : sets - 1 - j;
              const auto t0 = std::chrono::steady_clock::now();
              for (int64_t t = 0; t < len; ++t) {
                std::vector<SeqStep> seqs;
                for (int64_t i = 0; i < B; ++i)
                  seqs.push_back({cache(k, i), prompt_of(k, i), &next[k][static_cast<size_t>(i)], 1,
                                  logits.data() + i * c.vocab_size});
                bm.step(seqs);
                for (int64_t i = 0; i < B; ++i)
                  next[k][static_cast<size_t>(i)] = argmax(logits.data() + i * c.vocab_size, c.vocab_size);
              }
              secs[k] += seconds_since(t0);
            }
            n += len;
          }
          for (int k = 0; k < sets; ++k) rate[k].push_back(static_cast<double>(n * B) / secs[k]);
          if (sets == 2) ratio.push_back(secs[0] / secs[1]);
        }
        nlohmann::ordered_json row{{"seqs", B}, {"tok_s", median(rate[0])}};
        if (sets == 2) {
          row["tok_s_mixed"] = median(rate[1]);
          row["mixed_vs_same_pct"] = (median(ratio) - 1.0) * 100.0;
        }
        rows.push_back(row);
      }
    }
    out["rss_after_inference_mib"] = static_cast<double>(current_rss_bytes()) / (1 << 20);
  }
  if (!a.no_train) {
    if (a.train_seq >= c.max_seq_len)
      fail("--train-seq {} must be below the context length {}", a.train_seq, c.max_seq_len);
    // --images: a multi-modal adapter (SPEC §8) at ViT-L/14's sizes, every sequence with its own
    // image, whose multi-scale features are cached (as finetune caches them: CLIP is not run here).
    const VisualSpec vit_l14{2304, 128, "8,16,24", 768, 224};
    std::vector<std::vector<float>> features;
    if (a.images) {
      if (a.full) fail("--images times the multi-modal adapter's step: it does not apply to --full");
      adapter.add_visual(vit_l14, 3);
      for (float& v : adapter.params["visual_proj.fc2.weight"]) v = 0.01f;  // the image really reaches the prompts
      for (int64_t i = 0; i < a.train_batch; ++i) {
        features.emplace_back(static_cast<size_t>(vit_l14.in));
        fill_normal(features.back().data(), vit_l14.in, 100 + static_cast<uint64_t>(i));
      }
    }
    PackedBatch b;
    b.clear();
    for (int64_t i = 0; i < a.train_batch; ++i) {
      std::vector<int> seq(tokens.begin(), tokens.begin() + a.train_seq + 1);
      std::rotate(seq.begin(), seq.begin() + i, seq.end());
      b.add(seq, 1, a.images ? features[static_cast<size_t>(i)].data() : nullptr);
    }
    out["train_images"] = a.images;
    // Each timed step: the same batch again (so a full step's loss visibly falls); the first
    // step is a warm-up. Returns the median tokens/s.
    auto time_steps = [&](auto&& step) {
      std::vector<double> tps;
      for (int64_t r = 0; r <= a.repeat; ++r) {
        auto t0 = std::chrono::steady_clock::now();
        step(r);
        if (r > 0) tps.push_back(static_cast<double>(b.rows()) / seconds_since(t0));
      }
      return median(tps);
    };
    out["train_batch"] = a.train_batch;
    out["train_seq"] = a.train_seq;
    out["train_full"] = a.full;
    double tok_s = 0;
    size_t arena = 0;
    if (a.full) {
      // What `finetune --full` runs (train/trainer.cpp): the weights as one f32 parameter buffer,
      // the graph reading them through a view, gradients of every tensor, one AdamW update over
      // the whole buffer with finetune's defaults (betas 0.9/0.95, eps 1e-8, weight decay 0.02 on
      // every row). Not timed, as PyTorch's step has no such thing: the gradient norm finetune
      // computes for its finiteness check and clipping.
      ParamSet params = model_params(*w);
      w.reset();  // the view of `params` is the model now: peak memory as finetune --full's
      const std::unique_ptr<ModelWeights> view = model_view(c, params);
      TrainGraph g(TrainGraph::Full{}, *view, b.rows(), a.train_seq, a.recompute);
      ParamSet grads = params.zeros_like();
      AdamWState moments;
      moments.resize(params.size());
      const Adapter none;
      AdamWOptions adam;
      adam.weight_decay = 0.02f;  // finetune's --weight-decay default
      std::vector<double> losses;
      tok_s = time_steps([&](int64_t r) {
        grads.zero();
        const LossResult res = g.run(b, none, &grads, 1.0f / static_cast<float>(b.supervised));
        adamw_update(params.values().data(), grads.values().data(), moments, static_cast<int64_t>(params.size()), 1e-3f,
                     r + 1, adam);
        losses.push_back(res.loss_sum / static_cast<double>(res.tokens));
      });
      arena = g.arena_bytes();
      out["train_params"] = params.size();
      out["train_loss_first"] = losses.front();
      out["train_loss_last"] = losses.back();
      const double flop = full_train_flop_per_token(c, a.train_seq);
      out["train_gflop_per_token"] = flop / 1e9;
      out["train_gflop_s"] = flop * tok_s / 1e9;
    } else {
      TrainGraph g(*w, adapter, b.rows(), a.train_seq, a.recompute);
      ParamSet grads = adapter.params.zeros_like();
      AdamWState moments;
      moments.resize(adapter.params.size());
      tok_s = time_steps([&](int64_t r) {
        grads.zero();
        g.run(b, adapter, &grads, 1.0f / static_cast<float>(b.supervised));
        adamw_update(adapter.params.values().data(), grads.values().data(), moments,
                     static_cast<int64_t>(adapter.params.size()), 1e-3f, r + 1, {});
      });
      arena = g.arena_bytes();
      out["adapter_len"] = a.adapter_len;
      out["adapter_layers"] = L;
      if (!a.images) {  // the visual projection's products are not counted
        const double flop = adapter_train_flop_per_token(c, a.train_seq, a.adapter_len, L);
        out["train_gflop_per_token"] = flop / 1e9;
        out["train_gflop_s"] = flop * tok_s / 1e9;
      }
    }
    out["train_tok_s"] = tok_s;
    out["train_step_s"] = static_cast<double>(b.rows()) / tok_s;
    out["activation_mib"] = static_cast<double>(arena) / (1 << 20);
  }
  if (a.fma_peak) {
    report_fma_peak(out);
    if (out.contains("train_gflop_s"))
      out["train_fma_peak_fraction"] = out["train_gflop_s"].get<double>() / out["fma_peak_gflop_s"].get<double>();
  }
  out["peak_rss_mib"] = static_cast<double>(peak_rss_bytes()) / (1 << 20);
  print(out, a.json);
}

}  // namespace

void register_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Measure prefill, decode and training speed and peak memory");
  auto a = std::make_shared<BenchArgs>();
  auto* m = a->model.add_to(cmd, false, false);
  std::string names;
  for (const auto& n : shape_names()) names += (names.empty() ? "" : ", ") + n;
  auto* s = cmd->add_option("--shape", a->shape, "A named shape with random f32 weights: " + names);
  m->excludes(s);
  cmd->add_option("--prompt-tokens", a->prompt_tokens, "Prefill length")->default_val(128)->check(CLI::PositiveNumber);
  cmd->add_option("--gen-tokens", a->gen_tokens, "Decode steps")->default_val(64)->check(CLI::NonNegativeNumber);
  cmd->add_option("--repeat", a->repeat, "Repetitions (the median is reported)")
      ->default_val(5)
      ->check(CLI::PositiveNumber);
  cmd->add_option("--train-batch", a->train_batch, "Training micro-batch (sequences)")
      ->default_val(4)
      ->check(CLI::PositiveNumber);
  cmd->add_option("--train-seq", a->train_seq, "Training sequence length")
      ->default_val(256)
      ->check(CLI::PositiveNumber);
  cmd->add_option("--adapter-len", a->adapter_len, "K")->default_val(10)->check(CLI::PositiveNumber);
  cmd->add_option("--adapter-layers", a->adapter_layers, "L (default: all layers)")->check(CLI::PositiveNumber);
  cmd->add_flag("--adapter-decode", a->adapter_decode, "Decode with a K, L adapter attached");
  cmd->add_flag("--adapter-overhead", a->adapter_overhead,
                "Also decode with and without a K, L adapter, two models taking turns every 4 tokens, and "
                "report how much slower the adapter makes decoding (median over --repeat)");
  cmd->add_option(
         "--decode-batch", a->decode_batch,
         "Also decode this many sequences together, one row each per step, for each count given "
         "(e.g. 1,4,8): aggregate tokens/s, as a server's decode steps; with --adapter-decode every "
         "sequence on one adapter and, side by side, each on its own (tok_s_mixed), taking turns every 4 steps")
      ->delimiter(',')
      ->check(CLI::Range(int64_t{1}, int64_t{64}));
  cmd->add_flag("--no-infer", a->no_infer, "Skip prefill/decode");
  cmd->add_flag("--bandwidth", a->bandwidth,
                "Also measure the memory read bandwidth and report decode as a fraction of its roofline");
  cmd->add_flag("--no-train", a->no_train, "Skip the training step");
  cmd->add_flag("--recompute", a->recompute, "Training with activation recomputation");
  cmd->add_flag("--images", a->images,
                "Time the multi-modal adapter's step: every sequence with an image (cached ViT-L/14 features, "
                "2304 values; visual projection W=128)");
  cmd->add_flag("--full", a->full,
                "Time a full-parameter training step instead of the adapter's (every weight trained, AdamW "
                "over all, as finetune --full); also reports train_gflop_s");
  cmd->add_flag("--fma-peak", a->fma_peak,
                "Also measure the CPU's fp32 multiply-add peak (GFLOP/s, all threads; alone: only that)");
  cmd->add_flag("--json", a->json, "One JSON object");
  add_bf16_compute_flag(cmd,
                        "Products with bf16-stored matrices (prefill, training) in bf16 arithmetic: activations "
                        "rounded to bf16, f32 sums (AVX512-BF16 CPUs; changes the numbers slightly)");
  cmd->add_option("--type", a->type,
                  "With --shape: store the random matrices as f32, f16, bf16, q8_0, q4_0, q4_k, q6_k")
      ->default_val("f32")
      ->needs(s);
  cmd->add_option("--save-model", a->save_model, "With --shape: write the random model as a llama2.c .bin and exit")
      ->needs(s);
  cmd->callback([a] {
    if (a->model.model.empty() && a->shape.empty() && !a->fma_peak)
      throw CLI::ValidationError("bench", "give --model or --shape");
    run_bench(*a);
  });
}

}  // namespace la::cli
