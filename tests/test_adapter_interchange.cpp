// Adapter interchange (SPEC §10, issue 15): files written by PEFT and litgpt themselves
// (tests/reference/make_peer_adapter_fixtures.py, outputs in tests/fixtures/interchange) give, over
// the same base model, the logits those tools computed (within 1e-4) and their greedy tokens; the
// official release's .pth layout and a PEFT folder evaluate exactly as the same numbers in our
// format; every conversion round trip the target can hold is bit-exact; what a target cannot hold
// is a one-line error; `convert --adapter ... --to ...` does it from the command line.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "la/core/error.h"
#include "la/core/half.h"
#include "la/core/mapped_file.h"
#include "la/formats/pth.h"
#include "la/formats/safetensors.h"
#include "la/io/adapter_file.h"
#include "la/io/loader.h"
#include "la/model/inference.h"
#include "support/test_support.h"

namespace la {
namespace {

[[maybe_unused]] const bool kOneThread = test::run_library_on_one_thread();

std::string fixture(const std::string& rel) {
  return std::string(LA_SOURCE_DIR) + "/tests/fixtures/interchange/" + rel;
}

const nlohmann::json& reference() {
  static const nlohmann::json j = nlohmann::json::parse(read_file(fixture("reference.json")));
  return j;
}

// The two bases the peers' adapters were made for: PEFT's (4 heads over 2 key/value heads) and
// litgpt's (one key/value head).
const ModelWeights& peft_base() {
  static const std::unique_ptr<ModelWeights> w = load_model(fixture("peft_base"));
  return *w;
}
const ModelWeights& litgpt_base() {
  static const std::unique_ptr<ModelWeights> w = load_model(fixture("litgpt_base"));
  return *w;
}

// Our logits at every position of `tokens` (one prefill step), with the adapter or without.
std::vector<float> logits_of(const ModelWeights& w, const Adapter* a, const std::vector<int>& tokens) {
  const int64_t n = static_cast<int64_t>(tokens.size()), vocab = w.config.vocab_size;
  InferenceModel m(w, 64, 64);
  KVCache cache(w.config, 64);
  std::unique_ptr<AdapterPrompts> prompts;
  if (a) prompts = std::make_unique<AdapterPrompts>(w, *a);
  std::vector<float> out(static_cast<size_t>(n * vocab));
  std::vector<SeqStep> steps{{&cache, prompts.get(), tokens.data(), n, out.data(), true}};
  m.step(steps);
  return out;
}

// Greedy decoding through the single-sequence front (prefill, then one token per step over the cache).
std::vector<int> greedy_of(const ModelWeights& w, const Adapter& a, const std::vector<int>& prompt, size_t n) {
  InferenceModel m(w, 64, 64);
  m.set_adapter(&a);
  const float* logits = m.forward(prompt.data(), static_cast<int64_t>(prompt.size()));
  std::vector<int> out;
  for (size_t i = 0; i < n; ++i) {
    const int next = static_cast<int>(std::max_element(logits, logits + w.config.vocab_size) - logits);
    out.push_back(next);
    logits = m.forward(&next, 1);
  }
  return out;
}

// Every sequence of the peer's record: our logits with its adapter against its own.
void expect_peer_logits(const ModelWeights& w, const Adapter& a, const nlohmann::json& rec) {
  const double tol = reference()["tolerance"].get<double>();
  const auto& seqs = rec["sequences"];
  ASSERT_GT(seqs.size(), 0u);
  double worst = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    const std::vector<int> tokens = seqs[s].get<std::vector<int>>();
    const std::vector<float> ours = logits_of(w, &a, tokens);
    const auto& theirs = rec["logits"][s];
    ASSERT_EQ(theirs.size(), tokens.size());
    for (size_t t = 0; t < tokens.size(); ++t) {
      const std::vector<float> row = theirs[t].get<std::vector<float>>();
      ASSERT_EQ(static_cast<int64_t>(row.size()), w.config.vocab_size);
      for (size_t v = 0; v < row.size(); ++v)
        worst = std::max(worst, static_cast<double>(std::fabs(ours[t * row.size() + v] - row[v])));
    }
  }
  EXPECT_LT(worst, tol) << "largest |our logit - the peer's|";
  std::printf("largest |our logit - the peer's| over %zu sequences: %.3g\n", seqs.size(), worst);
  // The adapter matters far beyond the tolerance (the generator checked the peer's side too).
  const std::vector<int> first = seqs[0].get<std::vector<int>>();
  const std::vector<float> with = logits_of(w, &a, first), without = logits_of(w, nullptr, first);
  double effect = 0;
  for (size_t i = 0; i < with.size(); ++i)
    effect = std::max(effect, static_cast<double>(std::fabs(with[i] - without[i])));
  EXPECT_GT(effect, 100 * tol);
  const auto& g = rec["greedy"];
  EXPECT_EQ(greedy_of(w, a, g["prompt"].get<std::vector<int>>(), g["tokens"].size()),
            g["tokens"].get<std::vector<int>>());
}

TEST(PeerAdapters, PeftFolderGivesPeftsLogits) {
  AdapterSource src;
  const Adapter a = load_adapter(fixture("peft_adapter"), &peft_base().config, &src);
  EXPECT_EQ(src.format, AdapterFormat::Peft);
  EXPECT_EQ(a.len, 6);
  EXPECT_EQ(a.n_layers, 3);
  EXPECT_EQ(a.gate_mode, GateMode::Identity);
  expect_peer_logits(peft_base(), a, reference()["peft"]);
}

TEST(PeerAdapters, PeftWeightsFileIsReadThroughItsFolder) {
  const Adapter dir = load_adapter(fixture("peft_adapter"), &peft_base().config);
  const Adapter file = load_adapter(fixture("peft_adapter/adapter_model.safetensors"), &peft_base().config);
  EXPECT_EQ(file.params.values(), dir.params.values());
}

TEST(PeerAdapters, LitgptCheckpointGivesLitgptsLogits) {
  AdapterSource src;
  const Adapter a = load_adapter(fixture("litgpt_adapter.pth"), &litgpt_base().config, &src);
  EXPECT_EQ(src.format, AdapterFormat::Litgpt);
  EXPECT_EQ(a.len, reference()["litgpt"]["adapter_len"].get<int64_t>());
  EXPECT_EQ(a.first_layer(), reference()["litgpt"]["adapter_start_layer"].get<int64_t>());
  EXPECT_EQ(a.gate_mode, GateMode::Identity);
  expect_peer_logits(litgpt_base(), a, reference()["litgpt"]);
}

// litgpt's forward is not LLaMA-Adapter's with several key/value heads (the generator shows its
// prompt keys are other rows of its qkv matrix): such a use is refused rather than computed
// differently from litgpt.
TEST(PeerAdapters, LitgptOnSeveralKeyValueHeadsIsRefused) {
  EXPECT_FALSE(reference()["litgpt"]["prompt_keys_follow_paper"]["two_kv_heads"]["equal"].get<bool>());
  EXPECT_TRUE(reference()["litgpt"]["prompt_keys_follow_paper"]["one_kv_head"]["equal"].get<bool>());
  const std::string path = fixture("litgpt_adapter.pth");
  test::expect_error([&] { load_adapter(path, &peft_base().config); }, path, {"key/value head", "litgpt"});
  const Adapter a = load_adapter(path, &litgpt_base().config);
  test::TempDir dir;
  test::expect_error([&] { save_adapter_as(a, AdapterFormat::Litgpt, dir.file("x.pth"), &peft_base().config); },
                     dir.file("x.pth"), {"key/value head"});
}

// The official release's layout, as torch.save wrote it: no metadata, K = 10, a gate for every
// layer (the lower, untrained ones fp16, ignored), adapter_query saved as a transposed view.
TEST(OfficialAdapter, PthEvaluatesAsTheSameNumbersInOurFormat) {
  const ModelConfig& c = peft_base().config;
  AdapterSource src;
  const Adapter o = load_adapter(fixture("official_adapter.pth"), &c, &src);
  EXPECT_EQ(src.format, AdapterFormat::Official);
  const Adapter ours = load_adapter(fixture("official_as_ours.safetensors"), &c);
  EXPECT_EQ(o.len, 10);
  EXPECT_EQ(o.n_layers, 2);
  EXPECT_EQ(o.gate_mode, GateMode::Identity);
  EXPECT_EQ(o.params.values(), ours.params.values());
  const std::vector<int> tokens = reference()["peft"]["sequences"][0].get<std::vector<int>>();
  EXPECT_EQ(logits_of(peft_base(), &o, tokens), logits_of(peft_base(), &ours, tokens));
  // The file really holds a strided tensor and fp16 gates (what the reader had to handle).
  const auto pth = PthFile::open(fixture("official_adapter.pth"));
  EXPECT_FALSE(pth->find("adapter_query.weight")->contiguous());
  EXPECT_EQ(pth->find("layers.0.attention.gate")->dtype, DType::F16);
}

TEST(OfficialAdapter, PeftFolderEvaluatesAsTheSameNumbersInOurFormat) {
  const ModelWeights& w = peft_base();
  const Adapter p = load_adapter(fixture("peft_adapter"), &w.config);
  test::TempDir dir;
  save_adapter_as(p, AdapterFormat::Ours, dir.file("ours.safetensors"), &w.config);
  AdapterSource src;
  const Adapter ours = load_adapter(dir.file("ours.safetensors"), &w.config, &src);
  EXPECT_EQ(src.format, AdapterFormat::Ours);
  EXPECT_EQ(ours.gate_mode, GateMode::Identity);
  EXPECT_EQ(ours.n_heads, w.config.n_heads);
  const std::vector<int> tokens = reference()["peft"]["sequences"][2].get<std::vector<int>>();
  EXPECT_EQ(logits_of(w, &p, tokens), logits_of(w, &ours, tokens));
}

// The release itself is fp16 (users' conversions may be bf16): widened exactly, in .pth and in
// safetensors alike.
TEST(OfficialAdapter, HalfPrecisionFilesAreWidenedExactly) {
  const ModelConfig& c = peft_base().config;
  const int64_t rows = 2 * 10;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<uint16_t> q16(static_cast<size_t>(rows * c.dim)), g16(4);
  for (uint16_t& v : q16) v = f32_to_f16(nd(rng));
  for (uint16_t& v : g16) v = f32_to_bf16(nd(rng));
  std::vector<float> want_q, want_g;
  for (uint16_t v : q16) want_q.push_back(f16_to_f32(v));
  for (int64_t l = 0; l < 2; ++l)
    for (uint16_t v : g16) want_g.push_back(bf16_to_f32(v));
  test::TempDir dir;
  PthWriter p;
  SafetensorsWriter s;
  p.add("adapter_query.weight", DType::F16, {rows, c.dim}, q16.data());
  s.add("adapter_query.weight", SafeDType::F16, {rows, c.dim}, q16.data(), q16.size() * 2);
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string name = "layers." + std::to_string(l) + ".attention.gate";
    p.add(name, DType::BF16, {1, c.n_heads, 1, 1}, g16.data());
    s.add(name, SafeDType::BF16, {1, c.n_heads, 1, 1}, g16.data(), g16.size() * 2);
  }
  p.write(dir.file("half.pth"));
  s.write(dir.file("half.safetensors"));
  for (const std::string name : {"half.pth", "half.safetensors"}) {
    const Adapter a = load_adapter(dir.file(name), &c);
    EXPECT_EQ(test::to_vec(a.query()), want_q) << name;
    EXPECT_EQ(test::to_vec(a.gate()), want_g) << name;
  }
}

