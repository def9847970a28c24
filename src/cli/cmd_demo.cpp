// `demo` (SPEC §13): the embedded default, the paper's story with nothing downloaded.
//  1. A made-up world (data/knowledge.h): countries and their capitals, a corpus that states
//     them, and Alpaca-format questions about them, split into training and held-out questions;
//     a BPE tokenizer learned from both.
//  2. `pretrain`: a small LLaMA learns the corpus, so it knows the capitals but has never seen
//     the instruction template.
//  3. The base alone answers the held-out questions (greedy, exact match): it does not follow
//     the template. Asked as the corpus asks, it shows what it knows.
//  4. `finetune`: a LLaMA-Adapter on the training questions; the held-out ones again.
//  5. `finetune --full`: every weight on the same data; the held-out ones again.
//  6. The comparison in the paper's style, and summary.json.
// Each training step runs as the CLI command a user would type (printed), as a child process,
// so its time and peak memory are its own.
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "commands.h"
#include "la/core/error.h"
#include "la/core/mapped_file.h"
#include "la/core/runtime.h"
#include "la/data/alpaca.h"
#include "la/data/knowledge.h"
#include "la/data/synthetic.h"
#include "la/io/adapter_file.h"
#include "la/io/loader.h"
#include "la/io/shapes.h"
#include "la/sample/generate.h"
#include "la/tokenizer/bpe_trainer.h"
#include "la/train/trainer.h"

extern char** environ;

