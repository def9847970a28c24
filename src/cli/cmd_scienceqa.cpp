// `scienceqa prepare` and `scienceqa eval` (SPEC §8, paper Table 2): the benchmark's problems as
// QCM-A instruction records, and a model (+ adapter) answering them greedily, scored in the
// official scorer's categories.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "commands.h"
#include "la/core/error.h"
#include "la/core/mapped_file.h"
#include "la/core/paths.h"
#include "la/core/rng.h"
#include "la/data/alpaca.h"
#include "la/data/scienceqa.h"
#include "la/dist/comm.h"
#include "la/io/adapter_file.h"
#include "la/model/inference.h"
#include "la/sample/generate.h"
#include "validators.h"

namespace la::cli {

namespace {

// The flags prepare and eval share: where the problems are and which of them.
struct ScienceQAFlags {
  std::string problems, splits, split, images;

  void add_to(CLI::App* cmd, const std::string& split_default) {
    cmd->add_option("--problems", problems, "ScienceQA problems.json (pid -> problem)")->required();
    cmd->add_option("--splits", splits, "ScienceQA pid_splits.json (split name -> pids)")->required();
    cmd->add_option("--split", split, "The split to take: train, val, test, minival, ... (a name in --splits)")
        ->default_val(split_default);
    cmd->add_option("--images", images,
                    "Folder of the problems' images (<DIR>/<split>/<pid>/image.png or <DIR>/<pid>/image.png)");
  }

