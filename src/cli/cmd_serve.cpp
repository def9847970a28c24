#include <csignal>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "chat_format.h"
#include "commands.h"
#include "la/core/error.h"
#include "la/core/mapped_file.h"
#include "la/core/memory.h"
#include "la/core/signals.h"
#include "la/serve/server.h"
#include "validators.h"

namespace la::cli {

namespace {

struct ServeArgs {
  ModelArgs model;
  std::vector<std::string> adapters;  // NAME=PATH
  std::string adapter_dir, name, host = "127.0.0.1", api_key, chat_template;
  int port = 8080;
  int64_t parallel = 4, context = 0, max_queue = 64, max_body_mb = 32;
  double timeout_s = 600, shutdown_grace_s = 30;
  ClipArgs clip;
};

void run_serve(const ServeArgs& a) {
  LoadedModel lm = load_model_for_inference(a.model);
  const ModelConfig& c = lm.weights->config;
  const Tokenizer& tok = *lm.tokenizer;
  serve::EngineOptions eo;
  eo.parallel = a.parallel;
  eo.max_queue = a.max_queue;
  // Per slot: the model's context, at most 4096 unless asked (a model advertising 128k would
  // reserve tens of GB per slot).
  eo.context = a.context > 0 ? a.context : std::min<int64_t>(c.max_seq_len, 4096);
  if (eo.context > c.max_seq_len)
    std::fprintf(stderr,
                 "warning: a context of %lld tokens is longer than the %lld the model was trained on; text past "
                 "that may degrade\n",
                 static_cast<long long>(eo.context), static_cast<long long>(c.max_seq_len));
  const double kv_bytes = 2.0 * static_cast<double>(c.n_layers) * static_cast<double>(eo.context) *
                          static_cast<double>(c.kv_dim()) * sizeof(float) * static_cast<double>(eo.parallel + 1);
  if (const size_t avail = available_memory_bytes(); avail != 0 && kv_bytes > static_cast<double>(avail))
    fail("--parallel/--context: {} KV caches of {} tokens need {:.1f} GiB, more than the {:.1f} GiB available",
         eo.parallel + 1, eo.context, kv_bytes / (1 << 30), static_cast<double>(avail) / (1 << 30));

  serve::AdapterRegistry registry(*lm.weights);
  std::vector<std::pair<std::string, std::string>> to_load;
  for (const std::string& spec : a.adapters) {
    const size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
      fail("--adapter '{}': give NAME=PATH", printable(spec));
    to_load.emplace_back(spec.substr(0, eq), spec.substr(eq + 1));
  }
  if (!a.adapter_dir.empty()) {
    std::vector<std::filesystem::path> files;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(a.adapter_dir, ec)) {
      const auto ext = e.path().extension();
      if (e.is_regular_file() && (ext == ".safetensors" || ext == ".gguf" || ext == ".pth"))
        files.push_back(e.path());
      else if (e.is_directory() && file_exists((e.path() / "adapter_config.json").string()))
        files.push_back(e.path());  // a PEFT AdaptionPrompt folder
    }
    if (ec) fail("--adapter-dir {}: {}", a.adapter_dir, ec.message());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) to_load.emplace_back(f.stem().string(), f.string());
  }
  const std::string base_name =
      !a.name.empty() ? a.name : std::filesystem::path(a.model.model).filename().replace_extension().string();
  if (!serve::valid_model_name(base_name))
    fail("--name '{}': use 1-64 letters, digits or . _ : - (the model file's stem is not such a name)",
         printable(base_name));
  for (const auto& [name, path] : to_load) {
    if (name == base_name) fail("--adapter {}: the base model is called '{}' (--name)", path, name);
    try {
      registry.load(name, path);
    } catch (const Error& e) {
      fail("--adapter {}: {}", name, e.what());
    }
  }
  LoadedClip clip = load_clip_args(a.clip);
  ChatFormat chat_format(tok, a.model.model, a.chat_template);
  serve::PromptFormat pf;
  pf.chat = [&chat_format](const std::vector<serve::ApiMessage>& msgs, const serve::ServedAdapter* ad) {
    std::vector<ChatTurn> turns;
    for (const serve::ApiMessage& m : msgs) turns.push_back({m.role, m.content});
    return chat_format.encode(turns, ad ? &ad->adapter : nullptr, true);
  };
  pf.end_ids = [&chat_format](const serve::ServedAdapter*) { return chat_format.end_ids(); };

