// Sub-commands of the llama-adapter binary. Each registers its flags on the app and runs when
// chosen; errors propagate as la::Error and main() prints them as one line.
#pragma once
#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "la/model/weights.h"
#include "la/tokenizer/tokenizer.h"

namespace la::cli {

void register_info(CLI::App& app);
void register_generate(CLI::App& app);
void register_finetune(CLI::App& app);
void register_eval(CLI::App& app);
void register_bench(CLI::App& app);
void register_demo(CLI::App& app);
void register_convert(CLI::App& app);

// --model / --tokenizer / --threads, shared by every command that runs a model.
struct ModelArgs {
  std::string model;
  std::string tokenizer;
  int threads = 0;
  CLI::Option* add_to(CLI::App* cmd, bool tokenizer_too = true, bool model_required = true);
};

struct LoadedModel {
  std::unique_ptr<ModelWeights> weights;
  std::unique_ptr<Tokenizer> tokenizer;
};

// Loads the model and its tokenizer (--tokenizer, or the one found beside the model), checks that
// they agree on the vocabulary size, applies --threads.
LoadedModel load_model_and_tokenizer(const ModelArgs& a, bool need_tokenizer = true);

// --bf16-compute: packs the model's BF16 matrices once for the bf16 GEMM (ModelWeights::
// pack_bf16_panels) when that fits in half of the memory still available; otherwise says so on
// stderr and every product packs its block as it goes.
void prepack_for_bf16_compute(ModelWeights& w);

// True when stderr is a terminal (progress bars), false for pipes and files.
bool stderr_is_tty();

}  // namespace la::cli
