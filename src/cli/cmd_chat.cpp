// `chat` (SPEC §9): a conversation on the terminal, streamed. It runs on the serving engine with
// one slot, so the conversation so far stays in the KV cache (prefix reuse) and each turn feeds
// only what is new.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <future>
#include <iostream>

#include "chat_format.h"
#include "commands.h"
#include "la/core/error.h"
#include "la/io/adapter_file.h"
#include "la/serve/engine.h"
#include "validators.h"

namespace la::cli {

namespace {

struct ChatArgs {
  ModelArgs model;
  std::string adapter, system, chat_template, gate_mode;
  SamplerOptions sampling;
  int max_new_tokens = 512;
  int64_t context = 0;
  ClipArgs clip;
};

// Ctrl-C: the first stops the reply being written; a second before it has stopped, or one at
// the prompt, ends the program.
std::atomic<int> g_interrupts{0};
std::atomic<bool> g_replying{false};
void on_interrupt(int) {
  if (!g_replying.load() || g_interrupts.fetch_add(1) >= 1) _exit(130);
}

void run_chat(const ChatArgs& a) {
  LoadedModel lm = load_model_for_inference(a.model);
  const ModelConfig& c = lm.weights->config;
  const Tokenizer& tok = *lm.tokenizer;
  serve::AdapterRegistry registry(*lm.weights);
  std::shared_ptr<const serve::ServedAdapter> adapter;
  if (!a.adapter.empty())
    adapter = registry.load("adapter", a.adapter,
                            a.gate_mode.empty() ? std::nullopt : std::optional(parse_gate_mode(a.gate_mode)));
  LoadedClip clip = load_clip_args(a.clip);
  if (clip.weights && adapter) check_adapter_clip(adapter->adapter, a.adapter, clip);
  const ChatFormat format(tok, a.model.model, a.chat_template);
  serve::EngineOptions eo;
  eo.parallel = 1;
  eo.max_queue = 1;
  eo.context = a.context > 0 ? a.context : std::min<int64_t>(c.max_seq_len, 4096);
  serve::Engine engine(*lm.weights, tok, eo);

  struct sigaction sa {};
  sa.sa_handler = on_interrupt;  // no SA_RESTART: Ctrl-C at the prompt interrupts the read
  sigaction(SIGINT, &sa, nullptr);
  const bool tty = isatty(STDIN_FILENO) != 0;
  std::fprintf(stderr,
               "chat with %s (template %s). /exit ends, /clear starts over, /regen writes the last reply again%s; "
               "Ctrl-C stops a reply.\n",
               adapter ? a.adapter.c_str() : a.model.model.c_str(),
               format.template_name(adapter ? &adapter->adapter : nullptr).c_str(),
               clip.weights ? ", /image PATH attaches an image" : "");
  std::vector<ChatTurn> turns;
  if (!a.system.empty()) turns.push_back({"system", a.system});
  std::vector<float> image;
  std::string line;
  for (;;) {
    if (tty) std::fputs("> ", stdout);
    std::fflush(stdout);
    if (!std::getline(std::cin, line)) break;
    if (line == "/exit" || line == "/quit") break;
    if (line == "/clear") {
      turns.resize(a.system.empty() ? 0 : 1);
      image.clear();
      std::fputs("[conversation cleared]\n", stderr);
      continue;
    }
    if (line.rfind("/image", 0) == 0) {
      const std::string path = line.size() > 7 ? line.substr(7) : "";
      try {
        if (!clip.store) fail("/image needs --clip (the CLIP the adapter was trained with)");
        if (!adapter || !adapter->adapter.visual.enabled()) fail("/image needs a multi-modal --adapter");
        image = clip.store->features(path);
        std::fprintf(stderr, "[image %s attached]\n", path.c_str());
      } catch (const Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
      }
      continue;
    }
    if (line == "/regen") {
      if (turns.empty() || turns.back().role != "assistant") {
        std::fputs("[nothing to write again yet]\n", stderr);
        continue;
      }
      turns.pop_back();
    } else if (line.empty()) {
      continue;
    } else {
      turns.push_back({"user", line});
    }
    // The prompt, dropping the oldest turns (the system prompt stays) while it does not leave
    // room for a reply in the context.
    std::vector<int> prompt;
    const int64_t room = std::min<int64_t>(a.max_new_tokens, eo.context / 4);
    int dropped = 0;
    for (;;) {
      prompt = format.encode(turns, adapter ? &adapter->adapter : nullptr, true);
      const size_t first = !turns.empty() && turns[0].role == "system" ? 1 : 0;
      if (static_cast<int64_t>(prompt.size()) + room <= eo.context || turns.size() - first < 3) break;
      turns.erase(turns.begin() + static_cast<std::ptrdiff_t>(first),
                  turns.begin() + static_cast<std::ptrdiff_t>(first) + 2);
      ++dropped;
    }
    if (dropped > 0) std::fprintf(stderr, "[context full: the oldest %d exchange(s) dropped]\n", dropped);
    if (static_cast<int64_t>(prompt.size()) >= eo.context) {
      std::fprintf(stderr, "error: this message (%zu tokens with the template) does not fit the context of %lld\n",
                   prompt.size(), static_cast<long long>(eo.context));
      turns.pop_back();
      continue;
    }
    auto r = std::make_shared<serve::Request>();
    r->adapter = adapter;
    r->model_name = "chat";
    r->prompt = std::move(prompt);
    r->image_features = image;
    r->sampling = a.sampling;
    r->max_tokens = a.max_new_tokens;
    r->end_ids = format.end_ids();
    auto reply = std::make_shared<std::string>();
    std::promise<serve::Completion> done;
    auto fut = done.get_future();
    r->on_text = [reply](const std::string& piece) {
      *reply += piece;
      std::fputs(piece.c_str(), stdout);
      std::fflush(stdout);
    };
    r->on_done = [&done](const serve::Completion& cm) { done.set_value(cm); };
    g_interrupts = 0;
    if (!engine.submit(r)) {  // an empty prompt: the template rendered nothing for this turn
      std::fputs("error: the chat template rendered an empty prompt\n", stderr);
      turns.pop_back();
      continue;
    }
    g_replying = true;
    // Wait, turning a Ctrl-C into the request's cancellation.
    while (fut.wait_for(std::chrono::milliseconds(20)) != std::future_status::ready)
      if (g_interrupts.load() > 0) r->cancel = true;
    g_replying = false;
    const serve::Completion cm = fut.get();
    std::fputs("\n", stdout);
    if (cm.finish_reason == "cancelled") std::fputs("[stopped]\n", stderr);
    if (cm.finish_reason == "error") std::fprintf(stderr, "error: %s\n", cm.error.c_str());
    if (cm.finish_reason == "length" && cm.completion_tokens < a.max_new_tokens)
      std::fputs("[the context is full: the reply was cut; /clear starts over]\n", stderr);
    turns.push_back({"assistant", *reply});
  }
  engine.shutdown(std::chrono::milliseconds(0));
}

}  // namespace

void register_chat(CLI::App& app) {
  auto* cmd = app.add_subcommand("chat", "Talk to the model (with an adapter) on the terminal, replies streamed");
  auto a = std::make_shared<ChatArgs>();
  a->model.add_to(cmd);
  cmd->add_option("-a,--adapter", a->adapter, "LLaMA-Adapter weights (.safetensors or .gguf)");
  cmd->add_option("-s,--system", a->system, "A system prompt, kept when old turns are dropped");
  add_template_flag(cmd, a->chat_template);
  add_sampling_flags(cmd, a->sampling);
  cmd->add_option("-n,--max-new-tokens", a->max_new_tokens, "Most tokens per reply")
      ->default_val(512)
      ->check(integer_in(1, 1 << 24));
  cmd->add_option("--gate-mode", a->gate_mode, "Override the adapter's gate mode: tanh or identity")
      ->check(CLI::IsMember({"tanh", "identity"}));
  cmd->add_option("--context", a->context, "Context length / KV cache size (default: the model's, at most 4096)")
      ->check(integer_in(2, 1 << 24));
  a->clip.add_to(cmd);
  cmd->callback([a] { run_chat(*a); });
}

}  // namespace la::cli
