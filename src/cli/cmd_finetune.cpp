#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>

#include "commands.h"
#include "la/core/error.h"
#include "la/core/paths.h"
#include "la/core/runtime.h"
#include "la/core/signals.h"
#include "la/dist/comm.h"
#include "la/kernels/matmul.h"
#include "la/train/trainer.h"
#include "progress.h"
#include "validators.h"

namespace la::cli {

namespace {

struct FinetuneArgs {
  ModelArgs model;
  std::string data, val_data, gate_mode = "tanh", schedule = "cosine";
  int64_t max_seq_len = 512;
  bool no_shuffle = false, no_progress = false;
  int64_t log_every = 10;
  ClipArgs clip;
  int64_t visual_width = 128;
  FinetuneOptions o;
};

TokenizedDataset load_data(const std::string& path, const Tokenizer& tok, int64_t max_seq_len, const char* what,
                           LoadedClip& clip) {
  const std::vector<AlpacaRecord> records = load_alpaca(path);
  TokenizedDataset d = tokenize_alpaca(records, tok, max_seq_len);
  attach_images(d, records, clip, path);  // before examples are dropped: examples[i] is records[i]
  const size_t before = d.examples.size();
  std::erase_if(d.examples, [](const Example& e) { return e.supervised() == 0; });
  if (!Comm::world().is_root()) return d;
  std::fprintf(
      stderr, "%s: %s: %zu examples, %lld tokens (%lld supervised), %lld truncated to %lld tokens%s\n", what,
      path.c_str(), d.examples.size(), static_cast<long long>(d.total_tokens),
      static_cast<long long>(d.supervised_tokens), static_cast<long long>(d.truncated),
      static_cast<long long>(max_seq_len),
      before != d.examples.size()
          ? fmt::format(", {} skipped (no response token left after truncation)", before - d.examples.size()).c_str()
          : "");
  return d;
}

// The extension of --out says the format: a model .gguf or .bin, an adapter .safetensors or .gguf.
void check_model_output(bool full, const std::string& out) {
  if (full && !out.ends_with(".gguf") && !out.ends_with(".bin"))
    fail("--out {}: a fully trained model is written as .gguf or .bin (llama2.c)", out);
  if (!full && out.ends_with(".bin"))
    fail("--out {}: an adapter is written as .safetensors or .gguf (a .bin model needs --full)", out);
}

}  // namespace

void add_run_flags(CLI::App* cmd, FinetuneOptions& o, std::string& val_data, int64_t& log_every, bool& no_progress,
                   const std::string& val_help) {
  cmd->add_option("--resume", o.resume, "Continue from a training checkpoint");
  cmd->add_option("--save-every", o.save_every, "Write a resumable checkpoint every N steps")
      ->default_val(0)
      ->check(integer_in(0));
  cmd->add_option("--checkpoint", o.checkpoint, "Checkpoint path (default: <out>.ckpt)");
  cmd->add_option("--val-data", val_data, val_help);
  cmd->add_option("--eval-every", o.eval_every, "Held-out evaluation interval in steps")
      ->default_val(0)
      ->check(integer_in(0));
  cmd->add_option("--metrics", o.metrics, "Write one JSON object per optimizer step to this file");
  cmd->add_flag("--recompute", o.recompute, "Recompute activations in the backward (less memory)");
  cmd->add_option("--log-every", log_every, "Print a progress line every N steps (non-terminal output)")
      ->default_val(10)
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--no-progress", no_progress, "No progress bar even on a terminal");
}

void run_training(const ModelWeights& w, const TokenizedDataset& train, const TokenizedDataset* val,
                  const FinetuneOptions& o, bool progress, int64_t log_every) {
  // Only rank 0 of a data-parallel run reports (the others compute the same numbers).
  const bool root = Comm::world().is_root();
  TrainerCallbacks cb = root ? progress_callbacks({stderr_is_tty() && progress, log_every, ""}) : TrainerCallbacks{};
  // SIGINT/SIGTERM/SIGHUP: a checkpoint at the next step boundary, then stop; a second signal
  // stops at once.
  install_stop_handlers();
  cb.should_stop = [] { return stop_requested(); };
  FinetuneResult r = finetune(w, train, val, o, cb);
  if (r.interrupted) {
    const int sig = stop_signal();
    std::fprintf(
        stderr,
        "interrupted by %s after step %lld: checkpoint saved to %s; continue with the same command and --resume %s\n",
        sig == SIGTERM  ? "SIGTERM"
        : sig == SIGHUP ? "SIGHUP"
                        : "SIGINT",
        static_cast<long long>(r.history.empty() ? 0 : r.history.back().step), r.checkpoint.c_str(),
        r.checkpoint.c_str());
    std::fflush(stderr);
    std::exit(128 + (sig > 0 ? sig : SIGINT));
  }
  if (root)
    std::fprintf(stderr, "saved %s (%lld steps this run, loss %.4f -> %.4f)\n", o.out.c_str(),
                 static_cast<long long>(r.steps_done), r.first_loss, r.last_loss);
}

void register_finetune(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "finetune", "Fine-tune a LLaMA-Adapter (or, with --full, every weight) on Alpaca-style instruction data");
  auto a = std::make_shared<FinetuneArgs>();
  FinetuneOptions& o = a->o;
  a->model.add_to(cmd);
  cmd->add_option("-d,--data", a->data, "Training data: Alpaca JSON array or JSONL")->required();
  cmd->add_option("-o,--out", o.out, "Output adapter (.safetensors), or with --full the model (.gguf or .bin)")
      ->required();
  cmd->add_flag("--full", o.full,
                "Full fine-tuning: train every weight of the base (f32) instead of an adapter, and write the model");
  cmd->add_option("--adapter-len", o.adapter_len, "K: prompt tokens per adapted layer")
      ->default_val(10)
      ->check(integer_in(1, 4096));
  cmd->add_option("--adapter-layers", o.adapter_layers, "L: adapted (top) layers (default: min(30, layers))")
      ->check(integer_in(1, 4096));
  cmd->add_option("--gate-mode", a->gate_mode, "Gate activation: tanh or identity")
      ->default_val("tanh")
      ->check(CLI::IsMember({"tanh", "identity"}));
  cmd->add_option("--epochs", o.epochs, "Epochs")->default_val(5)->check(integer_in(1, 1000000));
  cmd->add_option("--batch-size", o.batch_size, "Examples per optimizer step (effective batch)")
      ->default_val(32)
      ->check(integer_in(1, 1 << 24));
  cmd->add_option("--micro-batch-size", o.micro_batch_size, "Examples per forward/backward (gradient accumulation)")
      ->default_val(8)
      ->check(integer_in(1, 1 << 24));
  cmd->add_option("--lr", o.lr, "Absolute learning rate (overrides --blr)")->check(finite_in(0));
  cmd->add_option("--blr", o.blr, "Base learning rate: lr = blr * batch / 256")
      ->default_val(9e-3f)
      ->check(finite_in(0));
  cmd->add_option("--min-lr", o.min_lr, "Learning rate at the end of the cosine")
      ->default_val(0.0f)
      ->check(finite_in(0));
  cmd->add_option("--warmup-epochs", o.warmup_epochs, "Linear warm-up from 0, in epochs")
      ->default_val(2.0)
      ->check(finite_in(0));
  cmd->add_option("--warmup-steps", o.warmup_steps, "Linear warm-up in optimizer steps (overrides --warmup-epochs)")
      ->check(integer_in(0));
  cmd->add_option("--schedule", a->schedule, "cosine (half-cycle after warm-up) or constant")
      ->default_val("cosine")
      ->check(CLI::IsMember({"cosine", "constant"}));
  cmd->add_option("--steps", o.steps, "Stop after this many optimizer steps")->check(integer_in(0));
  cmd->add_option("--weight-decay", o.weight_decay, "AdamW weight decay")->default_val(0.02f)->check(finite_in(0));
  cmd->add_option("--grad-clip", o.grad_clip, "Clip the global gradient norm to this (0 = off)")
      ->default_val(0.0f)
      ->check(finite_in(0));
  auto* seq = cmd->add_option("--max-seq-len", a->max_seq_len,
                              "Truncate examples to this many tokens (default: 512 or the model's context, if shorter)")
                  ->default_val(512)
                  ->check(CLI::Range(2, 1 << 20));
  cmd->add_option("--seed", o.seed, "Seed for the adapter's initialisation and the data order")->default_val(0);
  cmd->add_flag("--no-shuffle", a->no_shuffle, "Keep the data in file order");
  a->clip.add_to(cmd);
  cmd->add_option("--visual-width", a->visual_width,
                  "Hidden width W of the visual projection (with --clip; SPEC §8, default 128)")
      ->default_val(128)
      ->check(CLI::Range(1, 65536));
  cmd->add_option("--init-adapter", o.init_adapter, "Start from these adapter weights (K, L, gate mode from the file)");
  add_run_flags(cmd, o, a->val_data, a->log_every, a->no_progress, "Held-out data evaluated every --eval-every steps");
  add_bf16_compute_flag(cmd,
                        "Products with the base model's bf16-stored matrices in bf16 arithmetic: activations and "
                        "their gradients rounded to bf16, f32 sums; ~2x faster products (AVX512-BF16 CPUs only; "
                        "changes the numbers slightly)");
  cmd->callback([a, seq] {
    FinetuneOptions o = a->o;
    o.gate_mode = parse_gate_mode(a->gate_mode);
    o.schedule = a->schedule == "constant" ? Schedule::Constant : Schedule::Cosine;
    o.shuffle = !a->no_shuffle;
    if (!o.init_adapter.empty() && !o.resume.empty()) fail("--init-adapter and --resume exclude each other");
    if (o.full && !o.init_adapter.empty()) fail("--full trains the model itself: --init-adapter does not apply");
    if (o.full && a->model.model.empty()) fail("--full needs --model");
    check_model_output(o.full, o.out);
    // Every output is checked before any work: it must be writable where it is, and never one of
    // the run's own inputs (or another output) — a result found unwritable after the last step,
    // or written over the base model, would lose the work or the input.
    const std::string ckpt = o.checkpoint.empty() ? o.out + ".ckpt" : o.checkpoint;
    const std::vector<std::pair<std::string, std::string>> outputs{
        {"--out", o.out}, {"--checkpoint", ckpt}, {"--metrics", o.metrics}};
    for (const auto& [flag, path] : outputs)
      if (!path.empty()) check_output_path(flag, path);
    // (A run resumed from its own checkpoint rewrites it, atomically, after reading it whole.)
    const bool resume_in_place = !o.resume.empty() && (same_file(o.resume, ckpt) || o.resume == ckpt);
    check_outputs_distinct(outputs, input_files(a->model, {{"--data", a->data},
                                                           {"--val-data", a->val_data},
                                                           {"--init-adapter", o.init_adapter},
                                                           {"--resume", resume_in_place ? "" : o.resume}}));
    if (resume_in_place && (same_file(o.resume, o.out) || o.resume == o.out))
      fail("--out {}: is the same file as the input --resume {}; refusing to overwrite it", o.out, o.resume);
    LoadedModel lm = load_model_and_tokenizer(a->model);
    if (runtime().bf16_compute) {  // main() has put it in force (refused on a CPU without AVX512-BF16)
      if (lm.weights->layers.front().wq.type != DType::BF16)
        std::fprintf(stderr, "note: --bf16-compute: the matrices are %s, not bf16; it changes nothing for them\n",
                     dtype_name(lm.weights->layers.front().wq.type));
      prepack_for_bf16_compute(*lm.weights);
    }
    if (seq->count() == 0)
      a->max_seq_len = std::min(a->max_seq_len, lm.weights->config.max_seq_len);  // the default must fit
    if (a->max_seq_len > lm.weights->config.max_seq_len)
      fail("--max-seq-len {} exceeds the model's context length {}", a->max_seq_len, lm.weights->config.max_seq_len);
    LoadedClip clip = load_clip_args(a->clip);
    if (clip.weights) {
      if (o.full) fail("--clip trains a multi-modal adapter: it does not apply to --full");
      const ClipConfig& cc = clip.weights->config;
      o.visual = {cc.feature_dim(), a->visual_width, cc.feature_layers_string(), cc.embed_dim, cc.image_size};
    }
    TokenizedDataset train = load_data(a->data, *lm.tokenizer, a->max_seq_len, "train", clip);
    TokenizedDataset val;
    if (!a->val_data.empty()) val = load_data(a->val_data, *lm.tokenizer, a->max_seq_len, "val", clip);
    if (!a->val_data.empty() && o.eval_every == 0) o.eval_every = 50;
    BpeVocab vocab;  // what a GGUF model embeds
    if (o.full && o.out.ends_with(".gguf")) {
      vocab = gguf_vocabulary(*lm.tokenizer, a->model.tokenizer);
      o.vocab = &vocab;
    }
    run_training(*lm.weights, train, a->val_data.empty() ? nullptr : &val, o, !a->no_progress, a->log_every);
  });
}

}  // namespace la::cli
