#include "la/serve/engine.h"

#include <algorithm>
#include <optional>

#include "la/core/error.h"
#include "la/model/visual_proj.h"

namespace la::serve {

struct Engine::Slot {
  Slot(const ModelConfig& c, int64_t context) : cache(c, context), logits(static_cast<size_t>(c.vocab_size)) {}
  KVCache cache;
  // What the cache holds, for prefix reuse: the tokens fed so far and the adapter (id; 0 the
  // base) they were computed with. Not reusable after an image or an error.
  std::vector<int> fed;
  uint64_t owner = 0;
  bool reusable = false;
  uint64_t last_used = 0;
  // The request it serves (null: free) and its progress.
  std::shared_ptr<Request> req;
  const AdapterPrompts* prompts = nullptr;
  std::unique_ptr<AdapterPrompts> image_prompts;
  size_t prompt_fed = 0;  // prompt tokens in the cache
  int next = 0;           // the sampled token fed at the next step
  bool decoding = false;
  std::optional<Sampler> sampler;
  std::optional<StreamDecoder> dec;
  std::string text;    // the completion so far
  size_t emitted = 0;  // bytes of it passed to on_text
  int64_t generated = 0, cached = 0;
  Clock::time_point admitted, first_token;
  std::vector<float> logits;
};

Engine::Engine(const ModelWeights& w, const Tokenizer& tok, const EngineOptions& o)
    : w_(w), tok_(tok), o_(o), model_(w, o.context, o.prefill_chunk + o.parallel) {
  if (o_.parallel < 1 || o_.context < 2 || o_.max_queue < 0 || o_.prefill_chunk < 1)
    fail("serve: parallel, context, queue and chunk sizes must be positive");
  for (int64_t i = 0; i < o_.parallel; ++i) slots_.push_back(std::make_unique<Slot>(w.config, o_.context));
  thread_ = std::thread([this] { run(); });
}

Engine::~Engine() {
  if (thread_.joinable()) shutdown(std::chrono::milliseconds(0));
}

bool Engine::submit(const std::shared_ptr<Request>& r) {
  // Callers check these first (an empty prompt has no logits to start from; a longer one than
  // the context cannot be fed): here they are refused rather than failing a shared step.
  if (r->prompt.empty() || static_cast<int64_t>(r->prompt.size()) >= o_.context || r->max_tokens < 1) return false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Waiting means beyond the free slots: --max-queue 0 takes a request only when a slot is free.
    const int64_t free_slots = o_.parallel - active_;
    if (stopping_ || static_cast<int64_t>(queue_.size()) >= o_.max_queue + std::max<int64_t>(free_slots, 0))
      return false;
    r->submitted = Clock::now();
    queue_.push_back(r);
    ++users_[r->adapter.get()];
  }
  cv_.notify_all();
  return true;
}

int64_t Engine::queued() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(queue_.size());
}

int64_t Engine::active() const {
  std::lock_guard<std::mutex> lock(mu_);
  return active_;
}

bool Engine::in_use(const ServedAdapter* a) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = users_.find(a);
  return it != users_.end() && it->second > 0;
}

std::map<std::string, ModelMetrics> Engine::metrics() const {
  std::lock_guard<std::mutex> lock(mu_);
  return metrics_;
}

