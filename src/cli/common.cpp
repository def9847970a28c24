#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "la/core/error.h"
#include "la/core/mapped_file.h"
#include "la/core/memory.h"
#include "la/core/runtime.h"
#include "la/io/loader.h"
#include "la/tokenizer/sp_tokenizer.h"
#include "validators.h"

namespace la::cli {

RuntimeFlags& runtime_flags() {
  static RuntimeFlags flags;
  return flags;
}

CLI::Option* add_threads_flag(CLI::App* cmd) {
  return cmd
      ->add_option("--threads", runtime_flags().threads,
                   "Threads for compute (default: $OMP_NUM_THREADS, else every core this process may use)")
      ->check(integer_in(0, 1 << 20));
}

CLI::Option* add_bf16_compute_flag(CLI::App* cmd, const std::string& help) {
  return cmd->add_flag("--bf16-compute", runtime_flags().bf16_compute, help);
}

void apply_runtime_flags() {
  const RuntimeFlags& f = runtime_flags();
  Runtime r = runtime_from_env();
  if (f.threads > 0) r.threads = f.threads;
  r.bf16_compute = f.bf16_compute;
  const Runtime& in_force = set_runtime(r);
  if (f.threads > in_force.threads)
    std::fprintf(stderr, "note: --threads %d: this process may use %d cores; running %d threads\n", f.threads,
                 allowed_threads(), in_force.threads);
}

void add_sampling_flags(CLI::App* cmd, SamplerOptions& o) {
  cmd->add_option("--temperature", o.temperature, "Sampling temperature; 0 = greedy")
      ->default_val(0.1f)
      ->check(finite_in(0));
  cmd->add_option("--top-p", o.top_p, "Nucleus sampling mass (1 = off)")->default_val(0.75f)->check(finite_in(0, 1));
  cmd->add_option("--top-k", o.top_k, "Keep only the k most likely tokens (0 = off)")
      ->default_val(0)
      ->check(integer_in(0));
  cmd->add_option("--seed", o.seed, "Random seed for sampling")->default_val(42);
}

CLI::Option* ModelArgs::add_to(CLI::App* cmd, bool tokenizer_too, bool model_required) {
  auto* opt =
      cmd->add_option("-m,--model", model,
                      "Base model: llama2.c .bin, GGUF, a Hugging Face directory (config.json + safetensors) or a Meta "
                      "directory (params.json + consolidated.*.pth)");
  if (model_required) opt->required();
  if (tokenizer_too)
    cmd->add_option("-t,--tokenizer", tokenizer,
                    "Tokenizer: SentencePiece .model or llama2.c tokenizer.bin (default: the one beside the model)");
  add_threads_flag(cmd);
  return opt;
}

BpeVocab gguf_vocabulary(const Tokenizer& tok, const std::string& source) {
  if (const auto* bpe = dynamic_cast<const BpeTokenizer*>(&tok)) return bpe->vocab();
  if (const auto* sp = dynamic_cast<const SpTokenizer*>(&tok)) return sp->to_vocab();
  fail("{}: this tokenizer cannot be embedded in GGUF", source);
}

LoadedModel load_model_and_tokenizer(const ModelArgs& a, bool need_tokenizer) {
  LoadedModel lm;
  lm.weights = load_model(a.model);
  if (!need_tokenizer) return lm;
  std::string tok = a.tokenizer;
  if (tok.empty() && lm.weights->format == "gguf") tok = a.model;  // the embedded vocabulary
  if (tok.empty()) {
    tok = find_tokenizer_for_model(a.model, static_cast<int>(lm.weights->config.vocab_size));
    if (tok.empty())
      fail("{}: no tokenizer found beside the model (tokenizer.model or tokenizer.bin); pass --tokenizer", a.model);
  }
  lm.tokenizer = load_tokenizer(tok);
  if (lm.tokenizer->vocab_size() != lm.weights->config.vocab_size)
    fail("{}: tokenizer has {} tokens but the model {} has a vocabulary of {}", tok, lm.tokenizer->vocab_size(),
         a.model, lm.weights->config.vocab_size);
  return lm;
}

LoadedModel load_model_for_inference(const ModelArgs& a) {
  LoadedModel lm = load_model_and_tokenizer(a);
  lm.weights->pack_interleaved();
  return lm;
}

void prepack_for_bf16_compute(ModelWeights& w) {
  const size_t need = w.bf16_panel_bytes(), avail = available_memory_bytes();
  if (need == 0) return;
  if (avail != 0 && need > avail / 2) {
    std::fprintf(stderr, "note: --bf16-compute: not pre-packing the bf16 matrices (%zu MiB; %zu MiB available)\n",
                 need >> 20, avail >> 20);
    return;
  }
  w.pack_bf16_panels();
}

std::vector<std::pair<std::string, std::string>> input_files(const ModelArgs& m,
                                                             std::vector<std::pair<std::string, std::string>> more) {
  std::vector<std::pair<std::string, std::string>> in{{"--model", m.model}, {"--tokenizer", m.tokenizer}};
  if (is_directory(m.model)) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(m.model, ec))
      if (e.is_regular_file(ec)) in.push_back({"--model", e.path().string()});
  }
  for (auto& p : more) in.push_back(std::move(p));
  return in;
}

bool stderr_is_tty() {
  return isatty(STDERR_FILENO) != 0;
}

}  // namespace la::cli
