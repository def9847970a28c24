// `pretrain` (SPEC §12): a LLaMA from scratch on a text corpus, every parameter trained with the
// fine-tuning loop (AdamW, warm-up + cosine, metrics, checkpoints, resume), written as a whole
// model (.gguf with its tokenizer embedded, or llama2.c .bin).
#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "la/core/error.h"
#include "la/core/mapped_file.h"
#include "la/core/paths.h"
#include "la/io/shapes.h"
#include "la/tokenizer/bpe_trainer.h"
#include "validators.h"

namespace la::cli {

namespace {

struct PretrainArgs {
  std::string data, val_data, tokenizer;
  int64_t vocab_size = 0, dim = 0, layers = 0, heads = 0, kv_heads = 0, hidden = 0, seq_len = 0;
  bool tied = false, no_progress = false;
  int64_t log_every = 10;
  float rope_theta = 10000.0f;
  FinetuneOptions o;
};

// LLaMA's FFN width: two thirds of 4·dim, rounded up to a multiple of 32.
int64_t default_hidden(int64_t dim) {
  const int64_t h = 2 * (4 * dim) / 3;
  return (h + 31) / 32 * 32;
}

TokenizedDataset corpus_data(const std::vector<std::string>& docs, const std::string& path, const Tokenizer& tok,
                             int64_t seq_len, const char* what) {
  TokenizedDataset d = tokenize_corpus(docs, tok, seq_len);
  if (d.examples.empty()) fail("{}: the corpus gives no window of 2 tokens or more", path);
  std::fprintf(stderr, "%s: %s: %zu windows of up to %lld tokens, %lld tokens\n", what, path.c_str(), d.examples.size(),
               static_cast<long long>(seq_len + 1), static_cast<long long>(d.total_tokens));
  return d;
}

}  // namespace

void register_pretrain(CLI::App& app) {
  auto* cmd = app.add_subcommand("pretrain", "Train a LLaMA from scratch on a text corpus (every parameter)");
  auto a = std::make_shared<PretrainArgs>();
  FinetuneOptions& o = a->o;
  cmd->add_option("-d,--data", a->data, "Corpus: text (documents separated by blank lines) or .jsonl with \"text\"")
      ->required();
  cmd->add_option("-o,--out", o.out, "Output model: .gguf (tokenizer embedded) or .bin (llama2.c)")->required();
  auto* tok = cmd->add_option("-t,--tokenizer", a->tokenizer, "Tokenizer to use (SentencePiece .model, llama2.c .bin)");
  auto* vocab = cmd->add_option("--vocab-size", a->vocab_size, "Learn a BPE tokenizer of this size from the corpus")
                    ->check(integer_in(260, 1 << 20));
  tok->excludes(vocab);
  cmd->add_option("--dim", a->dim, "Model width")->required()->check(integer_in(8, 1 << 16));
  cmd->add_option("--layers", a->layers, "Layers")->required()->check(integer_in(1, 1024));
  cmd->add_option("--heads", a->heads, "Query heads")->required()->check(integer_in(1, 1024));
  cmd->add_option("--kv-heads", a->kv_heads, "Key/value heads (default: --heads)")->check(integer_in(1, 1024));
  cmd->add_option("--hidden", a->hidden, "FFN width (default: 2/3 of 4·dim, rounded up to 32)")
      ->check(integer_in(1, 1 << 20));
  cmd->add_option("--seq-len", a->seq_len, "Context length trained (and the model's)")
      ->required()
      ->check(integer_in(2, 1 << 20));
  cmd->add_option("--rope-theta", a->rope_theta, "RoPE base")->default_val(10000.0f)->check(finite_in(1));
  cmd->add_flag("--tied", a->tied, "Share the embedding and the classifier");
  auto* epochs =
      cmd->add_option("--epochs", o.epochs, "Epochs over the corpus (default: 1, or as many as --steps needs)")
          ->check(integer_in(1, 1000000));
  auto* steps = cmd->add_option("--steps", o.steps, "Optimizer steps (the cosine ends there)")->check(integer_in(1));
  cmd->add_option("--batch-size", o.batch_size, "Windows per optimizer step")
      ->default_val(32)
      ->check(integer_in(1, 1 << 24));
  cmd->add_option("--micro-batch-size", o.micro_batch_size, "Windows per forward/backward")
      ->default_val(8)
      ->check(integer_in(1, 1 << 24));
  cmd->add_option("--lr", o.lr, "Peak learning rate")->default_val(1e-3f)->check(finite_in(0));
  cmd->add_option("--min-lr", o.min_lr, "Learning rate at the end of the cosine")
      ->default_val(1e-4f)
      ->check(finite_in(0));
  cmd->add_option("--warmup-steps", o.warmup_steps, "Linear warm-up in optimizer steps")
      ->default_val(20)
      ->check(integer_in(0));
  cmd->add_option("--weight-decay", o.weight_decay, "AdamW weight decay")->default_val(0.1f)->check(finite_in(0));
  cmd->add_option("--grad-clip", o.grad_clip, "Clip the global gradient norm to this (0 = off)")
      ->default_val(1.0f)
      ->check(finite_in(0));
  cmd->add_option("--seed", o.seed, "Seed for the initialisation and the data order")->default_val(0);
  add_run_flags(cmd, o, a->val_data, a->log_every, a->no_progress,
                "Held-out corpus evaluated every --eval-every steps");
  add_threads_flag(cmd);
  cmd->callback([a, tok, vocab, epochs, steps] {
    FinetuneOptions o = a->o;
    o.full = true;
    o.schedule = Schedule::Cosine;
    if (tok->count() == 0 && vocab->count() == 0) fail("give --tokenizer or --vocab-size");
    if (!o.out.ends_with(".gguf") && !o.out.ends_with(".bin"))
      fail("--out {}: a model is written as .gguf or .bin (llama2.c)", o.out);
    // A learned tokenizer of a .bin model goes beside it (GGUF embeds it).
    const std::string tok_out =
        a->vocab_size > 0 && o.out.ends_with(".bin") ? o.out.substr(0, o.out.size() - 4) + ".tokenizer.bin" : "";
    const std::string ckpt = o.checkpoint.empty() ? o.out + ".ckpt" : o.checkpoint;
    const std::vector<std::pair<std::string, std::string>> outputs{
        {"--out", o.out}, {"--checkpoint", ckpt}, {"--metrics", o.metrics}, {"tokenizer", tok_out}};
    for (const auto& [flag, path] : outputs)
      if (!path.empty()) check_output_path(flag, path);
    const bool resume_in_place = !o.resume.empty() && (same_file(o.resume, ckpt) || o.resume == ckpt);
    check_outputs_distinct(outputs, {{"--data", a->data},
                                     {"--val-data", a->val_data},
                                     {"--tokenizer", a->tokenizer},
                                     {"--resume", resume_in_place ? "" : o.resume}});

    const std::vector<std::string> docs = load_corpus(a->data);
    std::unique_ptr<Tokenizer> tokenizer;
    BpeVocab learned;
    if (a->vocab_size > 0) {
      learned = train_bpe_vocab(docs, a->vocab_size);
      tokenizer = std::make_unique<BpeTokenizer>(learned, "the learned tokenizer");
      std::fprintf(stderr, "tokenizer: learned %zu pieces from %zu documents\n", learned.pieces.size(), docs.size());
    } else {
      tokenizer = load_tokenizer(a->tokenizer);
    }
    ModelConfig c;
    c.dim = a->dim;
    c.n_layers = a->layers;
    c.n_heads = a->heads;
    c.n_kv_heads = a->kv_heads > 0 ? a->kv_heads : a->heads;
    c.hidden_dim = a->hidden > 0 ? a->hidden : default_hidden(a->dim);
    c.vocab_size = tokenizer->vocab_size();
    c.max_seq_len = a->seq_len;
    c.tied_classifier = a->tied;
    c.rope_theta = a->rope_theta;
    c.validate("pretrain");

    const TokenizedDataset train = corpus_data(docs, a->data, *tokenizer, a->seq_len, "train");
    TokenizedDataset val;
    if (!a->val_data.empty()) val = corpus_data(load_corpus(a->val_data), a->val_data, *tokenizer, a->seq_len, "val");
    if (!a->val_data.empty() && o.eval_every == 0) o.eval_every = 50;
    if (o.batch_size > static_cast<int64_t>(train.examples.size()))
      fail("--batch-size {}: the corpus gives only {} windows of {} tokens", o.batch_size, train.examples.size(),
           a->seq_len + 1);
    // --steps alone: as many epochs as those steps need, so that the cosine spans them.
    const int64_t per_epoch = static_cast<int64_t>(train.examples.size()) / o.batch_size;
    if (epochs->count() == 0) o.epochs = steps->count() ? (o.steps + per_epoch - 1) / per_epoch : 1;

    BpeVocab gguf_vocab;
    if (o.out.ends_with(".gguf")) {
      gguf_vocab = a->vocab_size > 0 ? learned : gguf_vocabulary(*tokenizer, a->tokenizer);
      o.vocab = &gguf_vocab;
    }
    if (!tok_out.empty()) {
      const std::string bytes = serialize_llama2c_vocab(learned);
      write_file_atomic(tok_out, bytes.data(), bytes.size());
      std::fprintf(stderr, "wrote the tokenizer to %s\n", tok_out.c_str());
    }
    auto init = random_model(c, o.seed);
    run_training(*init, train, a->val_data.empty() ? nullptr : &val, o, !a->no_progress, a->log_every);
  });
}

}  // namespace la::cli
