// `demo`: the embedded default, end to end with nothing downloaded. Writes synthetic instruction
// data, a BPE tokenizer learned from it and a small random LLaMA into a folder, then evaluates,
// samples, fine-tunes a LLaMA-Adapter, evaluates and samples again.
#include <sys/stat.h>

#include <cstdio>

#include "commands.h"
#include "la/core/error.h"
#include "la/data/alpaca.h"
#include "la/data/synthetic.h"
#include "la/io/loader.h"
#include "la/io/shapes.h"
#include "la/sample/generate.h"
#include "la/tokenizer/bpe_trainer.h"
#include "la/train/trainer.h"
#include "progress.h"

namespace la::cli {

namespace {

struct DemoArgs {
  std::string dir = "runs/demo";
  int64_t steps = 300;
  uint64_t seed = 1;
};

void make_dirs(const std::string& dir) {
  std::string cur;
  for (size_t i = 0; i <= dir.size(); ++i) {
    if (i == dir.size() || dir[i] == '/') {
      if (!cur.empty() && !is_directory(cur) && ::mkdir(cur.c_str(), 0755) != 0 && !is_directory(cur))
        fail("{}: cannot create directory", cur);
    }
    if (i < dir.size()) cur += dir[i];
  }
}

void samples(const ModelWeights& w, const Tokenizer& tok, const Adapter& adapter,
             const std::vector<AlpacaRecord>& recs) {
  InferenceModel m(w, w.config.max_seq_len);
  m.set_adapter(&adapter);
  for (const auto& r : recs) {
    // Sampled (temperature 0.7), not greedy: a random base model that has only learnt, through
    // its adapter, which tokens answers are made of would answer every prompt greedily with the
    // single most frequent target (EOS).
    Sampler sampler(SamplerOptions{0.7f, 0.95f, 0, 7});
    const std::string out =
        generate(m, tok, tok.encode(alpaca_prompt(r.instruction, r.input), true, false), sampler, 24, nullptr);
    std::printf("  %s%s%s\n    -> %s\n    (expected: %s)\n", r.instruction.c_str(), r.input.empty() ? "" : " | ",
                r.input.c_str(), out.c_str(), r.output.c_str());
  }
}

void run_demo(const DemoArgs& a) {
  make_dirs(a.dir);
  const std::string data = a.dir + "/train.json", val = a.dir + "/val.json", tokp = a.dir + "/tokenizer.bin",
                    modelp = a.dir + "/model.bin", out = a.dir + "/adapter.safetensors";
  // 1. Data and tokenizer.
  std::vector<AlpacaRecord> all = synthetic_instructions(1100, a.seed);
  std::vector<AlpacaRecord> train(all.begin(), all.begin() + 1000), held(all.begin() + 1000, all.end());
  write_alpaca_json(train, data);
  write_alpaca_json(held, val);
  std::vector<std::string> texts;
  for (const auto& r : train) {
    texts.push_back(alpaca_prompt(r.instruction, r.input));
    texts.push_back(r.output);
  }
  BpeVocab vocab = train_bpe_vocab(texts, 512);
  const std::string tok_bytes = serialize_llama2c_vocab(vocab);
  write_file_atomic(tokp, tok_bytes.data(), tok_bytes.size());
  // 2. A small random base model, written as a llama2.c checkpoint and loaded back (mmap).
  ModelConfig c;
  c.dim = 128;
  c.hidden_dim = 344;
  c.n_layers = 4;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = static_cast<int64_t>(vocab.pieces.size());
  c.max_seq_len = 256;
  c.tied_classifier = true;
  save_llama2c(*random_model(c, a.seed), modelp);
  auto w = load_model(modelp);
  auto tok = load_tokenizer(tokp);
  std::printf("llama-adapter demo in %s\n", a.dir.c_str());
  std::printf("  data:      %s (%zu records), %s (%zu held out) - synthetic instructions\n", data.c_str(), train.size(),
              val.c_str(), held.size());
  std::printf("  tokenizer: %s (%d pieces, BPE learned from the data)\n", tokp.c_str(), tok->vocab_size());
  std::printf("  model:     %s (random LLaMA: %s, %lld parameters)\n", modelp.c_str(), c.shape_string().c_str(),
              static_cast<long long>(c.parameter_count()));
  TokenizedDataset tr = tokenize_alpaca(train, *tok, c.max_seq_len), va = tokenize_alpaca(held, *tok, c.max_seq_len);

  FinetuneOptions o;
  o.out = out;
  o.metrics = a.dir + "/metrics.jsonl";
  o.adapter_len = 10;
  o.adapter_layers = c.n_layers;
  o.batch_size = 16;
  o.micro_batch_size = 8;
  o.epochs = 5;
  o.steps = a.steps;
  o.lr = 2e-2f;
  o.schedule = Schedule::Constant;
  o.warmup_steps = 10;
  o.seed = a.seed;
  o.eval_every = 100;
  Adapter init = Adapter::create(c, o.adapter_len, o.adapter_layers, GateMode::Tanh, a.seed);
  const EvalResult before = evaluate_dataset(*w, va, &init, 8);
  std::printf("\nbefore fine-tuning (gates are 0: exactly the base model), held-out loss %.4f\n", before.loss);
  samples(*w, *tok, init, {held.begin(), held.begin() + 3});
  std::printf("\nfine-tuning a LLaMA-Adapter (K=%lld, L=%lld) for %lld steps...\n",
              static_cast<long long>(o.adapter_len), static_cast<long long>(o.adapter_layers),
              static_cast<long long>(o.steps));
  std::fflush(stdout);
  FinetuneResult r = finetune(*w, tr, &va, o, progress_callbacks({false, 25, "  "}));
  const EvalResult after = evaluate_dataset(*w, va, &r.adapter, 8);
  std::printf("\nafter fine-tuning, held-out loss %.4f (was %.4f), training loss %.4f -> %.4f\n", after.loss,
              before.loss, r.first_loss, r.last_loss);
  samples(*w, *tok, r.adapter, {held.begin(), held.begin() + 3});
  std::printf("\nadapter saved to %s (%lld parameters); metrics in %s\n", out.c_str(),
              static_cast<long long>(r.adapter.parameter_count()), o.metrics.c_str());
  std::printf(
      "try: build/bin/llama-adapter generate --model %s --adapter %s --instruction \"Add the two numbers.\" "
      "--input \"12 and 30\" --temperature 0\n",
      modelp.c_str(), out.c_str());
}

}  // namespace

void register_demo(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "demo",
      "Run the whole pipeline on an embedded default: synthetic data, a learned tokenizer, a small random model");
  auto a = std::make_shared<DemoArgs>();
  cmd->add_option("--dir", a->dir, "Where to write the data, model, tokenizer and adapter")->default_val("runs/demo");
  cmd->add_option("--steps", a->steps, "Fine-tuning steps")->default_val(300)->check(CLI::PositiveNumber);
  cmd->add_option("--seed", a->seed, "Seed for data, model and adapter")->default_val(1);
  add_threads_flag(cmd);
  cmd->callback([a] { run_demo(*a); });
}

}  // namespace la::cli