// ------------------------------------------------------------------------------------------------
// Round trips

Adapter random_adapter(const ModelConfig& c, int64_t len, int64_t layers, GateMode mode, bool per_head, uint64_t seed) {
  Adapter a = Adapter::create(c, len, layers, mode, seed);
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::normal_distribution<float> nd(0.0f, 0.7f);
  for (int64_t i = 0; i < layers; ++i) {
    const float shared = nd(rng);
    for (int64_t h = 0; h < c.n_heads; ++h)
      a.gate()[static_cast<size_t>(i * c.n_heads + h)] = per_head ? nd(rng) : shared;
  }
  return a;
}

// Writes `a` as `format` and reads it back against the model.
Adapter through(const Adapter& a, AdapterFormat format, const std::string& path, const ModelConfig& c) {
  save_adapter_as(a, format, path, &c);
  AdapterSource src;
  Adapter b = load_adapter(path, &c, &src);
  EXPECT_EQ(src.format, format) << path;
  return b;
}

TEST(RoundTrip, OursThroughEachFormatIsBitExact) {
  test::TempDir dir;
  const ModelConfig& gqa = peft_base().config;
  const ModelConfig& mqa = litgpt_base().config;
  const Adapter per_head = random_adapter(gqa, 10, 3, GateMode::Identity, true, 7);
  const Adapter scalar = random_adapter(gqa, 4, 2, GateMode::Identity, false, 8);
  const Adapter lit = random_adapter(mqa, 5, 3, GateMode::Identity, true, 9);
  struct Case {
    const Adapter& a;
    AdapterFormat f;
    std::string name;
    const ModelConfig& c;
  };
  for (const Case& k :
       {Case{per_head, AdapterFormat::Ours, "a.safetensors", gqa}, Case{per_head, AdapterFormat::Gguf, "a.gguf", gqa},
        Case{per_head, AdapterFormat::Official, "a.pth", gqa},
        Case{per_head, AdapterFormat::Official, "official.safetensors", gqa},
        Case{scalar, AdapterFormat::Peft, "peft", gqa}, Case{lit, AdapterFormat::Litgpt, "a.pth", mqa}}) {
    SCOPED_TRACE(k.name + " as " + adapter_format_name(k.f));
    const Adapter b = through(k.a, k.f, dir.file(k.name), k.c);
    EXPECT_EQ(b.len, k.a.len);
    EXPECT_EQ(b.n_layers, k.a.n_layers);
    EXPECT_EQ(b.n_heads, k.a.n_heads);
    EXPECT_EQ(b.gate_mode, GateMode::Identity);
    EXPECT_EQ(b.params.values(), k.a.params.values());
  }
}