  serve::Engine engine(*lm.weights, tok, eo);
  serve::ServerOptions so;
  so.host = a.host;
  so.port = a.port;
  so.api_key = a.api_key;
  so.base_name = base_name;
  so.max_body = static_cast<size_t>(a.max_body_mb) << 20;
  so.timeout_s = a.timeout_s;
  serve::Server server(*lm.weights, tok, engine, registry, pf, clip.weights.get(), so);
  std::signal(SIGPIPE, SIG_IGN);  // a client that hangs up is a failed write, not the end of the server
  install_stop_handlers();
  const int port = server.listen();
  if (a.host != "127.0.0.1" && a.host != "localhost" && a.host != "::1" && a.api_key.empty())
    std::fprintf(stderr, "warning: listening on %s without --api-key: anyone who can reach it can use it\n",
                 a.host.c_str());
  std::fprintf(stderr, "serving %s (%zu adapters, %lld slots of %lld tokens)\n", base_name.c_str(),
               registry.list().size(), static_cast<long long>(eo.parallel), static_cast<long long>(eo.context));
  std::fprintf(stderr, "listening on http://%s:%d\n", a.host.c_str(), port);
  std::fflush(stderr);
  while (!stop_requested()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::fprintf(stderr, "shutting down: finishing %lld requests (at most %.0f s; a second signal ends at once)\n",
               static_cast<long long>(engine.active() + engine.queued()), a.shutdown_grace_s);
  const bool closed = server.shutdown(std::chrono::milliseconds(static_cast<int64_t>(a.shutdown_grace_s * 1000)));
  std::fprintf(stderr, "stopped\n");
  if (!closed) {
    // Every request has ended; only idle keep-alive connections remain, which the exit closes.
    std::fflush(nullptr);
    std::_Exit(0);
  }
}

}  // namespace

void register_serve(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("serve", "OpenAI-compatible HTTP server: the base and any mix of adapters in one batch");
  auto a = std::make_shared<ServeArgs>();
  a->model.add_to(cmd);
  cmd->add_option("-a,--adapter", a->adapters, "An adapter to serve, as NAME=PATH (repeatable)");
  cmd->add_option(
      "--adapter-dir", a->adapter_dir,
      "Serve every adapter in this folder: .safetensors, .gguf, .pth files and PEFT folders (name: the stem)");
  cmd->add_option("--name", a->name, "The base model's id in requests (default: the model file's stem)");
  cmd->add_option("--host", a->host, "Address to listen on")->default_val("127.0.0.1");
  cmd->add_option("--port", a->port, "Port (0: any free port, printed)")
      ->default_val(8080)
      ->check(integer_in(0, 65535));
  cmd->add_option("--api-key", a->api_key, "Require 'Authorization: Bearer KEY' on every API route");
  cmd->add_option("--parallel", a->parallel, "Requests decoded together (slots, each with its own KV cache)")
      ->default_val(4)
      ->check(integer_in(1, 256));
  cmd->add_option("--context", a->context, "Tokens per slot, prompt and reply (default: the model's, at most 4096)")
      ->check(integer_in(2, 1 << 24));
  cmd->add_option("--max-queue", a->max_queue, "Requests waiting for a slot before new ones get 429")
      ->default_val(64)
      ->check(integer_in(0, 1 << 20));
  cmd->add_option("--timeout", a->timeout_s, "A request's time limit in seconds, queue included")
      ->default_val(600)
      ->check(finite_in(0.001));
  cmd->add_option("--max-body-mb", a->max_body_mb, "Largest request body in MiB (413 above)")
      ->default_val(32)
      ->check(integer_in(1, 4096));
  cmd->add_option("--shutdown-grace", a->shutdown_grace_s,
                  "On SIGTERM/SIGINT, seconds to let requests in flight finish before cancelling them")
      ->default_val(30)
      ->check(finite_in(0));
  add_template_flag(cmd, a->chat_template);
  a->clip.add_to(cmd);
  cmd->callback([a] { run_serve(*a); });
}

}  // namespace la::cli
