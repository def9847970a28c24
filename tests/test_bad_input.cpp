// Damaged and wrong input files: every one must give a one-line la::Error naming the file and
// what is wrong (library), and from the CLI an exit status of 1 with a single "error: ..." line
// on stderr — never a crash, a signal or a hang. Most cases are built here from scratch (a tiny
// random HF model, hand-made safetensors bytes); the .bin cases use stories260K when present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "la/core/error.h"
#include "la/formats/safetensors.h"
#include "la/io/loader.h"
#include "la/tokenizer/tokenizer.h"
#include "support/test_support.h"

namespace {

using la::test::expect_error;
using la::test::run_cli;
using la::test::shell_quote;
using la::test::TempDir;
using la::test::write_text;

constexpr const char* kStories = "llama2c/stories260K.bin";

std::string data(const std::string& rel) {
  return la::test::shared_path(rel);
}

// The CLI must fail cleanly: exit 1 (not a signal: run_cli reports those as 128+N), stderr one
// line "error: ..." naming `path`, nothing on stdout.
void expect_cli_error(const std::string& args, const std::string& path, std::initializer_list<std::string> needles) {
  SCOPED_TRACE(args);
  const auto r = run_cli(args);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(r.err.starts_with("error: ")) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_TRUE(r.err.ends_with("\n")) << r.err;
  EXPECT_NE(r.err.find(path), std::string::npos) << r.err;
  for (const auto& n : needles) EXPECT_NE(r.err.find(n), std::string::npos) << "no '" << n << "' in: " << r.err;
  EXPECT_EQ(r.out, "");
}

std::string model_arg(const std::string& path) {
  return " --model " + shell_quote(path);
}

// ---- a tiny random Hugging Face model ------------------------------------------------------------

struct TinyShape {
  int64_t dim = 16, hidden = 24, layers = 2, heads = 4, kv_heads = 2, vocab = 32, max_pos = 64;
  int64_t kv_dim() const { return kv_heads * (dim / heads); }
};

nlohmann::json tiny_config(const TinyShape& s) {
  return {{"model_type", "llama"},          {"hidden_size", s.dim},
          {"intermediate_size", s.hidden},  {"num_hidden_layers", s.layers},
          {"num_attention_heads", s.heads}, {"num_key_value_heads", s.kv_heads},
          {"vocab_size", s.vocab},          {"max_position_embeddings", s.max_pos},
          {"rms_norm_eps", 1e-5},           {"rope_theta", 10000.0},
          {"tie_word_embeddings", true}};
}

// name -> shape of every tensor of the tiny model, in file order.
std::vector<std::pair<std::string, std::vector<int64_t>>> tiny_tensors(const TinyShape& s) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> t;
  t.push_back({"model.embed_tokens.weight", {s.vocab, s.dim}});
  for (int64_t i = 0; i < s.layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    t.push_back({p + "input_layernorm.weight", {s.dim}});
    t.push_back({p + "self_attn.q_proj.weight", {s.dim, s.dim}});
    t.push_back({p + "self_attn.k_proj.weight", {s.kv_dim(), s.dim}});
    t.push_back({p + "self_attn.v_proj.weight", {s.kv_dim(), s.dim}});
    t.push_back({p + "self_attn.o_proj.weight", {s.dim, s.dim}});
    t.push_back({p + "post_attention_layernorm.weight", {s.dim}});
    t.push_back({p + "mlp.gate_proj.weight", {s.hidden, s.dim}});
    t.push_back({p + "mlp.down_proj.weight", {s.dim, s.hidden}});
    t.push_back({p + "mlp.up_proj.weight", {s.hidden, s.dim}});
  }
  t.push_back({"model.norm.weight", {s.dim}});
  return t;
}

// Writes the tiny model into `dir`. `edit` may change a tensor's shape or drop it (return false).
using TensorEdit = std::function<bool(const std::string& name, std::vector<int64_t>& shape)>;
void write_tiny_hf(const std::string& dir, const TensorEdit& edit = nullptr) {
  std::filesystem::create_directories(dir);
  const TinyShape s;
  write_text(dir + "/config.json", tiny_config(s).dump());
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 0.1f);
  la::SafetensorsWriter wr;
  for (auto [name, shape] : tiny_tensors(s)) {
    if (edit && !edit(name, shape)) continue;
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = nd(rng);
    wr.add_f32(name, shape, v.data());
  }
  write_text(dir + "/model.safetensors", wr.serialize());
}