// No other tool has a tanh gate: a tanh adapter is written as gamma = tanh(g) in gate mode
// identity, which evaluates to the very same logits.
TEST(RoundTrip, TanhGatesAreWrittenAsTheirGammas) {
  test::TempDir dir;
  const ModelWeights& w = peft_base();
  const Adapter t = random_adapter(w.config, 10, 2, GateMode::Tanh, false, 11);
  const std::vector<int> tokens = reference()["peft"]["sequences"][0].get<std::vector<int>>();
  const std::vector<float> expected = logits_of(w, &t, tokens);
  for (const auto& [f, name] : {std::pair{AdapterFormat::Peft, "peft"}, std::pair{AdapterFormat::Official, "o.pth"}}) {
    const Adapter b = through(t, f, dir.file(name), w.config);
    EXPECT_EQ(b.gate_mode, GateMode::Identity);
    for (size_t i = 0; i < b.gate().size(); ++i) EXPECT_EQ(b.gate()[i], std::tanh(t.gate()[i]));
    EXPECT_EQ(logits_of(w, &b, tokens), expected);
  }
}

std::map<std::string, std::vector<float>> pth_values(const std::string& path) {
  std::map<std::string, std::vector<float>> out;
  const auto f = PthFile::open(path);
  for (const PthTensor& t : f->tensors()) {
    std::vector<float> v(static_cast<size_t>(t.numel()));
    EXPECT_TRUE(t.contiguous() && t.dtype == DType::F32) << t.name;
    std::memcpy(v.data(), t.data, v.size() * sizeof(float));
    out[t.name] = v;
  }
  return out;
}