namespace la::cli {

namespace {

struct DemoArgs {
  std::string dir = "runs/demo";
  int64_t countries = 200, heldout = 100, passes = 150, pretrain_steps = 300, finetune_epochs = 15, dim = 128,
          layers = 4;
  float adapter_lr = 5e-2f, full_lr = 1e-4f, pretrain_lr = 3e-3f;
  uint64_t seed = 1;
};

struct Run {
  double seconds = 0;
  size_t peak_bytes = 0;
  int64_t steps = 0;
  double last_val_loss = -1;
};

// Runs this binary with `args`, its output going to `log`; its wall time and peak resident memory.
Run run_self(const std::vector<std::string>& args, const std::string& log) {
  std::string shown = "llama-adapter";
  for (const auto& a : args) shown += " " + a;
  std::printf("  $ %s\n", shown.c_str());
  std::fflush(stdout);
  std::vector<std::string> argv_s{"/proc/self/exe"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  const auto t0 = std::chrono::steady_clock::now();
  pid_t pid = 0;
  const std::string exe = std::filesystem::read_symlink("/proc/self/exe").string();
  const int rc = posix_spawn(&pid, exe.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) fail("demo: cannot start {}: {}", exe, std::strerror(rc));
  int status = 0;
  struct rusage ru {};
  if (wait4(pid, &status, 0, &ru) < 0) fail("demo: waiting for the child failed");
  Run r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.peak_bytes = static_cast<size_t>(ru.ru_maxrss) * 1024;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string tail = read_file(log);
    if (tail.size() > 2000) tail = tail.substr(tail.size() - 2000);
    fail("demo: `{}` failed (see {}): {}", shown, log, tail);
  }
  return r;
}

// Steps and the last held-out loss from a metrics file.
void read_metrics(const std::string& path, Run& r) {
  std::istringstream in(read_file(path));
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    r.steps = j["step"].get<int64_t>();
    if (j.contains("val_loss")) r.last_val_loss = j["val_loss"].get<double>();
  }
}

struct Answers {
  int64_t exact = 0;
  std::vector<std::string> outputs;
};

// Greedy answers to every question, compared exactly (trimmed) with what is expected: asked in
// the Alpaca template, the whole sentence; or (corpus_form) as the corpus asks,
// "Q: <question> A:", the capital alone, read up to its full stop.
Answers answer(const ModelWeights& w, const Tokenizer& tok, const Adapter* adapter, const std::vector<Country>& qs,
               bool corpus_form = false) {
  InferenceModel m(w, w.config.max_seq_len);
  m.set_adapter(adapter);
  Answers a;
  for (const Country& c : qs) {
    const AlpacaRecord q = capital_record(c);
    Sampler greedy(SamplerOptions{0.0f, 1.0f, 0, 1});
    const std::string prompt = corpus_form ? "Q: " + q.instruction + " A:" : alpaca_prompt(q.instruction, q.input);
    std::string out = generate(m, tok, tok.encode(prompt, true, false), greedy, corpus_form ? 6 : 16, nullptr);
    if (corpus_form) out = out.substr(0, out.find_first_of(".\n"));
    while (!out.empty() && std::isspace(static_cast<unsigned char>(out.back()))) out.pop_back();
    while (!out.empty() && std::isspace(static_cast<unsigned char>(out.front()))) out.erase(out.begin());
    a.exact += out == (corpus_form ? c.capital : q.output);
    a.outputs.push_back(out);
  }
  return a;
}

// An answer on one line: line breaks shown as "\n".
std::string one_line(const std::string& s) {
  std::string o;
  for (char c : s) o += c == '\n' ? std::string("\\n") : std::string(1, c);
  return o;
}

// Two of the held-out questions with the answers given and expected.
void show_answers(const std::vector<Country>& held, const Answers& got) {
  for (size_t i = 0; i < std::min<size_t>(2, held.size()); ++i) {
    const AlpacaRecord r = capital_record(held[i]);
    std::printf("   %s -> \"%s\" (expected \"%s\")\n", r.instruction.c_str(), one_line(got.outputs[i]).c_str(),
                r.output.c_str());
  }
}

std::string mib(size_t b) {  // MiB, or KiB below one
  const auto x = static_cast<double>(b);
  return x < (1 << 20) ? fmt::format("{:.1f} KiB", x / 1024) : fmt::format("{:.1f} MiB", x / (1 << 20));
}

void run_demo(const DemoArgs& a) {
  std::filesystem::create_directories(a.dir);
  auto path = [&](const char* name) { return a.dir + "/" + name; };
  const std::string threads = std::to_string(runtime().threads);

  // 1. The world, its corpus and its questions; a tokenizer learned from both.
  const KnowledgeWorld world = make_world(a.countries, a.seed);
  const std::vector<std::string> corpus = world_corpus(world, a.passes, a.seed);
  {
    std::string text;
    for (const auto& d : corpus) text += d + "\n\n";
    write_file_atomic(path("corpus.txt"), text.data(), text.size());
  }
  const std::vector<Country> qs = shuffled_countries(world, a.seed);
  if (a.heldout >= a.countries)
    fail("demo: --heldout {} leaves no country to train on (--countries {})", a.heldout, a.countries);
  const auto n_held = static_cast<size_t>(a.heldout);
  const std::vector<Country> held(qs.begin(), qs.begin() + static_cast<int64_t>(n_held)),
      train(qs.begin() + static_cast<int64_t>(n_held), qs.end());
  auto records = [](const std::vector<Country>& cs) {
    std::vector<AlpacaRecord> v;
    for (const Country& c : cs) v.push_back(capital_record(c));
    return v;
  };
  write_alpaca_json(records(train), path("train.json"));
  write_alpaca_json(records(held), path("heldout.json"));
  std::vector<std::string> texts(corpus.begin(), corpus.end());
  // The prompts and the answers as separate texts: a merge across their boundary (":The") would
  // make the tokens of prompt + answer differ from those of the prompt followed by the answer's.
  for (const AlpacaRecord& r : records(qs)) {
    texts.push_back(alpaca_prompt(r.instruction, r.input));
    texts.push_back(r.output);
  }
  const BpeVocab vocab = train_bpe_vocab(texts, 1024);
  const std::string tb = serialize_llama2c_vocab(vocab);
  write_file_atomic(path("tokenizer.bin"), tb.data(), tb.size());
  std::printf("llama-adapter demo in %s\n\n", a.dir.c_str());
  std::printf(
      "1. A made-up world: %lld countries, each with a capital.\n"
      "   corpus.txt states every capital many times, many ways (%zu documents); %zu questions about them\n"
      "   in the Alpaca template: %zu to train on (train.json), %zu held out (heldout.json).\n\n",
      static_cast<long long>(a.countries), corpus.size(), qs.size(), train.size(), held.size());

  // 2. Pre-training: the base learns the facts.
  std::printf("2. Pre-train a small LLaMA on the corpus (every parameter):\n");
  const std::vector<std::string> pretrain_args = {"pretrain",
                                                  "--data",
                                                  path("corpus.txt"),
                                                  "--tokenizer",
                                                  path("tokenizer.bin"),  //
                                                  "--dim",
                                                  std::to_string(a.dim),
                                                  "--layers",
                                                  std::to_string(a.layers),
                                                  "--heads",
                                                  "4",
                                                  "--kv-heads",
                                                  "2",
                                                  "--seq-len",
                                                  "96",
                                                  "--tied",
                                                  "--batch-size",
                                                  "16",
                                                  "--micro-batch-size",
                                                  "16",  //
                                                  "--steps",
                                                  std::to_string(a.pretrain_steps),
                                                  "--lr",
                                                  fmt::format("{}", a.pretrain_lr),
                                                  "--min-lr",
                                                  fmt::format("{}", a.pretrain_lr / 10),
                                                  "--warmup-steps",
                                                  "30",
                                                  "--weight-decay",
                                                  "0",
                                                  "--seed",
                                                  std::to_string(a.seed),
                                                  "--threads",
                                                  threads,
                                                  "--no-progress",  //
                                                  "--metrics",
                                                  path("pretrain.jsonl"),
                                                  "--out",
                                                  path("base.gguf")};
  Run pre = run_self(pretrain_args, path("pretrain.log"));
  read_metrics(path("pretrain.jsonl"), pre);
  std::printf("   %lld steps in %.0f s\n\n", static_cast<long long>(pre.steps), pre.seconds);

  auto base = load_model(path("base.gguf"));
  auto tok = load_tokenizer(path("tokenizer.bin"));
  const Answers base_answers = answer(*base, *tok, nullptr, held);
  std::printf("3. The base model alone on the %zu held-out questions: %lld exact (%.0f%%)\n", held.size(),
              static_cast<long long>(base_answers.exact),
              100.0 * static_cast<double>(base_answers.exact) / static_cast<double>(held.size()));
  show_answers(held, base_answers);
  const Answers knows = answer(*base, *tok, nullptr, held, true);
  std::printf(
      "   yet asked as the corpus asks (\"Q: ... A:\") it knows %lld of them: the knowledge is there,\n"
      "   following the instruction template is not\n",
      static_cast<long long>(knows.exact));

  // 4. LLaMA-Adapter; 5. full fine-tuning on the same data.
  const std::string batch = std::to_string(std::min<size_t>(16, train.size()));
  const std::vector<std::string> common{"--model",
                                        path("base.gguf"),
                                        "--data",
                                        path("train.json"),
                                        "--val-data",
                                        path("heldout.json"),
                                        "--epochs",
                                        std::to_string(a.finetune_epochs),
                                        "--batch-size",
                                        batch,
                                        "--micro-batch-size",
                                        batch,
                                        "--warmup-epochs",
                                        "1",
                                        "--seed",
                                        std::to_string(a.seed),
                                        "--threads",
                                        threads,
                                        "--no-progress",
                                        "--eval-every",
                                        "1000000"};
  auto with = [&](std::vector<std::string> v) {  // the sub-command, the common flags, its own
    v.insert(v.begin() + 1, common.begin(), common.end());
    return v;
  };
  std::printf("\n4. Fine-tune a LLaMA-Adapter (the base frozen):\n");
  Run ad = run_self(
      with({"finetune", "--adapter-len", "10", "--adapter-layers", std::to_string(a.layers), "--lr",
            fmt::format("{}", a.adapter_lr), "--metrics", path("adapter.jsonl"), "--out", path("adapter.safetensors")}),
      path("adapter.log"));
  read_metrics(path("adapter.jsonl"), ad);
  const Adapter adapter = load_adapter(path("adapter.safetensors"), &base->config);
  const Answers ad_answers = answer(*base, *tok, &adapter, held);
  std::printf("   held-out: %lld exact (%.0f%%)\n", static_cast<long long>(ad_answers.exact),
              100.0 * static_cast<double>(ad_answers.exact) / static_cast<double>(held.size()));
  show_answers(held, ad_answers);

  std::printf("\n5. Fine-tune the whole model on the same data:\n");
  Run full = run_self(with({"finetune", "--full", "--lr", fmt::format("{}", a.full_lr), "--metrics", path("full.jsonl"),
                            "--out", path("full.gguf")}),
                      path("full.log"));
  read_metrics(path("full.jsonl"), full);
  auto full_model = load_model(path("full.gguf"));
  const Answers full_answers = answer(*full_model, *tok, nullptr, held);
  std::printf("   held-out: %lld exact (%.0f%%)\n", static_cast<long long>(full_answers.exact),
              100.0 * static_cast<double>(full_answers.exact) / static_cast<double>(held.size()));
  show_answers(held, full_answers);

  // 6. The comparison.
  const int64_t ad_params = adapter.parameter_count(), full_params = base->config.parameter_count();
  const size_t ad_bytes = std::filesystem::file_size(path("adapter.safetensors")),
               full_bytes = std::filesystem::file_size(path("full.gguf"));
  std::printf("\n6. LLaMA-Adapter against full fine-tuning, the same %zu questions, %lld epochs:\n\n", train.size(),
              static_cast<long long>(a.finetune_epochs));
  std::printf("   %-24s %14s %14s\n", "", "LLaMA-Adapter", "full");
  std::printf("   %-24s %14lld %14lld\n", "trainable parameters", static_cast<long long>(ad_params),
              static_cast<long long>(full_params));
  std::printf("   %-24s %14s %14s\n", "file", mib(ad_bytes).c_str(), mib(full_bytes).c_str());
  std::printf("   %-24s %14.3f %14.3f\n", "seconds per step", ad.seconds / static_cast<double>(ad.steps),
              full.seconds / static_cast<double>(full.steps));
  std::printf("   %-24s %14s %14s\n", "peak memory", mib(ad.peak_bytes).c_str(), mib(full.peak_bytes).c_str());
  std::printf("   %-24s %14.4f %14.4f\n", "held-out loss", ad.last_val_loss, full.last_val_loss);
  std::printf("   %-24s %10lld/%zu %10lld/%zu   (base alone: %lld/%zu)\n", "held-out exact answers",
              static_cast<long long>(ad_answers.exact), held.size(), static_cast<long long>(full_answers.exact),
              held.size(), static_cast<long long>(base_answers.exact), held.size());

  nlohmann::ordered_json s;
  s["n_heldout"] = held.size();
  s["exact_base"] = base_answers.exact;
  s["exact_adapter"] = ad_answers.exact;
  s["exact_full"] = full_answers.exact;
  s["known_base_corpus_form"] = knows.exact;
  auto side = [](int64_t params, size_t bytes, const Run& r) {
    nlohmann::ordered_json j;
    j["trainable_parameters"] = params;
    j["file_bytes"] = bytes;
    j["steps"] = r.steps;
    j["seconds"] = r.seconds;
    j["seconds_per_step"] = r.seconds / static_cast<double>(r.steps);
    j["peak_memory_bytes"] = r.peak_bytes;
    j["heldout_loss"] = r.last_val_loss;
    return j;
  };
  s["adapter"] = side(ad_params, ad_bytes, ad);
  s["full"] = side(full_params, full_bytes, full);
  s["pretrain"] = {{"steps", pre.steps}, {"seconds", pre.seconds}, {"peak_memory_bytes", pre.peak_bytes}};
  const std::string js = s.dump(1) + "\n";
  write_file_atomic(path("summary.json"), js.data(), js.size());
  std::printf("\n   %s\n", path("summary.json").c_str());
}

}  // namespace