// ---- hand-made safetensors -------------------------------------------------------------------------

// 8-byte little-endian length (`declared`, default: the header's real length), header, data.
std::string safetensors_bytes(const std::string& header, const std::string& payload,
                              std::optional<uint64_t> declared = std::nullopt) {
  std::string out(8, '\0');
  const uint64_t n = declared ? *declared : header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + payload;
}

class BadInput : public ::testing::Test {
 protected:
  TempDir tmp_;
  // Writes `bytes` to a file in the temp dir and returns its path.
  std::string file(const std::string& name, const std::string& bytes) {
    const std::string p = tmp_.file(name);
    write_text(p, bytes);
    return p;
  }
};

// ================================================================================================
// llama2.c .bin

TEST_F(BadInput, MissingFile) {
  const std::string p = tmp_.file("does_not_exist.bin");
  expect_error([&] { la::load_model(p); }, p, {"no such file"});
  expect_error([&] { la::load_llama2c(p); }, p, {"cannot open"});
  expect_cli_error("info" + model_arg(p), p, {});
  expect_cli_error("generate" + model_arg(p) + " --prompt hi", p, {});
}

TEST_F(BadInput, EmptyFile) {
  const std::string p = file("empty.bin", "");
  expect_error([&] { la::load_model(p); }, p, {"too short"});
  expect_cli_error("info" + model_arg(p), p, {"too short"});
}

TEST_F(BadInput, TruncatedBin) {
  REQUIRE_SHARED_DATA(kStories);
  const std::string full = la::test::read_text(data(kStories));
  ASSERT_EQ(full.size(), 1056540u);
  const std::string p = file("half.bin", full.substr(0, full.size() / 2));
  expect_error([&] { la::load_model(p); }, p, {"truncated", "1056540"});
  expect_cli_error("generate" + model_arg(p) + " --tokenizer " + shell_quote(data("llama2c/tok512.bin")) +
                       " --prompt hi --temperature 0 --max-new-tokens 5",
                   p, {"truncated"});
  // One float short, and one float too many: exact size is required.
  const std::string q = file("short.bin", full.substr(0, full.size() - 4));
  expect_error([&] { la::load_model(q); }, q, {"truncated"});
  const std::string r = file("long.bin", full + std::string(4, '\0'));
  expect_error([&] { la::load_model(r); }, r, {"needs exactly"});
}

TEST_F(BadInput, NonsenseHeaderBin) {
  // Text where a header should be: ints far out of range.
  std::string text;
  while (text.size() < 4096) text += "hello, this is not a model. ";
  const std::string p = file("text.bin", text);
  expect_error([&] { la::load_model(p); }, p, {"not a llama2.c checkpoint"});
  expect_cli_error("info" + model_arg(p), p, {"not a llama2.c checkpoint"});

  // Plausible ints that do not describe a model (heads do not divide dim, zero layers, ...).
  auto header = [](std::vector<int32_t> h) {
    std::string s(reinterpret_cast<const char*>(h.data()), h.size() * 4);
    return s + std::string(1024, '\0');
  };
  for (const auto& h : std::vector<std::vector<int32_t>>{{64, 172, 5, 7, 4, 512, 512},
                                                         {64, 172, 0, 8, 4, 512, 512},
                                                         {64, 172, 5, 8, 3, 512, 512},
                                                         {-64, 172, 5, 8, 4, 512, 512},
                                                         {64, 172, 5, 8, 4, 0, 512},
                                                         {64, 172, 5, 8, 4, 512, -1},
                                                         // vocab INT32_MIN: negating it overflows
                                                         {64, 172, 5, 8, 4, INT32_MIN, 512},
                                                         {64, 172, 5, 8, 4, INT32_MIN + 1, 512}}) {
    const std::string q = file("hdr.bin", header(h));
    SCOPED_TRACE(std::to_string(h[2]) + " " + std::to_string(h[5]));
    expect_error([&] { la::load_model(q); }, q, {"not a llama2.c checkpoint"});
  }
  // Huge but individually valid ints: the size arithmetic must not overflow into a "match".
  const std::string big = file("big.bin", header({1 << 24, 1 << 24, 4096, 1 << 12, 1 << 12, 1 << 24, 1 << 24}));
  expect_error([&] { la::load_model(big); }, big, {"truncated"});
  // A valid shape with the wrong amount of data.
  const std::string small = file("small.bin", header({64, 172, 5, 8, 4, 512, 512}));
  expect_error([&] { la::load_model(small); }, small, {"truncated", "dim=64"});
}