std::map<std::string, std::pair<std::vector<int64_t>, std::string>> safetensors_bytes(const std::string& path) {
  std::map<std::string, std::pair<std::vector<int64_t>, std::string>> out;
  const SafetensorsFile f = SafetensorsFile::open(path);
  for (const SafeTensor& t : f.tensors())
    out[t.name] = {t.shape, std::string(reinterpret_cast<const char*>(t.data), t.nbytes)};
  return out;
}

// The peers' own files, through ours and back: the same tensors, the same bits.
TEST(RoundTrip, PeerFilesThroughOursAreBitExact) {
  test::TempDir dir;
  {
    const ModelConfig& c = peft_base().config;
    const Adapter a = load_adapter(fixture("peft_adapter"), &c);
    const Adapter ours = through(a, AdapterFormat::Ours, dir.file("p.safetensors"), c);
    save_adapter_as(ours, AdapterFormat::Peft, dir.file("peft"), &c);
    EXPECT_EQ(safetensors_bytes(dir.file("peft/adapter_model.safetensors")),
              safetensors_bytes(fixture("peft_adapter/adapter_model.safetensors")));
    const auto cfg = nlohmann::json::parse(read_file(dir.file("peft/adapter_config.json")));
    const auto orig = nlohmann::json::parse(read_file(fixture("peft_adapter/adapter_config.json")));
    for (const char* key : {"peft_type", "adapter_len", "adapter_layers", "target_modules", "task_type"})
      EXPECT_EQ(cfg[key], orig[key]) << key;
  }
  {
    const ModelConfig& c = litgpt_base().config;
    const Adapter a = load_adapter(fixture("litgpt_adapter.pth"), &c);
    const Adapter ours = through(a, AdapterFormat::Ours, dir.file("l.safetensors"), c);
    save_adapter_as(ours, AdapterFormat::Litgpt, dir.file("l.pth"), &c);
    EXPECT_EQ(pth_values(dir.file("l.pth")), pth_values(fixture("litgpt_adapter.pth")));
  }
  {
    const ModelConfig& c = peft_base().config;
    const Adapter a = load_adapter(fixture("official_adapter.pth"), &c);
    const Adapter ours = through(a, AdapterFormat::Ours, dir.file("o.safetensors"), c);
    save_adapter_as(ours, AdapterFormat::Official, dir.file("o.pth"), &c);
    const auto back = PthFile::open(dir.file("o.pth"));
    const auto orig = PthFile::open(fixture("official_adapter.pth"));
    // The adapted part, value for value (the release's lower gates are not part of the adapter:
    // written back as zeros).
    EXPECT_EQ(load_adapter(dir.file("o.pth"), &c).params.values(), a.params.values());
    for (const std::string name : {"adapter_query.weight", "layers.0.attention.gate", "layers.3.attention.gate"})
      EXPECT_EQ(back->find(name)->shape, orig->find(name)->shape) << name;
  }
}

