// The HTTP front of `serve` (SPEC §9), on cpp-httplib: the OpenAI-compatible routes, the
// adapter routes, tokenize/detokenize, /health, Prometheus /metrics and the chat page. Requests
// become engine requests (serve/engine.h); a streamed reply is fed from the engine thread
// through a channel to the connection's thread. Every error is {"error": {...}} with its status;
// no input stops the server or disturbs the other requests.
#pragma once
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "la/serve/adapters.h"
#include "la/serve/engine.h"
#include "la/serve/openai_api.h"
#include "la/vision/clip.h"

namespace httplib {
class Server;
}

namespace la::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;              // 0: any free port (listen() returns it)
  std::string api_key;          // non-empty: every API route wants "Authorization: Bearer <key>"
  std::string base_name;        // the base model's id in "model"
  size_t max_body = 32u << 20;  // bytes; larger bodies get 413 (an image as a data: URI fits)
  double timeout_s = 600;       // a request's time limit, queue included
  int http_threads = 0;         // connections served at once (0: slots + queue + 8)
};

// How chat messages become prompt tokens: the chat template of the adapter (null: the base),
// rendered and tokenized (la::Error or ApiError for messages it cannot take); and the tokens
// that end an assistant turn.
struct PromptFormat {
  std::function<std::vector<int>(const std::vector<ApiMessage>&, const ServedAdapter*)> chat;
  std::function<std::vector<int>(const ServedAdapter*)> end_ids;
};

class Server {
 public:
  Server(const ModelWeights& w, const Tokenizer& tok, Engine& engine, AdapterRegistry& adapters, PromptFormat fmt,
         const ClipWeights* clip, ServerOptions o);
  ~Server();
  // Binds and starts serving on a thread of its own; returns the port. Throws la::Error when the
  // address cannot be bound.
  int listen();
  // Stops taking requests (503), lets those in flight finish for up to `grace` (the rest end as
  // cancelled: streams get their last chunk), then closes the listener. False when an idle
  // keep-alive connection still holds a thread (nothing in flight): the caller just exits.
  bool shutdown(std::chrono::milliseconds grace);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace la::serve