TEST_F(BadInput, BadVersion1Header) {
  std::string h(256, '\0');
  const uint32_t magic = 0x616b3432;
  std::memcpy(h.data(), &magic, 4);
  int32_t version = 2;
  std::memcpy(h.data() + 4, &version, 4);
  const std::string p = file("v2.bin", h);
  expect_error([&] { la::load_model(p); }, p, {"version 2"});
  const std::string q = file("v1short.bin", h.substr(0, 100));
  expect_error([&] { la::load_model(q); }, q, {"v1 header"});
}

TEST_F(BadInput, LoneSafetensorsFileIsExplained) {
  // A lone safetensors file instead of its directory is explained, not parsed as a .bin.
  write_tiny_hf(tmp_.file("m"));
  const std::string st = tmp_.file("m/model.safetensors");
  expect_error([&] { la::load_model(st); }, st, {"directory"});
  expect_cli_error("info" + model_arg(st), st, {});
}

// ================================================================================================
// safetensors

TEST_F(BadInput, SafetensorsHeaderLengthPastEnd) {
  const std::string p = file("a.safetensors", safetensors_bytes("{}", "", 1000));
  expect_error([&] { la::SafetensorsFile::open(p); }, p, {"header length 1000", "past the end"});
  const std::string q = file("b.safetensors", safetensors_bytes("{}", "", ~uint64_t{1}));  // 2^64 - 2
  expect_error([&] { la::SafetensorsFile::open(q); }, q, {"past the end"});
  const std::string r = file("c.safetensors", std::string(5, '\0'));
  expect_error([&] { la::SafetensorsFile::open(r); }, r, {"too short"});
}

TEST_F(BadInput, SafetensorsHeaderNotJson) {
  const std::string p = file("a.safetensors", safetensors_bytes("{\"x\": [1, 2", std::string(16, '\0')));
  expect_error([&] { la::SafetensorsFile::open(p); }, p, {"JSON"});
  const std::string q = file("b.safetensors", safetensors_bytes("", ""));
  expect_error([&] { la::SafetensorsFile::open(q); }, q, {"JSON"});
}

TEST_F(BadInput, SafetensorsJsonNotObject) {
  for (const std::string h : {"[1, 2, 3]", "\"text\"", "42", "null"}) {
    SCOPED_TRACE(h);
    const std::string p = file("a.safetensors", safetensors_bytes(h, ""));
    expect_error([&] { la::SafetensorsFile::open(p); }, p, {"not a JSON object"});
  }
  // Objects whose parts have the wrong kind.
  const std::string q = file("b.safetensors", safetensors_bytes(R"({"t": 5})", ""));
  expect_error([&] { la::SafetensorsFile::open(q); }, q, {"'t'"});
  const std::string r = file("c.safetensors", safetensors_bytes(R"({"__metadata__": {"k": 1}})", ""));
  expect_error([&] { la::SafetensorsFile::open(r); }, r, {"__metadata__"});
}

// nlohmann keeps the last of repeated keys: a tensor named twice must be an error, not a tensor
// silently dropped (here the second 'w' would shadow the first).
TEST_F(BadInput, SafetensorsDuplicateTensorName) {
  const std::string p =
      file("a.safetensors", safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                                  "v": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]},
                                                  "w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})",
                                              std::string(16, '\0')));
  expect_error([&] { la::SafetensorsFile::open(p); }, p, {"duplicate tensor name 'w'"});
  // Repeated keys inside a tensor's entry or in __metadata__ are rejected too.
  const std::string q =
      file("b.safetensors",
           safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [2], "shape": [4], "data_offsets": [0, 16]}})",
                             std::string(16, '\0')));
  expect_error([&] { la::SafetensorsFile::open(q); }, q, {"duplicate key 'shape'"});
  const std::string r = file("c.safetensors", safetensors_bytes(R"({"__metadata__": {"k": "a", "k": "b"}})", ""));
  expect_error([&] { la::SafetensorsFile::open(r); }, r, {"duplicate key 'k'"});
  // Control: the same name in two different objects is no repeat.
  const std::string ok = file("d.safetensors", safetensors_bytes(R"({"__metadata__": {"w": "x"},
                                             "w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})",
                                                                 std::string(16, '\0')));
  EXPECT_EQ(la::SafetensorsFile::open(ok).tensors().size(), 1u);
}