// ------------------------------------------------------------------------------------------------
// Refusals: one line, naming the file and why

TEST(Refusals, WhatATargetCannotHold) {
  test::TempDir dir;
  const ModelConfig& c = peft_base().config;
  const Adapter per_head = random_adapter(c, 10, 2, GateMode::Identity, true, 21);
  test::expect_error([&] { save_adapter_as(per_head, AdapterFormat::Peft, dir.file("p"), &c); }, dir.file("p"),
                     {"one gate per layer", "refusing to average"});
  EXPECT_FALSE(std::filesystem::exists(dir.file("p/adapter_model.safetensors")));
  const Adapter k4 = random_adapter(c, 4, 2, GateMode::Identity, false, 22);
  test::expect_error([&] { save_adapter_as(k4, AdapterFormat::Official, dir.file("o.pth"), &c); }, dir.file("o.pth"),
                     {"K=10", "K=4"});
  Adapter mm = k4;
  mm.add_visual(VisualSpec{48, 8, "2,4,6", 16, 32}, 3);
  for (const auto& [f, name] : {std::pair{AdapterFormat::Peft, "v"}, std::pair{AdapterFormat::Litgpt, "v.pth"}})
    test::expect_error([&] { save_adapter_as(mm, f, dir.file(name), nullptr); }, dir.file(name), {"visual"});
  // Another model's shape.
  const ModelConfig other = test::config(48, 64, 4, 4, 2, 64, 64);
  test::expect_error([&] { save_adapter_as(k4, AdapterFormat::Peft, dir.file("q"), &other); }, dir.file("q"),
                     {"does not match the model"});
  EXPECT_FALSE(std::filesystem::exists(dir.file("q")));
}

