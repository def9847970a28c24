#include "la/serve/server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <ctime>
#include <deque>
#include <random>
#include <thread>

#include "la/core/error.h"
#include "la/serve/page.h"
#include "la/vision/image.h"
#include "la/vision/preprocess.h"

namespace la::serve {

using nlohmann::json;

namespace {

// What the engine thread hands a connection: pieces of text, then the end.
struct Channel {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> pieces;
  bool done = false;
  Completion result;
};

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(error_body(e.what(), e.type, e.code), "application/json");
}

int64_t unix_now() {
  return static_cast<int64_t>(std::time(nullptr));
}

}  // namespace

struct Server::Impl {
  const ModelWeights& w;
  const Tokenizer& tok;
  Engine& engine;
  AdapterRegistry& adapters;
  PromptFormat prompt_format;
  const ClipWeights* clip;
  ServerOptions o;
  httplib::Server http;
  std::thread thread;
  std::atomic<bool> stopping{false}, listener_done{false};
  std::atomic<int64_t> open_streams{0}, rejected{0}, bad_requests{0};
  std::atomic<uint64_t> next_id{1};
  std::string id_prefix;
  int64_t started = unix_now();

  Impl(const ModelWeights& w_, const Tokenizer& t, Engine& e, AdapterRegistry& a, PromptFormat f, const ClipWeights* c,
       ServerOptions opts)
      : w(w_), tok(t), engine(e), adapters(a), prompt_format(std::move(f)), clip(c), o(std::move(opts)) {
    std::random_device rd;
    id_prefix = fmt::format("{:08x}", rd());
    routes();
  }

  bool authorized(const httplib::Request& req) const {
    if (o.api_key.empty()) return true;
    return req.get_header_value("Authorization") == "Bearer " + o.api_key ||
           req.get_header_value("X-Api-Key") == o.api_key;
  }

  std::shared_ptr<const ServedAdapter> resolve_model(const std::string& name, bool& is_base) const {
    is_base = name == o.base_name;
    if (is_base) return nullptr;
    auto a = adapters.find(name);
    if (!a)
      throw ApiError(404, "invalid_request_error", "model_not_found",
                     "the model '" + printable(name) + "' does not exist (GET /v1/models lists them)");
    return a;
  }

  json model_entry(const ServedAdapter* a) const {
    json j = {
        {"id", a ? a->name : o.base_name}, {"object", "model"}, {"created", started}, {"owned_by", "llama-adapter"}};
    if (a) {
      j["parent"] = o.base_name;
      j["vision"] = a->adapter.visual.enabled() && clip != nullptr;
      j["adapter_len"] = a->adapter.len;
      j["adapter_layers"] = a->adapter.n_layers;
    } else {
      j["base"] = true;
    }
    return j;
  }

  // The image's CLIP features (SPEC §8) for a multi-modal adapter.
  std::vector<float> image_features(const std::string& url, const ServedAdapter* a) const {
    if (!clip) throw bad_request("this server has no CLIP image tower (start it with --clip)", "images_not_supported");
    if (!a || !a->adapter.visual.enabled())
      throw bad_request("the model takes no images: use a multi-modal adapter", "images_not_supported");
    const std::vector<uint8_t> bytes = data_uri_bytes(url);
    RgbImage im;
    try {
      im = decode_image(bytes, "image_url");
    } catch (const Error& e) {
      throw bad_request(e.what(), "invalid_image");
    }
    const std::vector<float> pixels = clip_preprocess(im, clip->config.image_size, clip->config.norm);
    std::vector<float> f = clip_encode(*clip, pixels.data()).features;
    if (static_cast<int64_t>(f.size()) != a->adapter.visual.in)
      throw bad_request("the adapter was trained with another CLIP than this server's", "images_not_supported");
    return f;
  }