void Engine::shutdown(std::chrono::milliseconds grace) {
  std::unique_lock<std::mutex> lock(mu_);
  stopping_ = true;
  cv_.wait_for(lock, grace, [&] { return queue_.empty() && active_ == 0; });
  cancel_all_ = true;
  lock.unlock();
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

namespace {

// Length of the longest suffix of `text` that is a proper prefix of one of `stops`: text that may
// still turn into a stop string, held back from the stream.
size_t held_back(const std::string& text, const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const std::string& s : stops)
    if (!s.empty())
      for (size_t n = std::min(s.size() - 1, text.size()); n > hold; --n)
        if (text.compare(text.size() - n, n, s, 0, n) == 0) {
          hold = n;
          break;
        }
  return hold;
}

double seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

// Appends `piece` to the completion and passes on what can no longer become a stop string.
// Returns true at the first stop string: the text ends before it. (A stop string can only start
// at or after what was passed on: its beginnings were held back.)
bool Engine::emit(Slot& s, const std::string& piece, bool final) {
  Request& r = *s.req;
  s.text += piece;
  size_t cut = std::string::npos;
  for (const std::string& st : r.stop)
    if (const size_t p = s.text.find(st, s.emitted); p != std::string::npos) cut = std::min(cut, p);
  size_t upto = s.text.size();
  if (cut != std::string::npos) {
    s.text.resize(cut);
    upto = cut;
  } else if (!final) {
    upto -= held_back(s.text, r.stop);
  }
  if (upto > s.emitted) {
    if (r.on_text) r.on_text(s.text.substr(s.emitted, upto - s.emitted));
    s.emitted = upto;
  }
  return cut != std::string::npos;
}

// The text ends (an end token, the length limit): what the decoder still holds (an incomplete
// UTF-8 tail) is its last piece, as in generate.
void Engine::end(Slot& s, std::string reason) {
  if (emit(s, s.dec->flush(), true)) reason = "stop";
  finish(s, reason);
}

void Engine::finish(Slot& s, const std::string& reason, const std::string& error) {
  std::shared_ptr<Request> r = std::move(s.req);
  Completion c;
  c.finish_reason = reason;
  c.error = error;
  c.prompt_tokens = static_cast<int64_t>(r->prompt.size());
  c.cached_tokens = s.cached;
  c.completion_tokens = s.generated;
  const auto now = Clock::now();
  c.queue_s = seconds(r->submitted, s.admitted);
  c.first_token_s = s.generated > 0 ? seconds(r->submitted, s.first_token) : 0;
  c.total_s = seconds(r->submitted, now);
  s.reusable = reason != "error" && !s.image_prompts;
  if (!s.reusable) s.fed.clear();
  s.image_prompts.reset();
  s.sampler.reset();
  s.dec.reset();
  s.last_used = ++tick_;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ModelMetrics& m = metrics_[r->model_name];
    ++m.requests;
    if (reason == "cancelled") ++m.cancelled;
    if (reason == "error") ++m.errors;
    m.prompt_tokens += c.prompt_tokens;
    m.cached_tokens += c.cached_tokens;
    m.generated_tokens += c.completion_tokens;
    m.queue_s += c.queue_s;
    m.first_token_s += c.first_token_s;
    m.busy_s += seconds(s.admitted, now);
    --active_;
    if (--users_[r->adapter.get()] == 0) users_.erase(r->adapter.get());
  }
  cv_.notify_all();  // shutdown() waits for the last one
  if (r->on_done) r->on_done(c);
}

// Moves waiting requests into free slots: each to the free slot whose cache shares the longest
// prefix with its prompt under the same adapter (the least recently used among equals).
void Engine::admit() {
  for (;;) {
    std::shared_ptr<Request> r;
    Slot* best = nullptr;
    size_t best_common = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (queue_.empty()) return;
      r = queue_.front();
      const bool dropped = r->cancel.load() || Clock::now() > r->deadline;
      if (!dropped) {
        const uint64_t owner = r->adapter ? r->adapter->id : 0;
        for (auto& sp : slots_) {
          Slot& s = *sp;
          if (s.req) continue;
          size_t common = 0;
          if (s.reusable && s.owner == owner && r->image_features.empty())
            while (common < s.fed.size() && common < r->prompt.size() && s.fed[common] == r->prompt[common]) ++common;
          if (!best || common > best_common || (common == best_common && s.last_used < best->last_used)) {
            best = &s;
            best_common = common;
          }
        }
        if (!best) return;  // every slot busy
      }
      queue_.pop_front();
      if (dropped)
        --users_[r->adapter.get()];
      else
        ++active_;
    }
    if (!best) {  // cancelled or out of time while it waited
      Completion c;
      c.prompt_tokens = static_cast<int64_t>(r->prompt.size());
      c.queue_s = c.total_s = seconds(r->submitted, Clock::now());
      c.finish_reason = r->cancel.load() ? "cancelled" : "error";
      if (!r->cancel.load()) c.error = "timed out waiting for a free slot";
      std::lock_guard<std::mutex> lock(mu_);
      ModelMetrics& m = metrics_[r->model_name];
      ++m.requests;
      ++(r->cancel.load() ? m.cancelled : m.errors);
      if (r->on_done) r->on_done(c);
      continue;
    }
    Slot& s = *best;
    s.req = r;
    s.admitted = Clock::now();
    // At least the prompt's last token is fed again: its logits start the completion.
    const size_t reuse = std::min(best_common, r->prompt.size() - 1);
    s.fed.resize(reuse);
    s.cache.set_pos(static_cast<int64_t>(reuse));
    s.cached = static_cast<int64_t>(reuse);
    s.owner = r->adapter ? r->adapter->id : 0;
    s.reusable = false;  // until it finishes
    s.prompt_fed = reuse;
    s.decoding = false;
    s.generated = 0;
    s.text.clear();
    s.emitted = 0;
    s.prompts = r->adapter ? r->adapter->prompts.get() : nullptr;
    if (!r->image_features.empty()) {
      std::vector<float> ip(static_cast<size_t>(w_.config.dim));
      visual_proj_forward(r->adapter->adapter, r->image_features.data(), ip.data(), nullptr);
      s.image_prompts = std::make_unique<AdapterPrompts>(*r->adapter->prompts, ip.data());
      s.prompts = s.image_prompts.get();
    }
    s.sampler.emplace(r->sampling);
    s.dec.emplace(tok_);
    for (const int id : r->prompt) s.dec->push(id);  // the decoder's leading-space state follows the prompt
  }
}