void write_peft(const std::string& dir, const nlohmann::json& cfg, int64_t len, int64_t dim,
                const std::vector<int64_t>& layers, const std::vector<int64_t>& gate_shape = {1}) {
  std::filesystem::create_directories(dir);
  if (!cfg.is_null()) test::write_text(dir + "/adapter_config.json", cfg.dump());
  SafetensorsWriter w;
  const std::vector<float> prompt(static_cast<size_t>(len * dim), 0.25f), gate(16, 0.5f);
  for (int64_t l : layers) {
    const std::string p = "base_model.model.model.layers." + std::to_string(l) + ".self_attn.";
    w.add_f32(p + "adaption_prompt", {1, len, dim}, prompt.data());
    w.add_f32(p + "adaption_gate", gate_shape, gate.data());
  }
  w.write(dir + "/adapter_model.safetensors");
}

TEST(Refusals, BadPeftFolders) {
  test::TempDir dir;
  const ModelConfig& c = peft_base().config;
  const nlohmann::json good = {
      {"peft_type", "ADAPTION_PROMPT"}, {"adapter_len", 3}, {"adapter_layers", 2}, {"target_modules", "self_attn"}};
  write_peft(dir.file("ok"), good, 3, c.dim, {2, 3});
  EXPECT_EQ(load_adapter(dir.file("ok"), &c).n_layers, 2);

  auto bad = [&](const std::string& name, nlohmann::json cfg, int64_t len, const std::vector<int64_t>& layers,
                 std::initializer_list<std::string> needles, const std::vector<int64_t>& gate_shape = {1}) {
    write_peft(dir.file(name), cfg, len, c.dim, layers, gate_shape);
    SCOPED_TRACE(name);
    test::expect_error([&] { load_adapter(dir.file(name), &c); }, dir.file(name), needles);
  };
  nlohmann::json j = good;
  j.erase("adapter_len");
  bad("no_len", j, 3, {2, 3}, {"adapter_len"});
  j = good;
  j.erase("adapter_layers");
  bad("no_layers", j, 3, {2, 3}, {"adapter_layers"});
  j = good;
  j["peft_type"] = "LORA";
  bad("lora", j, 3, {2, 3}, {"LORA", "ADAPTION_PROMPT"});
  j = good;
  j["target_modules"] = "attn";
  bad("gpt2", j, 3, {2, 3}, {"target_modules"});
  j = good;
  j["adapter_len"] = "3";
  bad("string_len", j, 3, {2, 3}, {"adapter_len"});
  bad("no_config", nullptr, 3, {2, 3}, {"adapter_config.json"});
  bad("len_mismatch", good, 4, {2, 3}, {"adapter_len 3"});
  bad("layers_mismatch", good, 3, {1, 2, 3}, {"adapter_layers=2"});
  bad("not_top", good, 3, {1, 2}, {"top adapted layer is 2"});
  bad("per_head_gate", good, 3, {2, 3}, {"expected [1]"}, {4});
  // A folder with unrelated weights, and a model of another width.
  std::filesystem::create_directories(dir.file("other"));
  test::write_text(dir.file("other/adapter_config.json"), good.dump());
  SafetensorsWriter w;
  const float x = 1;
  w.add_f32("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", {1}, &x);
  w.write(dir.file("other/adapter_model.safetensors"));
  test::expect_error([&] { load_adapter(dir.file("other"), &c); }, dir.file("other"), {"unexpected tensor"});
  const ModelConfig wide = test::config(48, 64, 4, 4, 2, 64, 64);
  test::expect_error([&] { load_adapter(dir.file("ok"), &wide); }, dir.file("ok"), {"does not match the model"});
}

