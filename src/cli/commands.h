// Sub-commands of the llama-adapter binary. Each registers its flags on the app and runs when
// chosen; errors propagate as la::Error and main() prints them as one line.
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "la/data/dataset.h"
#include "la/model/weights.h"
#include "la/sample/sampler.h"
#include "la/tokenizer/bpe_tokenizer.h"
#include "la/tokenizer/tokenizer.h"
#include "la/train/trainer.h"
#include "la/vision/clip.h"
#include "la/vision/feature_store.h"

namespace la::cli {

void register_info(CLI::App& app);
void register_generate(CLI::App& app);
void register_finetune(CLI::App& app);
void register_eval(CLI::App& app);
void register_bench(CLI::App& app);
void register_demo(CLI::App& app);
void register_convert(CLI::App& app);
void register_pretrain(CLI::App& app);
void register_scienceqa(CLI::App& app);
void register_encode_image(CLI::App& app);
void register_serve(CLI::App& app);
void register_chat(CLI::App& app);
void register_tokenize(CLI::App& app);

// The flags finetune and pretrain share: --resume, --save-every, --checkpoint, --val-data
// (`val_help` says what it holds), --eval-every, --metrics, --recompute, --log-every, --no-progress.
void add_run_flags(CLI::App* cmd, FinetuneOptions& o, std::string& val_data, int64_t& log_every, bool& no_progress,
                   const std::string& val_help);

// Runs a training (finetune or pretrain) with progress on stderr and the stop signals handled:
// an interrupted run exits 128 + the signal after its checkpoint; a finished one says what it saved.
void run_training(const ModelWeights& w, const TokenizedDataset& train, const TokenizedDataset* val,
                  const FinetuneOptions& o, bool progress, int64_t log_every);

// The flags that make up the runtime (core/runtime.h): --threads on every command that computes,
// --bf16-compute where offered. Whichever sub-command runs fills this one object; main() puts
// it in force (apply_runtime_flags) after parsing and before the command runs.
struct RuntimeFlags {
  int threads = 0;  // 0: $OMP_NUM_THREADS, else every core this process may use
  bool bf16_compute = false;
};
RuntimeFlags& runtime_flags();
CLI::Option* add_threads_flag(CLI::App* cmd);
CLI::Option* add_bf16_compute_flag(CLI::App* cmd, const std::string& help);
// The one place the CLI sets the runtime: runtime_from_env() (LA_ISA, OMP_NUM_THREADS) under the
// flags above, through set_runtime (la::Error for an LA_ISA this CPU cannot run, --bf16-compute
// without AVX512-BF16). Says on stderr when --threads was more than the process may use.
void apply_runtime_flags();

// --temperature, --top-p, --top-k, --seed (SPEC §4's defaults) on generate and chat.
void add_sampling_flags(CLI::App* cmd, SamplerOptions& o);

// --model / --tokenizer / --threads, shared by every command that runs a model.
struct ModelArgs {
  std::string model;
  std::string tokenizer;
  CLI::Option* add_to(CLI::App* cmd, bool tokenizer_too = true, bool model_required = true);
};

struct LoadedModel {
  std::unique_ptr<ModelWeights> weights;
  std::unique_ptr<Tokenizer> tokenizer;
};

// Loads the model and its tokenizer (--tokenizer, or the one found beside the model), checks that
// they agree on the vocabulary size.
LoadedModel load_model_and_tokenizer(const ModelArgs& a, bool need_tokenizer = true);
// The same, with the weights laid out for the inference kernels too (ModelWeights::pack_interleaved):
// for the commands that generate (generate, chat, serve, scienceqa eval).
LoadedModel load_model_for_inference(const ModelArgs& a);

// The tokenizer's vocabulary as a GGUF file embeds it (la::Error naming `source` for one that
// cannot be).
BpeVocab gguf_vocabulary(const Tokenizer& tok, const std::string& source);

// --bf16-compute: packs the model's BF16 matrices once for the bf16 GEMM (ModelWeights::
// pack_bf16_panels) when that fits in half of the memory still available; otherwise says so on
// stderr and every product packs its block as it goes.
void prepack_for_bf16_compute(ModelWeights& w);

// The files a command reads, as {flag, path}: --model (each file of a Hugging Face folder),
// --tokenizer, and `more`; for the output checks of core/paths.h.
std::vector<std::pair<std::string, std::string>> input_files(const ModelArgs& m,
                                                             std::vector<std::pair<std::string, std::string>> more);

// --clip (+ --feature-cache / --no-feature-cache) on the commands that take images (SPEC §8).
struct ClipArgs {
  std::string clip, feature_cache;
  bool no_feature_cache = false;
  void add_to(CLI::App* cmd);
  bool given() const { return !clip.empty(); }
};
struct LoadedClip {
  std::unique_ptr<ClipWeights> weights;
  std::unique_ptr<ImageFeatureStore> store;
};
// Loads the CLIP and its feature store (the on-disk cache unless --no-feature-cache); empty when
// --clip was not given.
LoadedClip load_clip_args(const ClipArgs& a);
// The features of each record's image on its example (examples[i] is records[i]'s): records with
// images need --clip (a one-line error naming the data file otherwise). Returns the number of
// examples with an image.
int64_t attach_images(TokenizedDataset& d, const std::vector<AlpacaRecord>& records, LoadedClip& clip,
                      const std::string& data_path);
// A multi-modal adapter with the CLIP it is used with: the feature length, blocks, embedding
// width and image size must agree (an error naming both).
void check_adapter_clip(const Adapter& a, const std::string& adapter_path, const LoadedClip& clip);
// True when stderr is a terminal (progress bars), false for pipes and files.
bool stderr_is_tty();

}  // namespace la::cli