TEST_F(BadInput, SafetensorsUnknownDtype) {
  const std::string p = file(
      "a.safetensors",
      safetensors_bytes(R"({"w": {"dtype": "Q7", "shape": [4], "data_offsets": [0, 16]}})", std::string(16, '\0')));
  expect_error([&] { la::SafetensorsFile::open(p); }, p, {"unknown dtype 'Q7'", "'w'"});
}

TEST_F(BadInput, SafetensorsOffsetsOutOfRange) {
  const std::string payload(16, '\0');
  const std::string p =
      file("a.safetensors",
           safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [100], "data_offsets": [0, 400]}})", payload));
  expect_error([&] { la::SafetensorsFile::open(p); }, p, {"out of range", "'w'"});
  const std::string q = file(
      "b.safetensors", safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [16, 0]}})", payload));
  expect_error([&] { la::SafetensorsFile::open(q); }, q, {"out of range"});
  const std::string r =
      file("c.safetensors",
           safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, -16]}})", payload));
  expect_error([&] { la::SafetensorsFile::open(r); }, r, {"data_offsets"});
  // A begin offset near 2^64.
  const std::string s =
      file("d.safetensors",
           safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [18446744073709551608, 8]}})",
                             payload));
  expect_error([&] { la::SafetensorsFile::open(s); }, s, {"out of range"});
}

TEST_F(BadInput, SafetensorsOverlappingOffsets) {
  const std::string p =
      file("a.safetensors", safetensors_bytes(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                                  "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})",
                                              std::string(24, '\0')));
  expect_error([&] { la::SafetensorsFile::open(p); }, p, {"overlap", "'a'", "'b'"});
  // Control: the same tensors side by side are fine.
  const std::string q =
      file("b.safetensors", safetensors_bytes(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                                  "b": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]}})",
                                              std::string(24, '\0')));
  EXPECT_EQ(la::SafetensorsFile::open(q).tensors().size(), 2u);
}

TEST_F(BadInput, SafetensorsShapeByteSizeMismatch) {
  const std::string p = file(
      "a.safetensors",
      safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}})", std::string(16, '\0')));
  expect_error([&] { la::SafetensorsFile::open(p); }, p, {"'w'", "16 bytes", "need 12"});
  const std::string q =
      file("b.safetensors", safetensors_bytes(R"({"w": {"dtype": "BF16", "shape": [2, 4], "data_offsets": [0, 32]}})",
                                              std::string(32, '\0')));
  expect_error([&] { la::SafetensorsFile::open(q); }, q, {"need 16"});
}

TEST_F(BadInput, SafetensorsNegativeOrBadDimension) {
  for (const std::string shape : {"[-4]", "[4, -1]", "[2.5]", "[\"4\"]", "4"}) {
    SCOPED_TRACE(shape);
    const std::string p = file("a.safetensors", safetensors_bytes(R"({"w": {"dtype": "F32", "shape": )" + shape +
                                                                      R"(, "data_offsets": [0, 16]}})",
                                                                  std::string(16, '\0')));
    expect_error([&] { la::SafetensorsFile::open(p); }, p, {"'w'"});
  }
  // Dimensions whose product overflows.
  const std::string q = file(
      "b.safetensors",
      safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 16], "data_offsets": [0, 16]}})",
                        std::string(16, '\0')));
  expect_error([&] { la::SafetensorsFile::open(q); }, q, {"too large"});
}