TEST(Refusals, BadLitgptAndOfficialFiles) {
  test::TempDir dir;
  const ModelConfig& c = litgpt_base().config;
  auto write_lit = [&](const std::string& name, std::vector<int64_t> layers, std::vector<int64_t> gate_shape,
                       int64_t len) {
    static std::vector<float> values(4096, 0.5f);
    PthWriter w;
    w.set_root_key("model");
    for (int64_t l : layers) {
      w.add("transformer.h." + std::to_string(l) + ".attn.adapter_wte.weight", DType::F32, {len, c.dim}, values.data());
      w.add("transformer.h." + std::to_string(l) + ".attn.gating_factor", DType::F32, gate_shape, values.data());
    }
    w.write(dir.file(name));
    return dir.file(name);
  };
  EXPECT_EQ(load_adapter(write_lit("ok.pth", {2, 3}, {1, 1, 4, 1}, 5), &c).n_layers, 2);
  std::string p = write_lit("gate.pth", {2, 3}, {1, 2, 3, 1}, 5);
  test::expect_error([&] { load_adapter(p, &c); }, p, {"gating_factor", "[1, 2, 3, 1]"});
  p = write_lit("gap.pth", {1, 3}, {1, 1, 4, 1}, 5);
  test::expect_error([&] { load_adapter(p, &c); }, p, {"consecutive"});
  p = write_lit("low.pth", {1, 2}, {1, 1, 4, 1}, 5);
  test::expect_error([&] { load_adapter(p, &c); }, p, {"top adapted layer is 2"});
  p = write_lit("heads.pth", {2, 3}, {1, 1, 2, 1}, 5);
  test::expect_error([&] { load_adapter(p, &c); }, p, {"does not match the model"});
  // lit-gpt's older [1, H, 1, 1] gates date from its interleaved qkv, when its adapter was the
  // paper's for any key/value heads: read per head, also for PEFT's two-kv-head base.
  {
    std::vector<float> wte(static_cast<size_t>(5 * c.dim), 0.5f), g{0.1f, 0.2f, 0.3f, 0.4f};
    PthWriter w;
    w.set_root_key("model");
    for (int l : {2, 3}) {
      w.add("transformer.h." + std::to_string(l) + ".attn.adapter_wte.weight", DType::F32, {5, c.dim}, wte.data());
      w.add("transformer.h." + std::to_string(l) + ".attn.gating_factor", DType::F32, {1, 4, 1, 1}, g.data());
    }
    w.write(dir.file("legacy.pth"));
    const Adapter a = load_adapter(dir.file("legacy.pth"), &peft_base().config);
    EXPECT_EQ(test::to_vec(a.gate()), (std::vector<float>{0.1f, 0.2f, 0.3f, 0.4f, 0.1f, 0.2f, 0.3f, 0.4f}));
  }
  // The official layout: 25 rows are not layers of K = 10.
  {
    std::vector<float> q(static_cast<size_t>(25 * c.dim), 0.1f), g(4, 0.2f);
    PthWriter w;
    w.add("adapter_query.weight", DType::F32, {25, c.dim}, q.data());
    for (int l = 0; l < 4; ++l)
      w.add("layers." + std::to_string(l) + ".attention.gate", DType::F32, {1, 4, 1, 1}, g.data());
    w.write(dir.file("rows.pth"));
    test::expect_error([&] { load_adapter(dir.file("rows.pth"), &c); }, dir.file("rows.pth"),
                       {"not a multiple of the adapter length K=10"});
  }
}