  // The problems of the split, each with its image path under --images ("" when it has none there).
  std::pair<ScienceQASelection, std::vector<std::string>> load() const {
    if (!images.empty() && !is_directory(images)) fail("--images {}: not a folder", images);
    const auto all = load_scienceqa_problems(problems);
    const std::vector<std::string> pids = load_scienceqa_split(splits, split);
    ScienceQASelection sel = select_scienceqa(all, pids, problems, splits, split);
    if (sel.skipped > 0)
      std::fprintf(stderr, "note: %lld of the %zu problems of split \"%s\" are not in %s; skipped them\n",
                   static_cast<long long>(sel.skipped), pids.size(), printable(split).c_str(),
                   printable(problems).c_str());
    std::vector<std::string> image_paths;
    int64_t with_image = 0, missing = 0;
    for (const ScienceQAProblem& p : sel.problems) {
      image_paths.push_back(find_scienceqa_image(p, images, split));
      with_image += p.image.empty() ? 0 : 1;
      missing += !p.image.empty() && image_paths.back().empty() ? 1 : 0;
    }
    if (!images.empty() && missing > 0)
      std::fprintf(stderr, "note: %lld of the %lld problems with an image have none under %s; they go without\n",
                   static_cast<long long>(missing), static_cast<long long>(with_image), printable(images).c_str());
    return {std::move(sel), std::move(image_paths)};
  }
};

// `image` as a data file at `out` refers to it (SPEC §8: relative to the data file's folder):
// relative to that folder when both resolve, else absolute.
std::string image_path_for_record(const std::string& image, const std::string& out) {
  namespace fs = std::filesystem;
  std::error_code e1, e2;
  const fs::path img = fs::weakly_canonical(fs::absolute(image), e1);
  const fs::path dir = fs::weakly_canonical(fs::absolute(out).parent_path(), e2);
  if (!e1 && !e2) {
    const fs::path rel = img.lexically_relative(dir);
    if (!rel.empty()) return rel.string();
  }
  return e1 ? fs::absolute(image).string() : img.string();
}

void run_scienceqa_prepare(const ScienceQAFlags& f, const std::string& out) {
  check_output_path("--out", out);
  check_outputs_distinct({{"--out", out}}, {{"--problems", f.problems}, {"--splits", f.splits}});
  const auto [sel, images] = f.load();
  std::string jsonl;
  int64_t with_image = 0;
  for (size_t i = 0; i < sel.problems.size(); ++i) {
    const ScienceQARecord r = scienceqa_record(sel.problems[i], images[i]);
    nlohmann::ordered_json j;
    j["instruction"] = r.instruction;
    j["input"] = r.input;
    j["output"] = r.output;
    if (!r.image.empty()) {
      j["image"] = image_path_for_record(r.image, out);
      ++with_image;
    }
    jsonl += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
  write_file_atomic(out, jsonl.data(), jsonl.size());
  std::printf("wrote %zu records of split \"%s\" to %s (%lld with an image)\n", sel.problems.size(),
              printable(f.split).c_str(), printable(out).c_str(), static_cast<long long>(with_image));
}

struct ScienceQAEvalArgs {
  ModelArgs model;
  ScienceQAFlags data;
  std::string adapter, out, invalid = "wrong";
  ClipArgs clip;
  uint64_t seed = 42;
  int64_t max_new_tokens = 64;
  bool json = false;
};

// Cuts a prompt that leaves no room for the answer (`room` tokens at most) to BOS and its end:
// the options and "### Response:" stay. True when it was cut.
bool fit_prompt(std::vector<int>& ids, int64_t room) {
  if (static_cast<int64_t>(ids.size()) <= room) return false;
  ids.erase(ids.begin() + 1, ids.end() - (room - 1));
  return true;
}

// One problem's answer: greedy decoding until a line break that follows some text, or EOS; the
// text before that line break, trimmed. Everything a problem contributes to its answer passes
// here: with --clip, its image's features join the adapter's prompts (SPEC §8).
std::string answer_problem(InferenceModel& model, const Tokenizer& tok, const std::vector<int>& prompt,
                           const ScienceQARecord& r, const ScienceQAEvalArgs& a, LoadedClip& clip) {
  model.set_image(clip.store && !r.image.empty() ? clip.store->features(r.image).data() : nullptr);
  Sampler greedy(SamplerOptions{0.0f, 1.0f, 0, 0});
  auto line_done = [](const std::string& t) {
    const size_t first = t.find_first_not_of(" \t\r\n");
    return first != std::string::npos && t.find('\n', first) != std::string::npos;
  };
  std::string text = generate(model, tok, prompt, greedy, a.max_new_tokens, nullptr, nullptr, line_done);
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return {};
  text = text.substr(first, text.find('\n', first) - first);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) text.pop_back();
  return text;
}

// Percent with two decimals, as printed.
nlohmann::ordered_json percent_json(const std::optional<double>& v) {
  if (!v) return nullptr;
  return std::round(*v * 100.0) / 100.0;
}

void run_scienceqa_eval(const ScienceQAEvalArgs& a) {
  if (!a.out.empty()) {
    check_output_path("--out", a.out);
    check_outputs_distinct({{"--out", a.out}}, input_files(a.model, {{"--problems", a.data.problems},
                                                                     {"--splits", a.data.splits},
                                                                     {"--adapter", a.adapter},
                                                                     {"--clip", a.clip.clip}}));
  }
  if (a.clip.given() && a.data.images.empty())
    std::fprintf(stderr, "note: --clip without --images: the problems are scored on their text\n");
  const auto [sel, images] = a.data.load();
  LoadedModel lm = load_model_for_inference(a.model);
  const ModelConfig& c = lm.weights->config;
  const Tokenizer& tok = *lm.tokenizer;
  Adapter adapter;
  if (!a.adapter.empty()) adapter = load_adapter(a.adapter, &c);
  LoadedClip clip = load_clip_args(a.clip);
  if (clip.weights && a.adapter.empty()) fail("--clip needs a multi-modal --adapter");
  check_adapter_clip(adapter, a.adapter, clip);

  // Each problem's prompt: [BOS] + the Alpaca template of its instruction. The cache holds the
  // longest prompt and its answer, within the model's context.
  if (a.max_new_tokens + 2 > c.max_seq_len)
    fail("--max-new-tokens {}: leaves no room for a prompt in the model's context of {} tokens", a.max_new_tokens,
         c.max_seq_len);
  std::vector<ScienceQARecord> records;
  std::vector<std::vector<int>> prompts;
  int64_t longest = 0;
  for (size_t i = 0; i < sel.problems.size(); ++i) {
    records.push_back(scienceqa_record(sel.problems[i], images[i]));
    prompts.push_back(tok.encode(alpaca_prompt(records[i].instruction, records[i].input), true, false));
    longest = std::max(longest, static_cast<int64_t>(prompts[i].size()));
  }
  const int64_t context = std::min(c.max_seq_len, longest + a.max_new_tokens);
  InferenceModel model(*lm.weights, context);
  model.set_adapter(a.adapter.empty() ? nullptr : &adapter);

  const InvalidAnswers policy = a.invalid == "random" ? InvalidAnswers::Random : InvalidAnswers::Wrong;
  SplitMix64 rng{a.seed};
  std::vector<bool> correct, invalid;
  nlohmann::ordered_json preds = nlohmann::ordered_json::object();
  int64_t truncated = 0, with_image = 0;
  const bool tty = stderr_is_tty();
  const size_t n = sel.problems.size();
  // Under mpirun (SPEC §11) problem i is answered by rank i % N; the answers are then gathered
  // and judged in problem order, so the scores (and the random choices of --invalid random) are
  // the same for any N. Rank 0 alone reports and writes.
  const Comm& comm = Comm::world();
  const bool root = comm.is_root();
  std::vector<char> cut(n);
  for (size_t i = 0; i < n; ++i) cut[i] = fit_prompt(prompts[i], context - a.max_new_tokens) ? 1 : 0;
  std::vector<std::string> answers(n);
  for (size_t i = 0; i < n; ++i) {
    if (!comm.owns(i)) continue;
    answers[i] = answer_problem(model, tok, prompts[i], records[i], a, clip);
    if (!root) continue;
    if (tty)
      std::fprintf(stderr, "\rscienceqa eval: %zu/%zu", i + 1, n);
    else if ((i + 1) % std::max<size_t>(1, n / 10) == 0 || i + 1 == n)
      std::fprintf(stderr, "scienceqa eval: %zu/%zu problems\n", i + 1, n);
  }
  if (root && tty) std::fputs("\n", stderr);
  if (comm.distributed()) {
    std::string mine;  // this rank's answers, each as its length and bytes
    for (size_t i = 0; i < n; ++i) {
      if (!comm.owns(i)) continue;
      const uint64_t len = answers[i].size();
      mine.append(reinterpret_cast<const char*>(&len), sizeof len);
      mine += answers[i];
    }
    const std::vector<std::string> parts = comm.allgather(mine);
    std::vector<size_t> at(parts.size(), 0);
    for (size_t i = 0; i < n; ++i) {
      const size_t r = i % parts.size();
      uint64_t len = 0;
      if (at[r] + sizeof len > parts[r].size()) fail("rank {} sent fewer answers than it owns", r);
      std::memcpy(&len, parts[r].data() + at[r], sizeof len);
      if (len > parts[r].size() - at[r] - sizeof len) fail("rank {} sent a cut answer", r);
      answers[i] = parts[r].substr(at[r] + sizeof len, len);
      at[r] += sizeof len + len;
    }
  }
  for (size_t i = 0; i < n; ++i) {
    const ScienceQAProblem& p = sel.problems[i];
    truncated += cut[i];
    const std::string& text = answers[i];
    const ScienceQAJudgement j = judge_scienceqa(p, text, policy, rng);
    correct.push_back(j.correct);
    invalid.push_back(j.invalid);
    auto& e = preds[p.pid];
    e["prediction"] = text;
    e["answer"] = j.answer ? nlohmann::ordered_json(std::string(1, *j.answer)) : nlohmann::ordered_json(nullptr);
    e["expected"] = std::string(1, scienceqa_letter(p.answer));
    if (j.invalid && j.predicted >= 0) e["random_choice"] = std::string(1, scienceqa_letter(j.predicted));
    e["correct"] = j.correct;
    if (cut[i]) e["truncated"] = true;
    if (clip.store && !records[i].image.empty()) {
      e["image"] = true;
      ++with_image;
    }
  }
  if (!root) return;
  if (clip.store)
    std::fprintf(stderr, "images: %lld of %zu problems answered with their image (%lld encoded, %lld from the cache)\n",
                 static_cast<long long>(with_image), n, static_cast<long long>(clip.store->encoded()),
                 static_cast<long long>(clip.store->from_disk()));
  if (truncated > 0)
    std::fprintf(stderr,
                 "note: %lld prompts did not fit the model's context of %lld tokens with --max-new-tokens %lld; "
                 "their beginnings were cut\n",
                 static_cast<long long>(truncated), static_cast<long long>(c.max_seq_len),
                 static_cast<long long>(a.max_new_tokens));

  const ScienceQAScore s = score_scienceqa(sel.problems, correct, invalid);
  if (!a.out.empty()) {
    const std::string body = preds.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    write_file_atomic(a.out, body.data(), body.size());
  }
  if (a.json) {
    nlohmann::ordered_json j;
    for (size_t k = 0; k < kScienceQACategories.size(); ++k) j[kScienceQACategories[k]] = percent_json(s.accuracy[k]);
    j["problems"] = s.problems;
    j["correct"] = s.correct;
    j["invalid"] = s.invalid;
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::string head, row;
  for (size_t k = 0; k < kScienceQACategories.size(); ++k) {
    head += fmt::format("{:>7}", kScienceQACategories[k]);
    row += s.accuracy[k] ? fmt::format("{:>7.2f}", *s.accuracy[k]) : fmt::format("{:>7}", "-");
  }
  std::printf("%s\n%s\n", head.c_str(), row.c_str());
  const std::string how =
      policy == InvalidAnswers::Random ? fmt::format("scored as a random choice, seed {}", a.seed) : "scored wrong";
  std::printf("%lld problems, %lld correct, %lld invalid answers (%s)\n", static_cast<long long>(s.problems),
              static_cast<long long>(s.correct), static_cast<long long>(s.invalid), how.c_str());
}

}  // namespace

void register_scienceqa(CLI::App& app) {
  auto* cmd = app.add_subcommand("scienceqa", "ScienceQA: prepare QCM-A training data, evaluate a model on a split");
  cmd->require_subcommand(1);

  auto* prep = cmd->add_subcommand("prepare", "Write a split's problems as instruction records (JSONL, QCM-A)");
  auto flags = std::make_shared<ScienceQAFlags>();
  auto out = std::make_shared<std::string>();
  flags->add_to(prep, "train");
  prep->add_option("-o,--out", *out, "Output JSONL: instruction, input, output (+ image, relative to it)")->required();
  prep->callback([flags, out] { run_scienceqa_prepare(*flags, *out); });

  auto* ev = cmd->add_subcommand("eval", "Answer a split's problems greedily and score them (Avg, NAT, ..., G7-12)");
  auto a = std::make_shared<ScienceQAEvalArgs>();
  a->model.add_to(ev);
  a->data.add_to(ev, "test");
  ev->add_option("-a,--adapter", a->adapter, "LLaMA-Adapter weights (.safetensors)");
  a->clip.add_to(ev);
  ev->add_option("-o,--out", a->out, "Write the predictions as JSON: pid -> {prediction, answer, expected, correct}");
  ev->add_flag("--json", a->json, "Print the scores as one JSON object (percent; null for an empty category)");
  ev->add_option("--invalid", a->invalid, "An answer that cannot be read counts as wrong, or as a random choice")
      ->default_val("wrong")
      ->check(CLI::IsMember({"wrong", "random"}));
  ev->add_option("--seed", a->seed, "Seed of --invalid random")->default_val(42);
  ev->add_option("-n,--max-new-tokens", a->max_new_tokens, "Most tokens generated per problem")
      ->default_val(64)
      ->check(integer_in(1, 1 << 20));
  ev->callback([a] { run_scienceqa_eval(*a); });
}

}  // namespace la::cli
