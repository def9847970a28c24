// The serving engine (SPEC §9): continuous batching of every active request in one forward
// step, whatever adapter each uses. A fixed number of slots (--parallel), each with its own KV
// cache; one thread runs the steps. A step feeds every decoding slot its last token and, while
// rows remain in the step's budget, the next chunk of each new request's prompt, so a new
// request joins the running batch at the next step. Each row attends to its own adapter's
// prompt keys/values (projected once per adapter, shared by reference), so a mix of adapters
// costs what the base model alone costs.
//
// Batch invariance: the step groups its products so that a request's rows go through the same
// kernels whatever shares the step (model/batch.h, Batch::product_rows); a prompt is fed in the
// chunks `generate` uses; sampling uses the request's own seeded RNG. So greedy output is the
// same text alone, in any slot, beside any mix of adapters, and equal to `generate`.
//
// Prefix reuse: a slot keeps the tokens whose keys/values its cache holds and the adapter they
// were computed with; a new request goes to the free slot sharing the longest prefix with the
// same adapter, and only the rest of its prompt is fed.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "la/model/inference.h"
#include "la/sample/sampler.h"
#include "la/serve/adapters.h"
#include "la/tokenizer/tokenizer.h"

namespace la::serve {

using Clock = std::chrono::steady_clock;

struct Completion {
  std::string finish_reason;  // "stop", "length", "cancelled", "error"
  std::string error;          // with "error"
  int64_t prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
  double queue_s = 0, first_token_s = 0, total_s = 0;  // from submission
};

struct Request {
  std::shared_ptr<const ServedAdapter> adapter;  // null: the base model
  std::string model_name;                        // for metrics
  std::vector<int> prompt;                       // BOS first, as generate feeds it
  std::vector<float> image_features;             // a multi-modal adapter's image (SPEC §8), or empty
  SamplerOptions sampling;
  int64_t max_tokens = 16;
  std::vector<std::string> stop;  // the text ends before the first of these
  std::vector<int> end_ids;       // tokens that end the text (EOS, end-of-turn)
  bool ignore_eos = false;        // benchmark runs: generate max_tokens whatever comes
  // Called on the engine thread: each newly completed piece of text (never a piece of a stop
  // string), then once at the end.
  std::function<void(const std::string&)> on_text;
  std::function<void(const Completion&)> on_done;
  std::atomic<bool> cancel{false};  // the client went away
  Clock::time_point submitted, deadline = Clock::time_point::max();
};

struct EngineOptions {
  int64_t parallel = 4;         // slots: requests decoded together
  int64_t context = 2048;       // tokens per slot (prompt + generated)
  int64_t max_queue = 64;       // requests waiting for a slot before submit() refuses
  int64_t prefill_chunk = 256;  // prompt rows per step and sequence (generate's chunk)
};

// Counters per model name (the base or an adapter), for /metrics.
struct ModelMetrics {
  int64_t requests = 0, cancelled = 0, errors = 0, prompt_tokens = 0, cached_tokens = 0, generated_tokens = 0;
  double queue_s = 0, first_token_s = 0, busy_s = 0;  // sums over finished requests
};

class Engine {
 public:
  Engine(const ModelWeights& w, const Tokenizer& tok, const EngineOptions& o);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request; false when the queue is full, the engine is stopping, or the request cannot
  // run (an empty prompt, one that fills the context, max_tokens < 1); nothing is called back then.
  bool submit(const std::shared_ptr<Request>& r);
  // Stops taking requests and waits up to `grace` for those in flight; the rest finish as
  // "cancelled". The engine thread has ended on return.
  void shutdown(std::chrono::milliseconds grace);

  int64_t queued() const;
  int64_t active() const;
  std::map<std::string, ModelMetrics> metrics() const;
  const EngineOptions& options() const { return o_; }
  int64_t context() const { return o_.context; }
  // Busy until every request naming this adapter has finished.
  bool in_use(const ServedAdapter* a) const;

 private:
  struct Slot;
  void run();
  void admit();
  bool emit(Slot& s, const std::string& piece, bool final);
  void end(Slot& s, std::string reason);
  void finish(Slot& s, const std::string& reason, const std::string& error = "");

  const ModelWeights& w_;
  const Tokenizer& tok_;
  EngineOptions o_;
  InferenceModel model_;
  std::vector<std::unique_ptr<Slot>> slots_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Request>> queue_;
  std::map<std::string, ModelMetrics> metrics_;
  std::map<const ServedAdapter*, int64_t> users_;  // requests queued or active per adapter
  bool stopping_ = false, cancel_all_ = false, done_ = false;
  int64_t active_ = 0;
  uint64_t tick_ = 0;
  std::thread thread_;
};

}  // namespace la::serve