// ------------------------------------------------------------------------------------------------
// The command line

TEST(ConvertCli, EveryDirection) {
  test::TempDir dir;
  auto run = [&](const std::string& args) {
    const test::CommandResult r = test::run_cli("convert " + args);
    EXPECT_EQ(r.exit_code, 0) << args << "\n" << r.err;
    return r;
  };
  const std::string peft_model = test::shell_quote(fixture("peft_base"));
  const std::string lit_model = test::shell_quote(fixture("litgpt_base"));
  // PEFT -> ours -> PEFT, litgpt -> ours -> litgpt, official -> ours -> official.
  run("--adapter " + test::shell_quote(fixture("peft_adapter")) + " --to safetensors --model " + peft_model + " -o " +
      dir.file("p.safetensors"));
  const test::CommandResult r = run("--adapter " + dir.file("p.safetensors") + " --to peft -o " + dir.file("peft"));
  EXPECT_NE(r.err.find("wrote"), std::string::npos);
  EXPECT_EQ(safetensors_bytes(dir.file("peft/adapter_model.safetensors")),
            safetensors_bytes(fixture("peft_adapter/adapter_model.safetensors")));
  run("--adapter " + test::shell_quote(fixture("litgpt_adapter.pth")) + " --model " + lit_model + " -o " +
      dir.file("l.gguf"));
  run("--adapter " + dir.file("l.gguf") + " --model " + lit_model + " --to litgpt -o " + dir.file("l.pth"));
  EXPECT_EQ(pth_values(dir.file("l.pth")), pth_values(fixture("litgpt_adapter.pth")));
  run("--adapter " + test::shell_quote(fixture("official_adapter.pth")) + " --model " + peft_model +
      " --to official -o " + dir.file("o.safetensors"));
  EXPECT_EQ(load_adapter(dir.file("o.safetensors"), &peft_base().config).params.values(),
            load_adapter(fixture("official_as_ours.safetensors"), &peft_base().config).params.values());

  auto refused = [&](const std::string& args, const std::string& needle) {
    const test::CommandResult e = test::run_cli("convert " + args);
    EXPECT_NE(e.exit_code, 0) << args;
    EXPECT_NE(e.err.find(needle), std::string::npos) << args << "\n" << e.err;
    EXPECT_EQ(std::count(e.err.begin(), e.err.end(), '\n'), 1) << e.err;
  };
  // litgpt without the model; a PEFT folder's one gate per layer without the model's heads; per-head
  // gates into PEFT; litgpt onto a model with two key/value heads.
  refused("--adapter " + test::shell_quote(fixture("litgpt_adapter.pth")) + " -o " + dir.file("x.safetensors"),
          "needs --model");
  refused("--adapter " + test::shell_quote(fixture("peft_adapter")) + " -o " + dir.file("x.safetensors"),
          "give --model");
  refused("--adapter " + test::shell_quote(fixture("official_adapter.pth")) + " --model " + peft_model +
              " --to peft -o " + dir.file("x"),
          "one gate per layer");
  refused("--adapter " + test::shell_quote(fixture("litgpt_adapter.pth")) + " --model " + peft_model + " -o " +
              dir.file("x.safetensors"),
          "key/value head");
  EXPECT_FALSE(std::filesystem::exists(dir.file("x.safetensors")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("x")));
}

}  // namespace
}  // namespace la
