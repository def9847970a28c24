// `serve` over HTTP (SPEC §9), the real binary on a loopback port, driven with cpp-httplib's
// client: the routes and their errors (400, 401, 404, 413, 429 with Retry-After), CORS, metrics
// per adapter, adapters loaded and unloaded while a stream runs, an image as a data: URI equal to
// `generate --image`, and SIGTERM finishing what is in flight. (The official openai SDK and the
// page in Chromium are tests/clients.)
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "la/core/mapped_file.h"
#include "la/io/adapter_file.h"
#include "la/io/loader.h"
#include "support/test_support.h"

using namespace la;
using nlohmann::json;

extern char** environ;

namespace {

std::string fixture(const std::string& name) {
  return std::string(LA_SOURCE_DIR) + "/tests/fixtures/clip/" + name;
}

// The server as a child process; stopped with SIGTERM when the object dies.
class ServerProcess {
 public:
  explicit ServerProcess(const std::vector<std::string>& extra) {
    log_ = dir_.file("stderr");
    std::vector<std::string> args = {LA_CLI_PATH,   "serve",
                                     "--model",     test::shared_path("llama2c/stories260K.bin"),
                                     "--tokenizer", test::shared_path("llama2c/tok512.bin"),
                                     "--port",      "0",
                                     "--threads",   "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
    // Wait for "listening on http://127.0.0.1:PORT".
    for (int i = 0; i < 600 && port_ == 0 && pid_ > 0; ++i) {
      const std::string err = test::read_text(log_);
      if (const size_t p = err.find("listening on http://127.0.0.1:"); p != std::string::npos)
        port_ = std::atoi(err.c_str() + p + 30);
      else if (waitpid(pid_, &status_, WNOHANG) == pid_)
        pid_ = -1;
      else
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  ~ServerProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status_, 0);
    }
  }
  int port() const { return port_; }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60, 0);
    return c;
  }
  std::string log() const { return test::read_text(log_); }
  // SIGTERM, then the exit status (-1: not exited within `seconds`).
  int terminate(int seconds) {
    kill(pid_, SIGTERM);
    for (int i = 0; i < seconds * 50; ++i) {
      if (waitpid(pid_, &status_, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }

 private:
  test::TempDir dir_;
  std::string log_;
  pid_t pid_ = -1;
  int port_ = 0, status_ = 0;
};

json post_json(httplib::Client& c, const std::string& path, const json& body, int* status = nullptr,
               const httplib::Headers& h = {}) {
  auto r = c.Post(path, h, body.dump(), "application/json");
  if (!r) {
    ADD_FAILURE() << "no response from " << path;
    return {};
  }
  if (status) *status = r->status;
  return json::parse(r->body);
}

json completion(const std::string& model, const std::string& prompt, int max_tokens) {
  return {{"model", model}, {"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}};
}

void expect_error(httplib::Result& r, int status, const std::string& code) {
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, status) << r->body;
  const json j = json::parse(r->body, nullptr, false);
  ASSERT_TRUE(j.is_object() && j.contains("error")) << r->body;
  EXPECT_TRUE(j["error"]["message"].is_string());
  EXPECT_TRUE(j["error"]["type"].is_string());
  if (!code.empty()) {
    EXPECT_EQ(j["error"]["code"], code) << r->body;
  }
}

#define REQUIRE_MODEL() REQUIRE_SHARED_DATA("llama2c/stories260K.bin")

}  // namespace

TEST(ServeHttp, RoutesAndErrors) {
  REQUIRE_MODEL();
  ServerProcess s({"--adapter", "mm=" + fixture("mm_adapter.safetensors"), "--max-body-mb", "1"});
  ASSERT_GT(s.port(), 0) << s.log();
  auto c = s.client();
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(json::parse(h->body)["status"], "ok");
  const json models = json::parse(c.Get("/v1/models")->body);
  ASSERT_EQ(models["data"].size(), 2u);
  EXPECT_EQ(models["data"][0]["id"], "stories260K");
  EXPECT_EQ(models["data"][1]["id"], "mm");
  EXPECT_EQ(models["data"][1]["parent"], "stories260K");

  auto r = c.Post("/v1/completions", "{not json", "application/json");
  expect_error(r, 400, "invalid_json");
  r = c.Post("/v1/completions", completion("nosuch", "x", 4).dump(), "application/json");
  expect_error(r, 404, "model_not_found");
  json bad = completion("stories260K", "x", 4);
  bad["temperature"] = "hot";
  r = c.Post("/v1/completions", bad.dump(), "application/json");
  expect_error(r, 400, "");
  r = c.Post("/v1/chat/completions", json{{"model", "stories260K"}}.dump(), "application/json");
  expect_error(r, 400, "");
  r = c.Post("/v1/completions", completion("stories260K", std::string(3000, 'z'), 4).dump(), "application/json");
  expect_error(r, 400, "context_length_exceeded");
  r = c.Post("/v1/completions", completion("stories260K", std::string(2 << 20, 'z'), 4).dump(), "application/json");
  expect_error(r, 413, "request_too_large");
  r = c.Get("/v1/nothing");
  expect_error(r, 404, "not_found");
  // CORS: the page may be served from elsewhere.
  auto o = c.Options("/v1/chat/completions");
  ASSERT_TRUE(o);
  EXPECT_EQ(o->status, 204);
  EXPECT_EQ(o->get_header_value("Access-Control-Allow-Origin"), "*");
  EXPECT_NE(o->get_header_value("Access-Control-Allow-Headers").find("Authorization"), std::string::npos);
  // Tokenize and back.
  const json t = post_json(c, "/tokenize", {{"content", "Once upon a time"}});
  ASSERT_TRUE(t["tokens"].is_array());
  EXPECT_EQ(post_json(c, "/detokenize", {{"tokens", t["tokens"]}})["content"], "Once upon a time");
  int st = 0;
  post_json(c, "/detokenize", {{"tokens", {1, 99999}}}, &st);
  EXPECT_EQ(st, 400);
  // A completion, then its metrics under its model's label.
  const json done = post_json(c, "/v1/completions", completion("mm", "Once upon a time", 8));
  EXPECT_EQ(done["usage"]["completion_tokens"], 8);
  const std::string metrics = c.Get("/metrics")->body;
  EXPECT_NE(metrics.find("la_requests_total{model=\"mm\"} 1"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("la_generated_tokens_total{model=\"mm\"} 8"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("la_tokens_per_second{model=\"mm\"}"), std::string::npos);
  // Still healthy after all of that.
  EXPECT_EQ(c.Get("/health")->status, 200);
  EXPECT_EQ(s.terminate(20), 0) << s.log();
}

// --adapter-dir serves every adapter layout we read: our files, the official .pth, PEFT folders
// (named by the folder); the base and each answer.
TEST(ServeHttp, AdapterDirServesEveryLayout) {
  REQUIRE_MODEL();
  const ModelConfig c = load_model(test::shared_path("llama2c/stories260K.bin"))->config;
  test::TempDir dir;
  Adapter a = Adapter::create(c, 10, c.n_layers, GateMode::Identity, 5);
  for (float& g : a.gate()) g = 4.0f;  // wide open: the text must change
  save_adapter_as(a, AdapterFormat::Ours, dir.file("ours.safetensors"), &c);
  save_adapter_as(a, AdapterFormat::Official, dir.file("official.pth"), &c);
  save_adapter_as(a, AdapterFormat::Peft, dir.file("peft"), &c);
  test::write_text(dir.file("notes.txt"), "not an adapter");
  ServerProcess s({"--adapter-dir", dir.path()});
  ASSERT_GT(s.port(), 0) << s.log();
  auto cl = s.client();
  const json models = json::parse(cl.Get("/v1/models")->body);
  ASSERT_EQ(models["data"].size(), 4u) << models.dump();
  std::vector<std::string> ids;
  for (const auto& m : models["data"]) ids.push_back(m["id"]);
  EXPECT_EQ(ids, (std::vector<std::string>{"stories260K", "official", "ours", "peft"}));
  // The same numbers in three layouts: the same greedy text.
  std::vector<std::string> texts;
  for (const std::string name : {"ours", "official", "peft"}) {
    const json r = post_json(cl, "/v1/completions", completion(name, "Once upon a time", 12));
    texts.push_back(r["choices"][0]["text"]);
  }
  EXPECT_EQ(texts[0], texts[1]);
  EXPECT_EQ(texts[0], texts[2]);
  const json base = post_json(cl, "/v1/completions", completion("stories260K", "Once upon a time", 12));
  EXPECT_NE(base["choices"][0]["text"], texts[0]);  // the adapter is in force
}

TEST(ServeHttp, ApiKey) {
  REQUIRE_MODEL();
  ServerProcess s({"--api-key", "sekrit"});
  ASSERT_GT(s.port(), 0) << s.log();
  auto c = s.client();
  auto r = c.Get("/v1/models");
  expect_error(r, 401, "invalid_api_key");
  r = c.Get("/v1/models", {{"Authorization", "Bearer wrong"}});
  expect_error(r, 401, "invalid_api_key");
  r = c.Get("/v1/models", {{"Authorization", "Bearer sekrit"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(c.Get("/")->status, 200);  // the page asks for the key itself
  EXPECT_EQ(c.Get("/health")->status, 200);
}

TEST(ServeHttp, QueueFullIs429AndAdaptersComeAndGo) {
  REQUIRE_MODEL();
  test::TempDir dir;
  ServerProcess s({"--parallel", "1", "--max-queue", "1"});
  ASSERT_GT(s.port(), 0) << s.log();
  // One long request in the slot and one waiting: the next gets 429 with Retry-After.
  json longreq = completion("stories260K", "Once upon a time", 500);
  longreq["ignore_eos"] = true;
  std::vector<std::thread> ts;
  std::vector<int> statuses(2, 0);
  auto c = s.client();
  auto waiting = [&](int64_t active, int64_t queued) {
    for (int i = 0; i < 2000; ++i) {
      const json h = json::parse(c.Get("/health")->body);
      if (h["active"] == active && h["queued"] == queued) return true;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return false;
  };
  for (int i = 0; i < 2; ++i) {
    ts.emplace_back([&, i] {
      auto ci = s.client();
      auto r = ci.Post("/v1/completions", longreq.dump(), "application/json");
      statuses[static_cast<size_t>(i)] = r ? r->status : -1;
    });
    ASSERT_TRUE(waiting(1, i)) << "request " << i << " did not arrive";
  }
  auto r = c.Post("/v1/completions", completion("stories260K", "x", 2).dump(), "application/json");
  expect_error(r, 429, "queue_full");
  EXPECT_EQ(r->get_header_value("Retry-After"), "1");
  // Load an adapter while those run; it is listed and serves.
  json a = post_json(c, "/v1/adapters", {{"name", "mm"}, {"path", fixture("mm_adapter.safetensors")}});
  EXPECT_EQ(a["id"], "mm");
  int st = 0;
  post_json(c, "/v1/adapters", {{"name", "bad"}, {"path", dir.file("missing.safetensors")}}, &st);
  EXPECT_EQ(st, 400);
  for (auto& t : ts) t.join();
  EXPECT_EQ(statuses, (std::vector<int>{200, 200}));
  EXPECT_EQ(post_json(c, "/v1/completions", completion("mm", "Once", 4), &st)["usage"]["completion_tokens"], 4);
  // Unloading waits for a stream that uses it, which completes whole.
  json stream = completion("mm", "Once upon a time", 300);
  stream["stream"] = true;
  stream["ignore_eos"] = true;
  std::string body;
  std::thread streamer([&] {
    auto c2 = s.client();
    if (auto sr = c2.Post("/v1/completions", stream.dump(), "application/json")) body = sr->body;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto del = c.Delete("/v1/adapters/mm");
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 200);
  streamer.join();
  EXPECT_NE(body.find("\"finish_reason\":\"length\""), std::string::npos) << "body: " << body.substr(0, 300);
  EXPECT_NE(body.find("data: [DONE]"), std::string::npos);
  r = c.Post("/v1/completions", completion("mm", "x", 2).dump(), "application/json");
  expect_error(r, 404, "model_not_found");
  r = c.Delete("/v1/adapters/mm");
  expect_error(r, 404, "model_not_found");
}

TEST(ServeHttp, ImageAsDataUriEqualsGenerateImage) {
  REQUIRE_MODEL();
  const std::string image = fixture("images/rgb_37x23.jpg");
  const auto g =
      test::run_cli("generate --model " + test::shared_path("llama2c/stories260K.bin") + " --tokenizer " +
                    test::shared_path("llama2c/tok512.bin") + " --adapter " + fixture("mm_adapter.safetensors") +
                    " --clip " + fixture("tiny_clip_a") + " --no-feature-cache --image " + image +
                    " --instruction 'Describe the picture.' --temperature 0 -n 20 -q");
  ASSERT_EQ(g.exit_code, 0) << g.err;
  ServerProcess s(
      {"--adapter", "mm=" + fixture("mm_adapter.safetensors"), "--clip", fixture("tiny_clip_a"), "--no-feature-cache"});
  ASSERT_GT(s.port(), 0) << s.log();
  auto c = s.client();
  const std::string bytes = test::read_text(image);
  std::string b64;
  static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t v = static_cast<uint8_t>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size()) v |= static_cast<uint8_t>(bytes[i + 2]);
    b64 += k[(v >> 18) & 63];
    b64 += k[(v >> 12) & 63];
    b64 += i + 1 < bytes.size() ? k[(v >> 6) & 63] : '=';
    b64 += i + 2 < bytes.size() ? k[v & 63] : '=';
  }
  json req = {{"model", "mm"},
              {"temperature", 0},
              {"max_tokens", 20},
              {"messages",
               {{{"role", "user"},
                 {"content",
                  {{{"type", "text"}, {"text", "Describe the picture."}},
                   {{"type", "image_url"}, {"image_url", {{"url", "data:image/jpeg;base64," + b64}}}}}}}}}};
  int st = 0;
  const json out = post_json(c, "/v1/chat/completions", req, &st);
  ASSERT_EQ(st, 200) << out.dump();
  EXPECT_EQ(out["choices"][0]["message"]["content"].get<std::string>() + "\n", g.out);
  // A broken image and an image for the base are 400s.
  req["messages"][0]["content"][1]["image_url"]["url"] = "data:image/jpeg;base64,AAAA";
  post_json(c, "/v1/chat/completions", req, &st);
  EXPECT_EQ(st, 400);
  req["model"] = "stories260K";
  post_json(c, "/v1/chat/completions", req, &st);
  EXPECT_EQ(st, 400);
}

TEST(ServeHttp, SigtermFinishesTheStreamsInFlight) {
  REQUIRE_MODEL();
  ServerProcess s({"--shutdown-grace", "30"});
  ASSERT_GT(s.port(), 0) << s.log();
  json stream = completion("stories260K", "Once upon a time", 200);
  stream["stream"] = true;
  stream["ignore_eos"] = true;
  std::string body;
  std::thread streamer([&] {
    auto c = s.client();
    if (auto sr = c.Post("/v1/completions", stream.dump(), "application/json")) body = sr->body;
  });
  // An idle keep-alive connection (as the openai SDK keeps) does not hold the exit up.
  auto idle = s.client();
  idle.set_keep_alive(true);
  ASSERT_EQ(idle.Get("/health")->status, 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(s.terminate(30), 0) << s.log();
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 4.0);
  streamer.join();
  // The stream ran to its length, then [DONE].
  EXPECT_NE(body.find("\"finish_reason\":\"length\""), std::string::npos) << body.substr(0, 200);
  EXPECT_NE(body.find("data: [DONE]"), std::string::npos);
}

// Hostile bodies: truncations, flipped bytes, fields of every wrong type, deep nesting, invalid
// UTF-8, huge numbers. Each gets 200 or a 4xx {"error": ...}; the server stays up throughout.
TEST(ServeHttp, MutatedBodiesNeverHurtTheServer) {
  REQUIRE_MODEL();
  ServerProcess s({"--adapter", "mm=" + fixture("mm_adapter.safetensors"), "--max-body-mb", "1"});
  ASSERT_GT(s.port(), 0) << s.log();
  auto c = s.client();
  const json chat = {
      {"model", "mm"},
      {"max_tokens", 3},
      {"temperature", 0.5},
      {"stop", {"\n"}},
      {"messages", {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hi"}}}}};
  const json comp = {{"model", "stories260K"}, {"prompt", "Once"}, {"max_tokens", 3}, {"seed", 7}};
  const std::vector<json> odd = {nullptr,
                                 true,
                                 -1,
                                 1e308,
                                 "x",
                                 json::array(),
                                 json::object(),
                                 18446744073709551615u,
                                 json::array({1, "a"}),
                                 std::string(70, 's')};
  std::mt19937 rng(1);
  int n = 0, ok = 0;
  auto check = [&](const std::string& path, const std::string& body) {
    auto r = c.Post(path, body, "application/json");
    ASSERT_TRUE(r) << "no answer to " << body.substr(0, 200);
    ++n;
    if (r->status == 200) {
      ++ok;
      return;
    }
    EXPECT_GE(r->status, 400) << body.substr(0, 200);
    EXPECT_LT(r->status, 500) << body.substr(0, 200) << " -> " << r->body;
    const json j = json::parse(r->body, nullptr, false);
    EXPECT_TRUE(j.is_object() && j.contains("error")) << r->body;
  };
  for (const auto& [path, base] : {std::pair{"/v1/chat/completions", chat}, std::pair{"/v1/completions", comp}}) {
    // Every field replaced by every odd value, and removed.
    for (const auto& [key, value] : base.items()) {
      for (const json& v : odd) {
        json b = base;
        b[key] = v;
        check(path, b.dump());
      }
      json b = base;
      b.erase(key);
      check(path, b.dump());
    }
    // Messages with odd parts.
    if (base.contains("messages"))
      for (const json& v : odd) {
        json b = base;
        b["messages"][1]["content"] = json::array({{{"type", "text"}, {"text", v}}});
        check(path, b.dump());
        b["messages"][1] = v;
        check(path, b.dump());
      }
      // Truncations and byte flips of the text.
      // Fewer under the sanitizers (CI's second stage), where each request costs ~10x.
#if defined(__SANITIZE_ADDRESS__)
    const size_t cut_step = 9;
    const int flips = 20;
#else
    const size_t cut_step = 3;
    const int flips = 60;
#endif
    const std::string text = base.dump();
    for (size_t cut = 0; cut < text.size(); cut += cut_step) check(path, text.substr(0, cut));
    for (int i = 0; i < flips; ++i) {
      std::string t = text;
      t[rng() % t.size()] = static_cast<char>(rng() % 256);
      check(path, t);
    }
    check(path, std::string(5000, '[') + std::string(5000, ']'));
    check(path, "{\"model\": \"\xff\xfe\", \"prompt\": \"\xc3\"}");
  }
  EXPECT_GT(ok, 10);
  EXPECT_GT(n, 100);
  EXPECT_EQ(c.Get("/health")->status, 200);
  EXPECT_EQ(s.terminate(20), 0) << s.log();
}
