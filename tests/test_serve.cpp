// The serving engine (SPEC §9) on the real stories260K: greedy output is the same text for a
// request alone, in a full batch of mixed adapters, in any slot, with a reused prompt prefix,
// and equal to generate(); stop strings, length limits, cancellation, the bounded queue and
// adapters unloaded while in use.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <random>
#include <thread>

#include "la/io/adapter_file.h"
#include "la/io/loader.h"
#include "la/sample/generate.h"
#include "la/serve/engine.h"
#include "support/test_support.h"

using namespace la;
using namespace la::serve;

namespace {

[[maybe_unused]] const bool kOneThread = la::test::run_library_on_one_thread();

struct World {
  std::unique_ptr<ModelWeights> w;
  std::unique_ptr<Tokenizer> tok;
  test::TempDir dir;
  std::unique_ptr<AdapterRegistry> reg;
};

World& world() {
  static World* s = [] {
    auto* x = new World;
    x->w = load_model(test::shared_path("llama2c/stories260K.bin"));
    x->tok = load_tokenizer(test::shared_path("llama2c/tok512.bin"));
    x->reg = std::make_unique<AdapterRegistry>(*x->w);
    for (int i = 0; i < 3; ++i) {
      // Random prompts and gates well away from zero: each adapter changes the text.
      Adapter a = Adapter::create(x->w->config, 6 + i, 3 + i % 3, GateMode::Tanh, 100 + i);
      std::mt19937 rng(static_cast<unsigned>(7 + i));
      std::normal_distribution<float> nd(0.0f, 1.5f);
      for (float& g : a.gate()) g = nd(rng);
      const std::string path = x->dir.file("a" + std::to_string(i) + ".safetensors");
      save_adapter(a, path);
      x->reg->load("a" + std::to_string(i), path);
    }
    return x;
  }();
  return *s;
}

#define REQUIRE_MODEL() REQUIRE_SHARED_DATA("llama2c/stories260K.bin")

struct Outcome {
  std::string text;
  Completion done;
  std::vector<std::string> pieces;
};

std::shared_ptr<Request> make_request(const std::string& prompt, const std::string& adapter, int64_t max_tokens,
                                      std::shared_ptr<std::promise<Outcome>> out) {
  World& s = world();
  auto r = std::make_shared<Request>();
  r->adapter = adapter.empty() ? nullptr : s.reg->find(adapter);
  r->model_name = adapter.empty() ? "base" : adapter;
  r->prompt = s.tok->encode(prompt, true, false);
  r->sampling.temperature = 0;
  r->max_tokens = max_tokens;
  r->end_ids = {s.tok->eos_id()};
  auto acc = std::make_shared<Outcome>();
  r->on_text = [acc](const std::string& p) {
    acc->text += p;
    acc->pieces.push_back(p);
  };
  r->on_done = [acc, out](const Completion& c) {
    acc->done = c;
    out->set_value(*acc);
  };
  return r;
}

Outcome run_one(Engine& e, const std::string& prompt, const std::string& adapter, int64_t max_tokens) {
  auto p = std::make_shared<std::promise<Outcome>>();
  auto f = p->get_future();
  EXPECT_TRUE(e.submit(make_request(prompt, adapter, max_tokens, p)));
  return f.get();
}

// generate() with the same adapter and greedy settings: what `llama-adapter generate` prints.
std::string generate_alone(const std::string& prompt, const std::string& adapter, int64_t max_tokens) {
  World& s = world();
  InferenceModel m(*s.w, 512);
  if (!adapter.empty()) m.set_adapter(&s.reg->find(adapter)->adapter);
  Sampler sampler(SamplerOptions{0.0f, 1.0f, 0, 1});
  return generate(m, *s.tok, s.tok->encode(prompt, true, false), sampler, max_tokens, nullptr);
}

const std::vector<std::string> kPrompts = {"Once upon a time",
                                           "Lily and Ben went to the park. They saw a big",
                                           "The cat",
                                           "Tom had a red ball.",
                                           "One day, a little bird",
                                           "Sue",
                                           "There was a tree in the garden. It was very tall and",
                                           "Mom said"};
const std::vector<std::string> kAdapters = {"a0", "a1", "", "a2", "a0", "a1", "a2", ""};

}  // namespace