TEST_F(BadInput, SafetensorsDamageThroughTheCli) {
  // The same damage inside an otherwise good HF directory reaches the user as one line.
  const std::string dir = tmp_.file("m");
  write_tiny_hf(dir);
  const std::string st = dir + "/model.safetensors";
  std::string bytes = la::test::read_text(st);
  // Cut the data section short: the last tensor's offsets now run past the end.
  write_text(st, bytes.substr(0, bytes.size() - 8));
  expect_cli_error("info" + model_arg(dir), st, {"out of range"});
  // Header length past the end.
  write_text(st, safetensors_bytes("{}", "", 1 << 20));
  expect_cli_error("info" + model_arg(dir), st, {"past the end"});
  // Unknown dtype.
  write_text(
      st, safetensors_bytes(R"({"w": {"dtype": "F8", "shape": [4], "data_offsets": [0, 4]}})", std::string(4, '\0')));
  expect_cli_error("info" + model_arg(dir), st, {"unknown dtype"});
  // A tensor named twice.
  write_text(st, safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                      "w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                                   std::string(8, '\0')));
  expect_cli_error("info" + model_arg(dir), st, {"duplicate tensor name 'w'"});
}

// ================================================================================================
// Hugging Face directories

TEST_F(BadInput, HfControlLoads) {
  // The tiny model itself is fine: the failures below come from the damage alone.
  const std::string dir = tmp_.file("m");
  write_tiny_hf(dir);
  auto w = la::load_model(dir);
  EXPECT_EQ(w->config.dim, 16);
  EXPECT_EQ(w->config.n_kv_heads, 2);
  const auto r = run_cli("info" + model_arg(dir));
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(BadInput, HfBrokenConfig) {
  const std::string dir = tmp_.file("m");
  write_tiny_hf(dir);
  const std::string cfg = dir + "/config.json";
  write_text(cfg, "{\"hidden_size\": 16, ");
  expect_error([&] { la::load_model(dir); }, cfg, {"JSON"});
  expect_cli_error("info" + model_arg(dir), cfg, {"JSON"});
  write_text(cfg, "[16, 24]");
  expect_error([&] { la::load_model(dir); }, cfg, {});
  // Well-formed but wrong: a string where a number belongs, a missing field, nonsense numbers.
  nlohmann::json j = tiny_config(TinyShape{});
  j["hidden_size"] = "16";
  write_text(cfg, j.dump());
  expect_error([&] { la::load_model(dir); }, cfg, {"hidden_size"});
  j = tiny_config(TinyShape{});
  j.erase("num_hidden_layers");
  write_text(cfg, j.dump());
  expect_error([&] { la::load_model(dir); }, cfg, {"num_hidden_layers"});
  j = tiny_config(TinyShape{});
  j["num_attention_heads"] = 5;
  write_text(cfg, j.dump());
  expect_error([&] { la::load_model(dir); }, cfg, {"n_heads"});
  expect_cli_error("info" + model_arg(dir), cfg, {});
  j = tiny_config(TinyShape{});
  j["model_type"] = "gpt2";
  write_text(cfg, j.dump());
  expect_error([&] { la::load_model(dir); }, cfg, {"gpt2"});
}

TEST_F(BadInput, HfConfigMissing) {
  const std::string dir = tmp_.file("m");
  write_tiny_hf(dir);
  std::filesystem::remove(dir + "/config.json");
  expect_error([&] { la::load_model(dir); }, dir, {"config.json"});
  expect_cli_error("info" + model_arg(dir), dir, {"config.json"});
  // And a directory with a config but no weights.
  write_text(dir + "/config.json", tiny_config(TinyShape{}).dump());
  std::filesystem::remove(dir + "/model.safetensors");
  expect_error([&] { la::load_model(dir); }, dir, {"model.safetensors"});
}

TEST_F(BadInput, HfTensorWrongShape) {
  const std::string dir = tmp_.file("m");
  // k_proj stored transposed ([16, 8] instead of [8, 16]: same bytes, wrong shape).
  write_tiny_hf(dir, [](const std::string& name, std::vector<int64_t>& shape) {
    if (name == "model.layers.1.self_attn.k_proj.weight") std::swap(shape[0], shape[1]);
    return true;
  });
  const std::string st = dir + "/model.safetensors";
  expect_error([&] { la::load_model(dir); }, st, {"model.layers.1.self_attn.k_proj.weight", "[16, 8]", "[8, 16]"});
  expect_cli_error("info" + model_arg(dir), st, {"k_proj"});

  // A norm vector stored as a matrix, and a 3-D tensor.
  write_tiny_hf(dir, [](const std::string& name, std::vector<int64_t>& shape) {
    if (name == "model.norm.weight") shape = {1, 16};
    return true;
  });
  expect_error([&] { la::load_model(dir); }, st, {"model.norm.weight"});
  write_tiny_hf(dir, [](const std::string& name, std::vector<int64_t>& shape) {
    if (name == "model.layers.0.mlp.up_proj.weight") shape = {2, 12, 16};
    return true;
  });
  expect_error([&] { la::load_model(dir); }, st, {"model.layers.0.mlp.up_proj.weight"});
}

TEST_F(BadInput, HfMissingTensor) {
  const std::string dir = tmp_.file("m");
  write_tiny_hf(dir, [](const std::string& name, std::vector<int64_t>&) {
    return name != "model.layers.1.mlp.down_proj.weight";
  });
  expect_error([&] { la::load_model(dir); }, dir, {"missing tensor", "model.layers.1.mlp.down_proj.weight"});
  expect_cli_error("info" + model_arg(dir), dir, {"missing tensor", "down_proj"});
}

TEST_F(BadInput, HfIndexNamesMissingShard) {
  const std::string dir = tmp_.file("m");
  write_tiny_hf(dir);
  // Move the weights to a shard name and list a second shard that does not exist.
  std::filesystem::rename(dir + "/model.safetensors", dir + "/model-00001-of-00002.safetensors");
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
  for (const auto& [name, shape] : tiny_tensors(TinyShape{}))
    index["weight_map"][name] = "model-00001-of-00002.safetensors";
  index["weight_map"]["lm_head.weight"] = "model-00002-of-00002.safetensors";
  write_text(dir + "/model.safetensors.index.json", index.dump());
  const std::string missing = dir + "/model-00002-of-00002.safetensors";
  expect_error([&] { la::load_model(dir); }, missing, {});
  expect_cli_error("info" + model_arg(dir), missing, {});

  // An index that is not JSON, one without a weight_map, one pointing outside the directory.
  const std::string idx = dir + "/model.safetensors.index.json";
  write_text(idx, "{oops");
  expect_error([&] { la::load_model(dir); }, idx, {"weight_map"});
  write_text(idx, R"({"metadata": {}})");
  expect_error([&] { la::load_model(dir); }, idx, {"weight_map"});
  write_text(idx, R"({"weight_map": {"model.norm.weight": "../../etc/passwd"}})");
  expect_error([&] { la::load_model(dir); }, idx, {"outside"});
  write_text(idx, R"({"weight_map": {"model.norm.weight": 7}})");
  expect_error([&] { la::load_model(dir); }, idx, {"model.norm.weight"});
}

// ================================================================================================
// Tokenizers

TEST_F(BadInput, TokenizerVocabDiffersFromModel) {
  REQUIRE_SHARED_DATA(kStories);
  REQUIRE_SHARED_DATA("tokenizer/tokenizer.bin");
  const std::string tok = data("tokenizer/tokenizer.bin");
  expect_cli_error("generate" + model_arg(data(kStories)) + " --tokenizer " + shell_quote(tok) + " --prompt hi", tok,
                   {"32000", "512"});
  // The tiny HF model (vocab 32) with stories' tok512.model found in its directory.
  if (la::test::shared_file_exists("llama2c/tok512.model")) {
    const std::string dir = tmp_.file("m");
    write_tiny_hf(dir);
    std::filesystem::copy_file(data("llama2c/tok512.model"), dir + "/tokenizer.model");
    expect_cli_error("generate" + model_arg(dir) + " --prompt hi", dir + "/tokenizer.model", {"512", "32"});
  }
}

TEST_F(BadInput, TokenizerFilesDamaged) {
  const std::string missing = tmp_.file("nope.model");
  expect_error([&] { la::load_tokenizer(missing); }, missing, {});
  const std::string empty = file("empty.model", "");
  expect_error([&] { la::load_tokenizer(empty); }, empty, {});
  const std::string junk = file("junk.bin", std::string(100, '\x7f'));
  expect_error([&] { la::load_tokenizer(junk); }, junk, {});
  if (la::test::shared_file_exists("llama2c/tok512.bin")) {
    const std::string full = la::test::read_text(data("llama2c/tok512.bin"));
    const std::string cut = file("cut.bin", full.substr(0, full.size() / 2));
    expect_error([&] { la::load_tokenizer(cut); }, cut, {});
    if (la::test::shared_file_exists(kStories))
      expect_cli_error("generate" + model_arg(data(kStories)) + " --tokenizer " + shell_quote(cut) + " --prompt hi",
                       cut, {});
  }
}

}  // namespace