  void completions(const httplib::Request& hreq, httplib::Response& res, bool chat) {
    if (stopping) throw ApiError(503, "server_error", "shutting_down", "the server is shutting down");
    const CompletionRequest cr = parse_completion_request(hreq.body, chat);
    bool is_base = false;
    std::shared_ptr<const ServedAdapter> adapter = resolve_model(cr.model, is_base);
    auto r = std::make_shared<Request>();
    r->adapter = adapter;
    r->model_name = cr.model;
    if (chat) {
      std::vector<std::string> images;
      for (const ApiMessage& m : cr.messages) images.insert(images.end(), m.image_urls.begin(), m.image_urls.end());
      if (images.size() > 1) throw bad_request("one image per conversation (the adapter has one image prompt)");
      if (!images.empty()) r->image_features = image_features(images[0], adapter.get());
      try {
        r->prompt = prompt_format.chat(cr.messages, adapter.get());
      } catch (const Error& e) {
        throw bad_request(e.what(), "invalid_messages");
      }
      r->end_ids = prompt_format.end_ids(adapter.get());
    } else {
      r->prompt = tok.encode(cr.prompt, true, false);  // as generate --prompt feeds it
      r->end_ids = {tok.eos_id()};
    }
    if (r->prompt.empty()) throw bad_request("the prompt is empty (the chat template rendered nothing)");
    if (static_cast<int64_t>(r->prompt.size()) >= engine.context())
      throw bad_request(fmt::format("the prompt has {} tokens; the context holds {} (prompt and reply)",
                                    r->prompt.size(), engine.context()),
                        "context_length_exceeded");
    r->sampling = cr.sampling;
    r->max_tokens = cr.max_tokens;
    r->stop = cr.stop;
    r->ignore_eos = cr.ignore_eos;
    r->deadline = Clock::now() + std::chrono::microseconds(static_cast<int64_t>(o.timeout_s * 1e6));
    auto ch = std::make_shared<Channel>();
    r->on_text = [ch](const std::string& piece) {
      std::lock_guard<std::mutex> lock(ch->mu);
      ch->pieces.push_back(piece);
      ch->cv.notify_all();
    };
    r->on_done = [ch](const Completion& c) {
      std::lock_guard<std::mutex> lock(ch->mu);
      ch->result = c;
      ch->done = true;
      ch->cv.notify_all();
    };
    const std::string id = fmt::format("{}-{}{}", chat ? "chatcmpl" : "cmpl", id_prefix, next_id++);
    const int64_t created = unix_now();
    const std::string model = cr.model;
    if (!engine.submit(r)) {
      ++rejected;
      res.set_header("Retry-After", "1");
      throw ApiError(429, "rate_limit_exceeded", "queue_full", "the request queue is full; retry shortly");
    }
    if (!cr.stream) {
      std::unique_lock<std::mutex> lock(ch->mu);
      ch->cv.wait(lock, [&] { return ch->done; });
      const Completion& c = ch->result;
      if (c.finish_reason == "error") throw ApiError(500, "server_error", "generation_failed", c.error);
      std::string text;
      for (const std::string& p : ch->pieces) text += p;
      const Usage u{c.prompt_tokens, c.completion_tokens, c.cached_tokens};
      res.set_content(completion_json(chat, id, created, model, text, c.finish_reason, u)
                          .dump(-1, ' ', false, json::error_handler_t::replace),
                      "application/json");
      return;
    }
    const bool include_usage = cr.include_usage;
    auto first = std::make_shared<bool>(true);
    ++open_streams;
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, ch, r, id, created, model, chat, include_usage, first](size_t, httplib::DataSink& sink) {
          std::deque<std::string> pieces;
          bool done;
          Completion c;
          {
            std::unique_lock<std::mutex> lock(ch->mu);
            ch->cv.wait_for(lock, std::chrono::milliseconds(250), [&] { return ch->done || !ch->pieces.empty(); });
            pieces.swap(ch->pieces);
            done = ch->done;
            c = ch->result;
          }
          std::string out;
          if (*first && chat) {  // the role comes first, as OpenAI's streams do
            const std::string empty;
            out += sse(chunk_json(true, id, created, model, &empty, nullptr, nullptr, true));
          }
          *first = false;
          for (const std::string& p : pieces) out += sse(chunk_json(chat, id, created, model, &p, nullptr, nullptr));
          if (done) {
            if (c.finish_reason == "error") {
              out += sse(json::parse(error_body(c.error, "server_error", "generation_failed")));
            } else {
              const std::string reason = c.finish_reason == "cancelled" ? "stop" : c.finish_reason;
              out += sse(chunk_json(chat, id, created, model, nullptr, &reason, nullptr));
              if (include_usage) {
                const Usage u{c.prompt_tokens, c.completion_tokens, c.cached_tokens};
                out += sse(chunk_json(chat, id, created, model, nullptr, nullptr, &u));
              }
            }
            out += "data: [DONE]\n\n";
          }
          if (!out.empty() && !sink.write(out.data(), out.size())) {
            r->cancel = true;  // the client went away: its slot is freed at the next step
            return false;
          }
          if (!sink.is_writable()) {
            r->cancel = true;
            return false;
          }
          if (done) sink.done();
          return true;
        },
        [this, r](bool) {
          r->cancel = true;  // no-op when it has finished; frees the slot when the client left
          --open_streams;
        });
  }

  std::string metrics_text() const {
    std::string s;
    const auto m = engine.metrics();
    auto counter = [&](const char* name, const char* help, auto get, const char* type = "counter") {
      s += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
      for (const auto& [model, mm] : m) s += fmt::format("{}{{model=\"{}\"}} {}\n", name, model, get(mm));
    };
    counter("la_requests_total", "Requests finished, by model (the base or an adapter).",
            [](const ModelMetrics& x) { return x.requests; });
    counter("la_requests_cancelled_total", "Requests whose client went away or that the shutdown cancelled.",
            [](const ModelMetrics& x) { return x.cancelled; });
    counter("la_requests_failed_total", "Requests that ended in an error.",
            [](const ModelMetrics& x) { return x.errors; });
    counter("la_prompt_tokens_total", "Prompt tokens.", [](const ModelMetrics& x) { return x.prompt_tokens; });
    counter("la_prompt_tokens_cached_total", "Prompt tokens whose keys/values were reused from an earlier request.",
            [](const ModelMetrics& x) { return x.cached_tokens; });
    counter("la_generated_tokens_total", "Generated tokens.", [](const ModelMetrics& x) { return x.generated_tokens; });
    counter("la_queue_seconds_total", "Seconds requests waited for a slot.",
            [](const ModelMetrics& x) { return x.queue_s; });
    counter("la_first_token_seconds_total", "Seconds from arrival to the first generated token, summed.",
            [](const ModelMetrics& x) { return x.first_token_s; });
    counter("la_busy_seconds_total", "Seconds requests spent in a slot.",
            [](const ModelMetrics& x) { return x.busy_s; });
    counter(
        "la_tokens_per_second", "Generated tokens per second a request of this model saw in its slot (mean).",
        [](const ModelMetrics& x) { return x.busy_s > 0 ? static_cast<double>(x.generated_tokens) / x.busy_s : 0.0; },
        "gauge");
    s += fmt::format(
        "# HELP la_requests_active Requests in a slot.\n# TYPE la_requests_active gauge\nla_requests_active {}\n",
        engine.active());
    s += fmt::format(
        "# HELP la_requests_queued Requests waiting for a slot.\n# TYPE la_requests_queued gauge\n"
        "la_requests_queued {}\n",
        engine.queued());
    s += fmt::format(
        "# HELP la_requests_rejected_total Requests refused with 429 (queue full).\n"
        "# TYPE la_requests_rejected_total counter\nla_requests_rejected_total {}\n",
        rejected.load());
    s += fmt::format("# HELP la_slots Slots (requests decoded together).\n# TYPE la_slots gauge\nla_slots {}\n",
                     engine.options().parallel);
    return s;
  }

  // Runs a handler, answering any error as {"error": ...}; nothing escapes to the connection.
  template <class F>
  auto guarded(F f) {
    return [this, f](const httplib::Request& req, httplib::Response& res) {
      try {
        f(req, res);
      } catch (const ApiError& e) {
        if (e.status == 400) ++bad_requests;
        send_error(res, e);
      } catch (const Error& e) {
        send_error(res, bad_request(e.what()));
      } catch (const std::exception& e) {
        send_error(res, ApiError(500, "server_error", "internal_error", e.what()));
      }
    };
  }

  static json body_object(const httplib::Request& req) {
    json j;
    try {
      j = json::parse(req.body);
    } catch (const json::exception& e) {
      throw bad_request(std::string("malformed JSON body: ") + e.what(), "invalid_json");
    }
    if (!j.is_object()) throw bad_request("the body must be a JSON object");
    return j;
  }

  void routes() {
    http.set_payload_max_length(o.max_body);
    const size_t threads =
        o.http_threads > 0
            ? static_cast<size_t>(o.http_threads)
            : static_cast<size_t>(std::min<int64_t>(256, engine.options().parallel + engine.options().max_queue + 8));
    http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    http.set_read_timeout(60, 0);
    http.set_write_timeout(60, 0);
    http.set_default_headers({{"Access-Control-Allow-Origin", "*"}});
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      const bool open = req.method == "OPTIONS" || req.path == "/" || req.path == "/health";
      if (open || authorized(req)) return httplib::Server::HandlerResponse::Unhandled;
      send_error(res, ApiError(401, "invalid_request_error", "invalid_api_key",
                               "missing or wrong API key (send 'Authorization: Bearer <key>')"));
      return httplib::Server::HandlerResponse::Handled;
    });
    http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      if (res.status == 404)
        send_error(res, ApiError(404, "invalid_request_error", "not_found",
                                 "no route " + req.method + " " + printable(req.path)));
      else if (res.status == 413)
        send_error(res, ApiError(413, "invalid_request_error", "request_too_large", "the request body is too large"));
      else if (res.status >= 400)
        send_error(res, ApiError(res.status, "invalid_request_error", "http_error",
                                 "HTTP error " + std::to_string(res.status)));
    });
    http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
      send_error(res, ApiError(500, "server_error", "internal_error", "internal error"));
    });
    http.Options(R"(.*)", [](const httplib::Request&, httplib::Response& res) {
      res.status = 204;
      res.set_header("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
      res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Api-Key");
      res.set_header("Access-Control-Max-Age", "86400");
    });
    http.Get("/", [](const httplib::Request&, httplib::Response& res) {
      const std::string_view page = chat_page_html();
      res.set_content(std::string(page), "text/html; charset=utf-8");
    });
    http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      if (stopping) {
        res.status = 503;
        res.set_content(R"({"status":"shutting down"})", "application/json");
        return;
      }
      res.set_content(json{{"status", "ok"},
                           {"slots", engine.options().parallel},
                           {"active", engine.active()},
                           {"queued", engine.queued()}}
                          .dump(),
                      "application/json");
    });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics_text(), "text/plain; version=0.0.4");
    });
    http.Get("/v1/models", guarded([this](const httplib::Request&, httplib::Response& res) {
               json data = json::array({model_entry(nullptr)});
               for (const auto& a : adapters.list()) data.push_back(model_entry(a.get()));
               res.set_content(json{{"object", "list"}, {"data", data}}.dump(), "application/json");
             }));
    http.Get(R"(/v1/models/(.+))", guarded([this](const httplib::Request& req, httplib::Response& res) {
               bool is_base = false;
               auto a = resolve_model(req.matches[1], is_base);
               res.set_content(model_entry(a.get()).dump(), "application/json");
             }));
    http.Post("/v1/chat/completions",
              guarded([this](const httplib::Request& req, httplib::Response& res) { completions(req, res, true); }));
    http.Post("/v1/completions",
              guarded([this](const httplib::Request& req, httplib::Response& res) { completions(req, res, false); }));
    http.Post("/v1/adapters", guarded([this](const httplib::Request& req, httplib::Response& res) {
                const json b = body_object(req);
                if (!b.contains("name") || !b["name"].is_string() || !b.contains("path") || !b["path"].is_string())
                  throw bad_request("give {\"name\": ..., \"path\": ...}");
                const std::string name = b["name"].get<std::string>();
                if (name == o.base_name) throw bad_request("'" + name + "' is the base model's name");
                auto a = adapters.load(name, b["path"].get<std::string>());
                res.set_content(model_entry(a.get()).dump(), "application/json");
              }));
    http.Delete(
        R"(/v1/adapters/(.+))", guarded([this](const httplib::Request& req, httplib::Response& res) {
          const std::string name = req.matches[1];
          auto a = adapters.remove(name);
          if (!a)
            throw ApiError(404, "invalid_request_error", "model_not_found",
                           "no adapter named '" + printable(name) + "' is loaded");
          // Requests already using it finish first (they hold it); new ones get 404.
          while (engine.in_use(a.get())) std::this_thread::sleep_for(std::chrono::milliseconds(10));
          res.set_content(json{{"id", name}, {"object", "model"}, {"deleted", true}}.dump(), "application/json");
        }));
    http.Post("/tokenize", guarded([this](const httplib::Request& req, httplib::Response& res) {
                const json b = body_object(req);
                if (!b.contains("content") || !b["content"].is_string())
                  throw bad_request("'content' must be a string");
                const bool bos = b.value("add_special", false);
                res.set_content(json{{"tokens", tok.encode(b["content"].get<std::string>(), bos, false)}}.dump(),
                                "application/json");
              }));
    http.Post("/detokenize", guarded([this](const httplib::Request& req, httplib::Response& res) {
                const json b = body_object(req);
                if (!b.contains("tokens") || !b["tokens"].is_array()) throw bad_request("'tokens' must be an array");
                std::vector<int> ids;
                for (const json& t : b["tokens"]) {
                  if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= tok.vocab_size())
                    throw bad_request(fmt::format("'tokens' must hold ids from 0 to {}", tok.vocab_size() - 1));
                  ids.push_back(t.get<int>());
                }
                res.set_content(json{{"content", tok.decode(ids)}}.dump(-1, ' ', false, json::error_handler_t::replace),
                                "application/json");
              }));
  }
};

