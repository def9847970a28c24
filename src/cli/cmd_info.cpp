#include <cstdio>

#include <fmt/format.h>

#include "commands.h"
#include "la/core/cpu.h"
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
  auto args = std::make_shared<ModelArgs>();
  args->add_to(cmd);
  auto ctx = std::make_shared<int64_t>(0);
  cmd->add_option("--context", *ctx, "Context length for the memory estimate (default: the model's)");
  cmd->callback([args, ctx] {
    LoadedModel lm = load_model_and_tokenizer(*args, false);
    const ModelWeights& w = *lm.weights;
    const ModelConfig& c = w.config;
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
    for (const auto& [type, bytes] : w.bytes_by_type()) {
      std::printf("weights %-5s %s\n", (type + ":").c_str(), human_bytes(static_cast<double>(bytes)).c_str());
      total += bytes;
    }
    const double kv = 2.0 * static_cast<double>(c.n_layers * context * c.kv_dim()) * 4;
    const double scratch = static_cast<double>(256 * (4 * c.dim + 2 * c.hidden_dim) + c.vocab_size) * 4;
    std::printf("kv cache:     %s (context %lld, f32)\n", human_bytes(kv).c_str(), static_cast<long long>(context));
    std::printf("memory est.:  %s (weights mapped + KV cache + scratch)\n",
                human_bytes(static_cast<double>(total) + kv + scratch).c_str());
    std::printf("adapter K=10, L=%lld: %lld trainable parameters\n", static_cast<long long>(c.n_layers),
                static_cast<long long>(adapter_parameter_count(c, 10, c.n_layers)));
    std::printf("cpu:          %s [%s]\n", cpu_features().brand.c_str(), cpu_features().summary().c_str());
  });
}

}  // namespace la::cli