TEST(ServeEngine, GreedyTextIsBatchInvariantAndEqualsGenerate) {
  REQUIRE_MODEL();
  std::vector<std::string> alone(kPrompts.size());
  {
    Engine one(*world().w, *world().tok, EngineOptions{1, 512, 64, 256});
    for (size_t i = 0; i < kPrompts.size(); ++i) {
      const Outcome o = run_one(one, kPrompts[i], kAdapters[i], 60);
      alone[i] = o.text;
      EXPECT_EQ(o.text, generate_alone(kPrompts[i], kAdapters[i], 60)) << i;
      EXPECT_FALSE(o.text.empty());
    }
  }
  // Not vacuous: the adapters change the text.
  EXPECT_NE(alone[0], generate_alone(kPrompts[0], "", 60));
  EXPECT_NE(generate_alone(kPrompts[0], "a1", 60), generate_alone(kPrompts[0], "a0", 60));
  // All eight together, submitted in two orders (other slots, other neighbours), with staggered
  // arrivals so prompts are prefilled beside running decodes.
  for (int order = 0; order < 2; ++order) {
    Engine e(*world().w, *world().tok, EngineOptions{8, 512, 64, 256});
    std::vector<std::future<Outcome>> fs(kPrompts.size());
    for (size_t k = 0; k < kPrompts.size(); ++k) {
      const size_t i = order == 0 ? k : kPrompts.size() - 1 - k;
      auto p = std::make_shared<std::promise<Outcome>>();
      fs[i] = p->get_future();
      ASSERT_TRUE(e.submit(make_request(kPrompts[i], kAdapters[i], 60, p)));
      if (k % 3 == 1) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    for (size_t i = 0; i < kPrompts.size(); ++i) {
      const Outcome o = fs[i].get();
      EXPECT_EQ(o.text, alone[i]) << "prompt " << i << " order " << order;
      std::string joined;
      for (const auto& p : o.pieces) joined += p;
      EXPECT_EQ(joined, o.text);
    }
  }
}

TEST(ServeEngine, PrefixReuseGivesTheSameText) {
  REQUIRE_MODEL();
  Engine e(*world().w, *world().tok, EngineOptions{2, 512, 64, 256});
  const std::string p = kPrompts[6];
  const Outcome first = run_one(e, p, "a1", 40);
  EXPECT_EQ(first.done.cached_tokens, 0);
  const Outcome again = run_one(e, p, "a1", 40);
  EXPECT_EQ(again.text, first.text);
  EXPECT_EQ(again.done.cached_tokens, static_cast<int64_t>(world().tok->encode(p, true, false).size()) - 1);
  // A longer prompt that starts with the first one and its reply reuses both.
  const std::string longer = p + first.text + " Then";
  const Outcome cont = run_one(e, longer, "a1", 30);
  EXPECT_GT(cont.done.cached_tokens, again.done.cached_tokens);
  EXPECT_EQ(cont.text, generate_alone(longer, "a1", 30));
  // Another adapter never reuses a1's keys/values.
  const Outcome other = run_one(e, p, "a2", 40);
  EXPECT_EQ(other.done.cached_tokens, 0);
  EXPECT_EQ(other.text, generate_alone(p, "a2", 40));
}

TEST(ServeEngine, StopStringsLengthAndEnd) {
  REQUIRE_MODEL();
  Engine e(*world().w, *world().tok, EngineOptions{2, 512, 64, 256});
  const std::string full = generate_alone(kPrompts[0], "", 80);
  ASSERT_GT(full.size(), 20u);
  // Stop at a word in the middle of the text: the reply ends just before it.
  const size_t at = full.find(' ', 10);
  ASSERT_NE(at, std::string::npos);
  const std::string stop = full.substr(at, 4);
  auto p = std::make_shared<std::promise<Outcome>>();
  auto f = p->get_future();
  auto r = make_request(kPrompts[0], "", 80, p);
  r->stop = {"zzzz-never", stop};
  ASSERT_TRUE(e.submit(r));
  const Outcome o = f.get();
  EXPECT_EQ(o.done.finish_reason, "stop");
  EXPECT_EQ(o.text, full.substr(0, full.find(stop)));
  for (const auto& piece : o.pieces) EXPECT_EQ(piece.find(stop), std::string::npos);
  // The length limit.
  const Outcome l = run_one(e, kPrompts[0], "", 5);
  EXPECT_EQ(l.done.finish_reason, "length");
  EXPECT_EQ(l.done.completion_tokens, 5);
}

TEST(ServeEngine, CancelQueueAndUnload) {
  REQUIRE_MODEL();
  // A long context, so that the first request is still running (seconds) whatever the load.
  Engine e(*world().w, *world().tok, EngineOptions{1, 4096, 1, 256});
  // One slot, a queue of one: a long request runs, one waits, the third is refused.
  auto p1 = std::make_shared<std::promise<Outcome>>();
  auto p2 = std::make_shared<std::promise<Outcome>>();
  auto f1 = p1->get_future();
  auto f2 = p2->get_future();
  auto r1 = make_request(kPrompts[1], "a0", 4000, p1);
  r1->ignore_eos = true;
  ASSERT_TRUE(e.submit(r1));
  while (e.active() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_TRUE(e.submit(make_request(kPrompts[2], "", 10, p2)));
  auto p3 = std::make_shared<std::promise<Outcome>>();
  EXPECT_FALSE(e.submit(make_request(kPrompts[3], "", 10, p3)));
  EXPECT_TRUE(e.in_use(r1->adapter.get()));
  r1->cancel = true;
  const Outcome o1 = f1.get();
  EXPECT_EQ(o1.done.finish_reason, "cancelled");
  EXPECT_LT(o1.done.completion_tokens, 4000);
  EXPECT_EQ(f2.get().done.finish_reason != "", true);
  EXPECT_FALSE(e.in_use(r1->adapter.get()));
  const auto m = e.metrics();
  EXPECT_EQ(m.at("a0").cancelled, 1);
  EXPECT_EQ(m.at("base").requests, 1);
}

TEST(ServeEngine, ShutdownCancelsWhatIsLeft) {
  REQUIRE_MODEL();
  Engine e(*world().w, *world().tok, EngineOptions{1, 512, 4, 256});
  std::vector<std::future<Outcome>> fs;
  for (int i = 0; i < 3; ++i) {
    auto p = std::make_shared<std::promise<Outcome>>();
    fs.push_back(p->get_future());
    auto r = make_request(kPrompts[static_cast<size_t>(i)], "", 400, p);
    r->ignore_eos = true;
    ASSERT_TRUE(e.submit(r));
  }
  // Requests that cannot run are refused up front, not failed inside a shared step.
  auto pe = std::make_shared<std::promise<Outcome>>();
  auto empty = make_request("", "", 4, pe);
  empty->prompt.clear();
  EXPECT_FALSE(e.submit(empty));
  auto full = make_request("", "", 4, pe);
  full->prompt.assign(512, 5);
  EXPECT_FALSE(e.submit(full));
  e.shutdown(std::chrono::milliseconds(20));
  for (auto& f : fs) EXPECT_EQ(f.get().done.finish_reason, "cancelled");
  auto p = std::make_shared<std::promise<Outcome>>();
  EXPECT_FALSE(e.submit(make_request("x", "", 1, p)));
}

// A multi-modal adapter's image (SPEC §8) per request: the same text as generate() with
// set_image, other text than without the image, and a neighbour without an image unaffected.
TEST(ServeEngine, ImagesGoThroughTheRequestsOwnPrompts) {
  REQUIRE_MODEL();
  World& s = world();
  Adapter a = Adapter::create(s.w->config, 5, 3, GateMode::Tanh, 9);
  a.add_visual({48, 8, "2,4,6", 16, 32}, 5);
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (float& g : a.gate()) g = 1.5f * nd(rng);
  for (float& v : a.params["visual_proj.fc2.weight"]) v = nd(rng);
  save_adapter(a, s.dir.file("mm.safetensors"));
  auto mm = s.reg->load("mm", s.dir.file("mm.safetensors"));
  std::vector<float> features(48);
  for (float& f : features) f = nd(rng);
  InferenceModel m(*s.w, 512);
  m.set_adapter(&mm->adapter);
  m.set_image(features.data());
  Sampler sampler(SamplerOptions{0.0f, 1.0f, 0, 1});
  const std::string want = generate(m, *s.tok, s.tok->encode(kPrompts[0], true, false), sampler, 40, nullptr);

  Engine e(*s.w, *s.tok, EngineOptions{2, 512, 64, 256});
  auto p1 = std::make_shared<std::promise<Outcome>>();
  auto p2 = std::make_shared<std::promise<Outcome>>();
  auto f1 = p1->get_future();
  auto f2 = p2->get_future();
  auto with_image = make_request(kPrompts[0], "mm", 40, p1);
  with_image->image_features = features;
  ASSERT_TRUE(e.submit(with_image));
  ASSERT_TRUE(e.submit(make_request(kPrompts[0], "mm", 40, p2)));
  const Outcome img = f1.get(), plain = f2.get();
  EXPECT_EQ(img.text, want);
  EXPECT_NE(img.text, plain.text);
  EXPECT_EQ(plain.text, generate_alone(kPrompts[0], "mm", 40));
  // A cache that held an image's keys/values is never reused.
  const Outcome again = run_one(e, kPrompts[0], "mm", 40);
  EXPECT_EQ(again.text, plain.text);
  s.reg->remove("mm");
}