Server::Server(const ModelWeights& w, const Tokenizer& tok, Engine& engine, AdapterRegistry& adapters, PromptFormat fmt,
               const ClipWeights* clip, ServerOptions o)
    : impl_(std::make_unique<Impl>(w, tok, engine, adapters, std::move(fmt), clip, std::move(o))) {}

Server::~Server() {
  if (impl_->thread.joinable()) {
    impl_->http.stop();
    if (impl_->listener_done)
      impl_->thread.join();
    else
      impl_->thread.detach();  // held by an idle connection: see shutdown()
  }
}

int Server::listen() {
  Impl& s = *impl_;
  // Debian's cpp-httplib is a compiled library whose listen() backlog is 5: a burst of clients
  // (64 at once in bench/serve_load.py) overflowed it and had their connections reset. Listening
  // again on the same socket raises the backlog (Linux keeps the bound socket, updates the queue).
  int listen_fd = -1;
  s.http.set_socket_options([&listen_fd](socket_t sock) {
    httplib::default_socket_options(sock);
    listen_fd = sock;
  });
  int port = s.o.port;
  if (port == 0) {
    port = s.http.bind_to_any_port(s.o.host);
    if (port < 0) fail("serve: cannot listen on {}: no free port", s.o.host);
  } else if (!s.http.bind_to_port(s.o.host, port)) {
    fail("serve: cannot listen on {}:{} (in use, or not an address of this machine)", s.o.host, port);
  }
  if (listen_fd < 0 || ::listen(listen_fd, SOMAXCONN) != 0) fail("serve: cannot listen on {}:{}", s.o.host, port);
  s.thread = std::thread([&s] {
    s.http.listen_after_bind();
    s.listener_done = true;
  });
  return port;
}

bool Server::shutdown(std::chrono::milliseconds grace) {
  Impl& s = *impl_;
  s.stopping = true;
  s.engine.shutdown(grace);
  // Every request has ended; the streams write their last chunks before the listener closes.
  const auto until = Clock::now() + std::chrono::seconds(5);
  while (s.open_streams.load() > 0 && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  s.http.stop();
  // The listener returns when its connection threads do; one idle in a keep-alive read holds it
  // until its timeout. Nothing is in flight any more, so after a moment it is left to the exit.
  for (int i = 0; i < 100 && !s.listener_done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (!s.listener_done) return false;
  s.thread.join();
  return true;
}

}  // namespace la::serve
