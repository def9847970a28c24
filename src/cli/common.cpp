#include <unistd.h>

#include <cstdio>

#include "commands.h"
#include "la/core/cpu.h"
#include "la/core/error.h"
#include "la/core/memory.h"
#include "la/model/loader.h"

namespace la::cli {

CLI::Option* ModelArgs::add_to(CLI::App* cmd, bool tokenizer_too, bool model_required) {
  auto* opt = cmd->add_option("-m,--model", model,
                              "Base model: llama2.c .bin, or a Hugging Face directory (config.json + safetensors)");
  if (model_required) opt->required();
  if (tokenizer_too)
    cmd->add_option("-t,--tokenizer", tokenizer,
                    "Tokenizer: SentencePiece .model or llama2.c tokenizer.bin (default: the one beside the model)");
  cmd->add_option("--threads", threads, "Threads for compute (default: all cores)");
  return opt;
}

LoadedModel load_model_and_tokenizer(const ModelArgs& a, bool need_tokenizer) {
  set_num_threads(a.threads);
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

bool stderr_is_tty() { return isatty(STDERR_FILENO) != 0; }

}  // namespace la::cli