void register_demo(CLI::App& app) {
  auto* cmd = app.add_subcommand("demo",
                                 "The embedded default: pre-train a small LLaMA on a made-up world, then teach it to "
                                 "follow instructions with a LLaMA-Adapter and, for comparison, full fine-tuning");
  auto a = std::make_shared<DemoArgs>();
  cmd->add_option("--dir", a->dir, "Where to write the data, models, adapter and summary.json")
      ->default_val("runs/demo");
  cmd->add_option("--countries", a->countries, "Countries in the made-up world (one question each)")
      ->default_val(200)
      ->check(CLI::Range(8, 100000));
  cmd->add_option("--heldout", a->heldout, "Questions held out (the others are trained on)")
      ->default_val(100)
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--passes", a->passes, "Passes over every fact in the corpus")
      ->default_val(150)
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--pretrain-steps", a->pretrain_steps, "Pre-training steps")
      ->default_val(300)
      ->check(CLI::PositiveNumber);
  cmd->add_option("--epochs", a->finetune_epochs, "Fine-tuning epochs (adapter and full alike)")
      ->default_val(15)
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--seed", a->seed, "Seed for the world, the models and the data order")->default_val(1);
  cmd->add_option("--dim", a->dim, "Width of the model pre-trained")->default_val(128)->check(CLI::Range(16, 4096));
  cmd->add_option("--layers", a->layers, "Its layers (all adapted)")->default_val(4)->check(CLI::Range(1, 64));
  cmd->add_option("--pretrain-lr", a->pretrain_lr, "Peak learning rate of pre-training")->default_val(3e-3f);
  cmd->add_option("--adapter-lr", a->adapter_lr, "Learning rate of the adapter")->default_val(5e-2f);
  cmd->add_option("--full-lr", a->full_lr, "Learning rate of full fine-tuning")->default_val(1e-4f);
  add_threads_flag(cmd);
  cmd->callback([a] { run_demo(*a); });
}

}  // namespace la::cli
