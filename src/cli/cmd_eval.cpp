#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "la/core/error.h"
#include "la/dist/comm.h"
#include "la/io/adapter_file.h"
#include "la/train/trainer.h"

namespace la::cli {

void register_eval(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("eval", "Masked cross-entropy and perplexity of a model (+ adapter) on instruction data");
  struct Args {
    ModelArgs model;
    std::string adapter, data, gate_mode;
    int64_t max_seq_len = 512, micro_batch_size = 8;
    bool json = false;
    ClipArgs clip;
  };
  auto a = std::make_shared<Args>();
  a->model.add_to(cmd);
  cmd->add_option("-a,--adapter", a->adapter, "LLaMA-Adapter weights (.safetensors)");
  cmd->add_option("-d,--data", a->data, "Alpaca JSON array or JSONL")->required();
  auto* seq = cmd->add_option("--max-seq-len", a->max_seq_len,
                              "Truncate examples to this many tokens (default: 512 or the model's context, if shorter)")
                  ->default_val(512)
                  ->check(CLI::Range(2, 1 << 20));
  cmd->add_option("--micro-batch-size", a->micro_batch_size, "Examples per forward pass")
      ->default_val(8)
      ->check(CLI::PositiveNumber);
  cmd->add_option("--gate-mode", a->gate_mode, "Override the adapter's gate mode: tanh or identity")
      ->check(CLI::IsMember({"tanh", "identity"}));
  cmd->add_flag("--json", a->json, "Print one JSON object: loss, perplexity, tokens, examples");
  a->clip.add_to(cmd);
  cmd->callback([a, seq] {
    LoadedModel lm = load_model_and_tokenizer(a->model);
    const ModelConfig& c = lm.weights->config;
    if (seq->count() == 0) a->max_seq_len = std::min(a->max_seq_len, c.max_seq_len);  // the default must fit
    if (a->max_seq_len > c.max_seq_len)
      fail("--max-seq-len {} exceeds the model's context length {}", a->max_seq_len, c.max_seq_len);
    Adapter adapter;
    if (!a->adapter.empty()) {
      adapter = load_adapter(a->adapter, &c);
      if (!a->gate_mode.empty()) adapter.gate_mode = parse_gate_mode(a->gate_mode);
    }
    LoadedClip clip = load_clip_args(a->clip);
    if (clip.weights && a->adapter.empty()) fail("--clip needs a multi-modal --adapter");
    check_adapter_clip(adapter, a->adapter, clip);
    const std::vector<AlpacaRecord> records = load_alpaca(a->data);
    TokenizedDataset d = tokenize_alpaca(records, *lm.tokenizer, a->max_seq_len);
    attach_images(d, records, clip, a->data);
    EvalResult r = evaluate_dataset(*lm.weights, d, a->adapter.empty() ? nullptr : &adapter, a->micro_batch_size);
    if (r.tokens == 0) fail("{}: no supervised tokens to evaluate", a->data);
    if (!Comm::world().is_root()) return;  // a data-parallel eval: every rank has the sums, rank 0 prints
    const double ppl = std::exp(r.loss);
    if (a->json) {
      nlohmann::ordered_json j;
      j["loss"] = r.loss;
      j["perplexity"] = ppl;
      j["tokens"] = r.tokens;
      j["examples"] = r.examples;
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("loss %.6f  perplexity %.4f  (%lld supervised tokens, %lld examples, %lld truncated)\n", r.loss, ppl,
                  static_cast<long long>(r.tokens), static_cast<long long>(r.examples),
                  static_cast<long long>(d.truncated));
    }
  });
}

}  // namespace la::cli