void Engine::run() {
  const int64_t V = w_.config.vocab_size;
  std::vector<SeqStep> steps;
  std::vector<Slot*> who;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return cancel_all_ || !queue_.empty() || active_ > 0; });
      if (cancel_all_) break;
    }
    admit();
    const auto now = Clock::now();
    for (auto& sp : slots_)
      if (sp->req && sp->req->cancel.load())
        finish(*sp, "cancelled");
      else if (sp->req && now > sp->req->deadline)
        end(*sp, "length");  // out of time: the text so far
    // Decoding rows first (one each, grouped into shared products), then prompt chunks while the
    // step has rows left.
    steps.clear();
    who.clear();
    int64_t budget = model_.max_rows();
    for (auto& sp : slots_)
      if (sp->req && sp->decoding) {
        steps.push_back({&sp->cache, sp->prompts, &sp->next, 1, sp->logits.data(), false});
        who.push_back(sp.get());
        --budget;
      }
    for (auto& sp : slots_) {
      Slot& s = *sp;
      if (!s.req || s.decoding) continue;
      const int64_t n = std::min<int64_t>(o_.prefill_chunk, static_cast<int64_t>(s.req->prompt.size() - s.prompt_fed));
      if (n > budget) continue;
      const bool last = s.prompt_fed + static_cast<size_t>(n) == s.req->prompt.size();
      steps.push_back(
          {&s.cache, s.prompts, s.req->prompt.data() + s.prompt_fed, n, last ? s.logits.data() : nullptr, false});
      who.push_back(&s);
      budget -= n;
    }
    if (steps.empty()) continue;
    try {
      model_.step(steps);
    } catch (const std::exception& e) {
      for (Slot* s : who) finish(*s, "error", e.what());
      continue;
    }
    for (size_t i = 0; i < who.size(); ++i) {
      Slot& s = *who[i];
      Request& r = *s.req;
      if (!s.decoding) {
        s.fed.insert(s.fed.end(), steps[i].tokens, steps[i].tokens + steps[i].n);
        s.prompt_fed += static_cast<size_t>(steps[i].n);
        if (s.prompt_fed < r.prompt.size()) continue;
        s.decoding = true;
      } else {
        s.fed.push_back(s.next);
      }
      const int t = s.sampler->sample(s.logits.data(), V);
      if (s.generated == 0) s.first_token = Clock::now();
      if (!r.ignore_eos && std::find(r.end_ids.begin(), r.end_ids.end(), t) != r.end_ids.end()) {
        end(s, "stop");
        continue;
      }
      ++s.generated;
      if (emit(s, s.dec->push(t), false)) {
        finish(s, "stop");
        continue;
      }
      if (s.generated >= r.max_tokens || s.cache.pos() >= s.cache.context()) {
        end(s, "length");
        continue;
      }
      s.next = t;
    }
  }
  // Shutting down: whatever is left ends as cancelled.
  for (auto& sp : slots_)
    if (sp->req) finish(*sp, "cancelled");
  std::deque<std::shared_ptr<Request>> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    left.swap(queue_);
  }
  for (auto& r : left) {
    Completion c;
    c.finish_reason = "cancelled";
    c.prompt_tokens = static_cast<int64_t>(r->prompt.size());
    if (r->on_done) r->on_done(c);
  }
}

}  // namespace la::serve
