#include <fmt/format.h>

#include <cstdio>
#include <string>

#include "commands.h"
#include "la/core/cpu.h"
#include "la/core/error.h"
#include "la/core/runtime.h"
#include "la/io/shapes.h"
#include "la/kernels/gemm.h"
#include "la/model/inference.h"

namespace la::cli {

namespace {

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  return fmt::format("{:.2f} {}", b, units[u]);
}

}  // namespace

void register_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show a model's configuration, parameter count, storage and memory estimate");
  struct Args {
    ModelArgs model;
    std::string shape;
    int64_t context = 0, adapter_len = 10, adapter_layers = -1;
  };
  auto a = std::make_shared<Args>();
  auto* m = a->model.add_to(cmd, false, false);
  std::string names;
  for (const auto& n : shape_names()) names += (names.empty() ? "" : ", ") + n;
  auto* s = cmd->add_option("--shape", a->shape, "A named shape instead of a file: " + names);
  m->excludes(s);
  cmd->add_option("--context", a->context, "Context length for the memory estimate (default: the model's)");
  cmd->add_option("--adapter-len", a->adapter_len, "K for the adapter size shown")
      ->default_val(10)
      ->check(CLI::PositiveNumber);
  cmd->add_option("--adapter-layers", a->adapter_layers, "L for the adapter size shown (default: min(30, layers))")
      ->check(CLI::PositiveNumber);
  cmd->callback([a] {
    if (a->model.model.empty() && a->shape.empty()) throw CLI::ValidationError("info", "give --model or --shape");
    std::unique_ptr<ModelWeights> owned;
    ModelWeights shaped;
    if (!a->shape.empty()) {
      auto c = named_shape(a->shape);
      if (!c) fail("unknown shape '{}' (known: {})", a->shape, fmt::join(shape_names(), ", "));
      shaped.config = *c;
      shaped.path = "shape:" + a->shape;
      shaped.format = "named shape (no weights)";
    } else {
      owned = load_model_and_tokenizer(a->model, false).weights;
    }
    const ModelWeights& w = owned ? *owned : shaped;
    const ModelConfig& c = w.config;
    const int64_t* ctx = &a->context;
    const int64_t context = *ctx > 0 ? *ctx : c.max_seq_len;
    std::printf("model:        %s (%s)\n", w.path.c_str(), w.format.c_str());
    std::printf("dim:          %lld\n", static_cast<long long>(c.dim));
    std::printf("hidden_dim:   %lld\n", static_cast<long long>(c.hidden_dim));
    std::printf("n_layers:     %lld\n", static_cast<long long>(c.n_layers));
    std::printf("n_heads:      %lld\n", static_cast<long long>(c.n_heads));
    std::printf("n_kv_heads:   %lld\n", static_cast<long long>(c.n_kv_heads));
    std::printf("head_dim:     %lld\n", static_cast<long long>(c.head_dim()));
    std::printf("vocab_size:   %lld\n", static_cast<long long>(c.vocab_size));
    std::printf("max_seq_len:  %lld\n", static_cast<long long>(c.max_seq_len));
    std::printf("norm_eps:     %g\n", static_cast<double>(c.norm_eps));
    std::printf("rope_theta:   %g (%s pairs)\n", static_cast<double>(c.rope_theta),
                c.rope_style == RopeStyle::Interleaved ? "interleaved" : "rotate-half");
    std::printf("classifier:   %s\n", c.tied_classifier ? "tied to the embedding" : "separate");
    std::printf("parameters:   %lld\n", static_cast<long long>(c.parameter_count()));
    size_t total = 0;
    if (!owned) total = static_cast<size_t>(c.parameter_count()) * 4;  // as f32
    for (const auto& [type, bytes] : owned ? w.bytes_by_type() : std::vector<std::pair<std::string, size_t>>{}) {
      std::printf("weights %-5s %s\n", (type + ":").c_str(), human_bytes(static_cast<double>(bytes)).c_str());
      total += bytes;
    }
    const double kv = 2.0 * static_cast<double>(c.n_layers * context * c.kv_dim()) * 4;
    const double scratch = static_cast<double>(256 * (4 * c.dim + 2 * c.hidden_dim) + c.vocab_size) * 4;
    std::printf("kv cache:     %s (context %lld, f32)\n", human_bytes(kv).c_str(), static_cast<long long>(context));
    if (!owned) std::printf("weights f32:  %s (if stored as f32)\n", human_bytes(static_cast<double>(total)).c_str());
    std::printf("memory est.:  %s (weights mapped + KV cache + scratch)\n",
                human_bytes(static_cast<double>(total) + kv + scratch).c_str());
    const int64_t L = a->adapter_layers > 0 ? a->adapter_layers : std::min<int64_t>(30, c.n_layers);
    if (L > c.n_layers) fail("--adapter-layers {} exceeds the model's {} layers", L, c.n_layers);
    const int64_t n = adapter_parameter_count(c, a->adapter_len, L);
    std::printf("adapter:      K=%lld L=%lld: %lld trainable parameters (%s as f32)\n",
                static_cast<long long>(a->adapter_len), static_cast<long long>(L), static_cast<long long>(n),
                human_bytes(static_cast<double>(n) * 4).c_str());
    std::printf("cpu:          %s [%s]\n", cpu_features().brand.c_str(), cpu_features().summary().c_str());
    const Runtime& rt = runtime();
    std::printf("runtime:      threads %d (of %d allowed), isa %s, bf16 arithmetic %s\n", rt.threads, allowed_threads(),
                rt.isa.c_str(), rt.bf16_compute ? "on" : "off");
    std::printf("gemm:         %s\n", gemm_available()
                                          ? (std::string("ours, ") + gemm_kernels_name() + " build").c_str()
                                          : "OpenBLAS (no build of ours for this instruction set)");
    std::printf("blas:         OpenBLAS, %s kernels\n", blas_core_name().c_str());
  });
}

}  // namespace la::cli
