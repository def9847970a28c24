// GGUF reader and writer: round trips of every metadata type and tensor dtype, the shared
// vocab-only llama.cpp file, and hand-made corrupt files that must each give a clear la::Error
// naming the file and the problem.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "la/core/error.h"
#include "la/formats/gguf.h"
#include "support/test_support.h"

namespace la {
namespace {

using test::TempDir;

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> b(n);
  for (auto& x : b) x = static_cast<uint8_t>(rng());
  return b;
}

size_t tensor_bytes(DType t, const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return static_cast<size_t>(n / dtype_block_size(t)) * dtype_block_bytes(t);
}

// Expects opening `path` to throw la::Error whose message names the file and contains `keyword`.
void expect_reject(const std::string& path, const std::string& keyword) {
  try {
    GgufFile::open(path);
    ADD_FAILURE() << path << ": opened, expected an error containing '" << keyword << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << "message does not name the file: " << msg;
    EXPECT_NE(msg.find(keyword), std::string::npos) << "message lacks '" << keyword << "': " << msg;
  }
}

// Builds GGUF bytes field by field, so tests can write what the writer never would.
struct Raw {
  std::string b;
  Raw& u8(uint8_t v) { return raw(&v, 1); }
  Raw& u32(uint32_t v) { return raw(&v, 4); }
  Raw& u64(uint64_t v) { return raw(&v, 8); }
  Raw& f32(float v) { return raw(&v, 4); }
  Raw& str(const std::string& s) {
    u64(s.size());
    b += s;
    return *this;
  }
  Raw& raw(const void* p, size_t n) {
    b.append(static_cast<const char*>(p), n);
    return *this;
  }
  Raw& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    b += "GGUF";
    u32(version);
    u64(n_tensors);
    return u64(n_kv);
  }
  Raw& kv_u32(const std::string& k, uint32_t v) { return str(k).u32(4).u32(v); }
  Raw& kv_str(const std::string& k, const std::string& v) { return str(k).u32(8).str(v); }
  Raw& tensor(const std::string& name, const std::vector<uint64_t>& dims, uint32_t type, uint64_t offset) {
    str(name).u32(static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) u64(d);
    return u32(type).u64(offset);
  }
  Raw& pad(size_t align = 32) {
    while (b.size() % align) b.push_back('\0');
    return *this;
  }
  Raw& zeros(size_t n) {
    b.append(n, '\0');
    return *this;
  }
  void write(const std::string& path) const { test::write_text(path, b); }
};

// ------------------------------------------------------------------------------------------------

TEST(GgufWriter, RoundTripsEveryMetadataTypeAndDtype) {
  TempDir dir;
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_string("str.empty", "");
  w.set_string("str.utf8_nul", std::string("h\xC3\xA9llo\0w\xF0\x9F\x98\x80", 12));
  w.set_u32("u32.zero", 0);
  w.set_u32("u32.max", std::numeric_limits<uint32_t>::max());
  w.set_i32("i32.min", std::numeric_limits<int32_t>::min());
  w.set_i32("i32.neg", -7);
  w.set_f32("f32.eps", 1e-5f);
  w.set_f32("f32.negzero", -0.0f);
  w.set_f32("f32.inf", std::numeric_limits<float>::infinity());
  w.set_bool("bool.true", true);
  w.set_bool("bool.false", false);
  w.set_strings("arr.strings", {"<unk>", "", "\xE2\x96\x81the", std::string(300, 'x')});
  w.set_strings("arr.strings_empty", {});
  w.set_f32s("arr.f32", {0.5f, -1.25f, 3e38f, -0.0f});
  w.set_f32s("arr.f32_empty", {});
  w.set_i32s("arr.i32", {std::numeric_limits<int32_t>::min(), -1, 0, 1, std::numeric_limits<int32_t>::max()});
  w.set_u32("replaced", 1);
  w.set_u32("after_replaced", 2);
  w.set_u32("replaced", 3);  // replaces in place: keeps its first position

  struct Spec {
    std::string name;
    DType type;
    std::vector<int64_t> dims;
  };
  const std::vector<Spec> specs = {
      {"f32.awkward", DType::F32, {3, 5, 7}},   {"f16.one", DType::F16, {1}},
      {"bf16.4d", DType::BF16, {7, 1, 1, 3}},   {"q8_0", DType::Q8_0, {96, 5}},
      {"q4_0.3d", DType::Q4_0, {32, 1, 3}},     {"q4_k", DType::Q4_K, {256, 3}},
      {"q6_k.4d", DType::Q6_K, {512, 1, 1, 2}}, {"f32.tail", DType::F32, {1, 1, 1, 1}},
  };
  std::vector<std::vector<uint8_t>> payloads;
  for (size_t i = 0; i < specs.size(); ++i) {
    payloads.push_back(random_bytes(tensor_bytes(specs[i].type, specs[i].dims), static_cast<uint32_t>(i + 1)));
    w.add_tensor(specs[i].name, specs[i].dims, specs[i].type, payloads.back().data(), payloads.back().size());
  }
  const std::string path = dir.file("all.gguf");
  w.write(path);
  const std::string bytes = w.serialize();
  ASSERT_EQ(test::read_text(path), bytes);

  // Keys in insertion order (the replaced one keeps its first slot).
  const char* order[] = {"general.architecture", "str.empty", "u32.zero", "i32.min",       "f32.eps", "bool.true",
                         "arr.strings",          "arr.i32",   "replaced", "after_replaced"};
  size_t last = 0;
  for (const char* k : order) {
    const std::string key = k;
    const size_t at = bytes.find(key);
    ASSERT_NE(at, std::string::npos) << key;
    EXPECT_GT(at, last) << key << " out of insertion order";
    last = at;
  }

  GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.data_offset() % 32, 0u);
  EXPECT_EQ(f.metadata().size(), 19u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_string("str.empty"), "");
  EXPECT_EQ(f.get_string("str.utf8_nul"), std::string("h\xC3\xA9llo\0w\xF0\x9F\x98\x80", 12));
  EXPECT_EQ(f.find("u32.max")->type, GgufType::UINT32);
  EXPECT_EQ(f.get_int("u32.zero"), 0);
  EXPECT_EQ(f.get_int("u32.max"), 4294967295LL);
  EXPECT_EQ(f.find("i32.min")->type, GgufType::INT32);
  EXPECT_EQ(f.get_int("i32.min"), std::numeric_limits<int32_t>::min());
  EXPECT_EQ(f.get_int("i32.neg"), -7);
  EXPECT_EQ(f.get_float("i32.neg"), -7.0);
  EXPECT_EQ(f.find("f32.eps")->type, GgufType::FLOAT32);
  EXPECT_EQ(f.get_float("f32.eps"), static_cast<double>(1e-5f));
  EXPECT_TRUE(std::signbit(f.get_float("f32.negzero")));
  EXPECT_TRUE(std::isinf(f.get_float("f32.inf")));
  EXPECT_EQ(f.find("bool.true")->type, GgufType::BOOL);
  EXPECT_TRUE(std::get<bool>(f.find("bool.true")->scalar));
  EXPECT_FALSE(std::get<bool>(f.find("bool.false")->scalar));
  const GgufValue* s = f.find("arr.strings");
  ASSERT_TRUE(s && s->is_array());
  EXPECT_EQ(s->array_type, GgufType::STRING);
  EXPECT_EQ(s->strings, (std::vector<std::string>{"<unk>", "", "\xE2\x96\x81the", std::string(300, 'x')}));
  EXPECT_TRUE(f.find("arr.strings_empty")->strings.empty());
  EXPECT_EQ(f.find("arr.strings_empty")->array_type, GgufType::STRING);
  const GgufValue* fa = f.find("arr.f32");
  EXPECT_EQ(fa->array_type, GgufType::FLOAT32);
  EXPECT_EQ(fa->numbers, (std::vector<double>{0.5, -1.25, static_cast<double>(3e38f), -0.0}));
  EXPECT_TRUE(f.find("arr.f32_empty")->numbers.empty());
  const GgufValue* ia = f.find("arr.i32");
  EXPECT_EQ(ia->array_type, GgufType::INT32);
  EXPECT_EQ(ia->numbers, (std::vector<double>{-2147483648.0, -1, 0, 1, 2147483647.0}));
  EXPECT_EQ(f.get_int("replaced"), 3);
  EXPECT_EQ(f.get_int("after_replaced"), 2);

  ASSERT_EQ(f.tensors().size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const GgufTensor& t = f.tensors()[i];
    SCOPED_TRACE(specs[i].name);
    EXPECT_EQ(t.name, specs[i].name);
    EXPECT_EQ(t.type, specs[i].type);
    EXPECT_EQ(t.dims, specs[i].dims);
    EXPECT_EQ(t.offset % 32, 0u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % 32, 0u);  // mmap is page aligned
    ASSERT_EQ(t.nbytes, payloads[i].size());
    EXPECT_EQ(std::memcmp(t.data, payloads[i].data(), t.nbytes), 0);
    EXPECT_EQ(f.find_tensor(specs[i].name), &t);
  }
  EXPECT_EQ(f.find_tensor("nope"), nullptr);
  EXPECT_EQ(f.tensors()[0].numel(), 105);
}

TEST(GgufWriter, TypedAccessorsNameTheKey) {
  TempDir dir;
  GgufWriter w;
  w.set_string("s", "x");
  w.set_f32("f", 1.5f);
  w.set_strings("a", {"x"});
  w.write(dir.file("a.gguf"));
  GgufFile f = GgufFile::open(dir.file("a.gguf"));
  auto expect_msg = [&](auto&& fn, const std::string& want) {
    try {
      fn();
      ADD_FAILURE() << "no error, expected " << want;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(dir.file("a.gguf")), std::string::npos) << e.what();
    }
  };
  expect_msg([&] { f.get_string("missing"); }, "'missing' missing");
  expect_msg([&] { f.get_int("s"); }, "'s' has type STRING");
  expect_msg([&] { f.get_int("f"); }, "'f' has type FLOAT32");
  expect_msg([&] { f.get_float("a"); }, "'a' has type ARRAY");
  expect_msg([&] { f.get_string("f"); }, "expected STRING");
  EXPECT_FALSE(f.has("missing"));
  EXPECT_TRUE(f.has("s"));
  EXPECT_TRUE(f.tensors().empty());
}

TEST(GgufWriter, RejectsBadTensorsAndAlignment) {
  GgufWriter w;
  std::vector<uint8_t> buf(4096);
  EXPECT_THROW(w.add_tensor("a", {4}, DType::F32, buf.data(), 15), Error);                  // wrong nbytes
  EXPECT_THROW(w.add_tensor("a", {31, 2}, DType::Q8_0, buf.data(), 68), Error);             // not a block multiple
  EXPECT_THROW(w.add_tensor("a", {}, DType::F32, buf.data(), 4), Error);                    // no dims
  EXPECT_THROW(w.add_tensor("a", {1, 1, 1, 1, 1}, DType::F32, buf.data(), 4), Error);       // 5 dims
  EXPECT_THROW(w.add_tensor("a", {0}, DType::F32, buf.data(), 0), Error);                   // zero dim
  EXPECT_THROW(w.add_tensor("a", {-4}, DType::F32, buf.data(), 16), Error);                 // negative dim
  EXPECT_THROW(w.add_tensor(std::string(64, 'n'), {1}, DType::F32, buf.data(), 4), Error);  // ggml name limit
  w.add_tensor("a", {4}, DType::F32, buf.data(), 16);
  EXPECT_THROW(w.add_tensor("a", {4}, DType::F32, buf.data(), 16), Error);  // duplicate
  EXPECT_THROW(w.set_u32("general.alignment", 48), Error);
  EXPECT_THROW(w.set_u32("general.alignment", 0), Error);
  EXPECT_THROW(w.set_string("general.alignment", "32"), Error);
}

TEST(GgufWriter, HonoursGeneralAlignment) {
  TempDir dir;
  GgufWriter w;
  w.set_u32("general.alignment", 64);
  std::vector<uint8_t> a = random_bytes(12, 1), b = random_bytes(34 * 3, 2);
  w.add_tensor("a", {3}, DType::F32, a.data(), a.size());
  w.add_tensor("b", {96}, DType::Q8_0, b.data(), b.size());
  w.write(dir.file("a64.gguf"));
  GgufFile f = GgufFile::open(dir.file("a64.gguf"));
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.data_offset() % 64, 0u);
  EXPECT_EQ(f.tensors()[1].offset, 64u);
  EXPECT_EQ(std::memcmp(f.tensors()[1].data, b.data(), b.size()), 0);
}

// Tensors whose bytes are produced while the file is written (a streamed `convert`): each fill
// runs once, in order, and the file is serialize()'s bytes; a copied tensor keeps the bytes it
// had when added. A fill that fails leaves the previous file in place and no temporary file.
TEST(GgufWriter, FilledTensorsAreProducedWhileWriting) {
  TempDir dir;
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  std::vector<uint8_t> copied = random_bytes(20, 3);
  const std::vector<uint8_t> original = copied;
  w.add_tensor("copied", {5}, DType::F32, copied.data(), copied.size());
  copied.assign(copied.size(), 0);
  const std::vector<uint8_t> q = random_bytes(34 * 2, 4), h = random_bytes(6, 5);
  std::vector<std::string> calls;
  w.add_tensor("q", {32, 2}, DType::Q8_0, q.size(), [&](uint8_t* dst) {
    calls.push_back("q");
    std::memcpy(dst, q.data(), q.size());
  });
  w.add_tensor("h", {3}, DType::F16, h.size(), [&](uint8_t* dst) {
    calls.push_back("h");
    std::memcpy(dst, h.data(), h.size());
  });
  const std::string path = dir.file("filled.gguf");
  w.write(path);
  EXPECT_EQ(calls, (std::vector<std::string>{"q", "h"}));
  EXPECT_EQ(test::read_text(path), w.serialize());
  GgufFile f = GgufFile::open(path);
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(std::memcmp(f.find_tensor("copied")->data, original.data(), original.size()), 0);
  EXPECT_EQ(std::memcmp(f.find_tensor("q")->data, q.data(), q.size()), 0);
  EXPECT_EQ(std::memcmp(f.find_tensor("h")->data, h.data(), h.size()), 0);
  EXPECT_THROW(w.add_tensor("bad", {4}, DType::F32, 15, [](uint8_t*) {}), Error);  // nbytes checked up front

  const std::string before = test::read_text(path);
  GgufWriter failing;
  failing.add_tensor("a", {4}, DType::F32, 16, [](uint8_t*) { fail("conversion failed"); });
  EXPECT_THROW(failing.write(path), Error);
  EXPECT_EQ(test::read_text(path), before);
  size_t files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++files;
  EXPECT_EQ(files, 1u);  // no temporary file left behind
}

TEST(GgufReader, AcceptsVersion2AndZeroTensors) {
  TempDir dir;
  Raw r;
  r.header(1, 1, 2).kv_str("general.architecture", "llama").tensor("t", {8}, 0, 0).pad().zeros(32);
  r.write(dir.file("v2.gguf"));
  GgufFile f = GgufFile::open(dir.file("v2.gguf"));
  EXPECT_EQ(f.version(), 2u);
  EXPECT_EQ(f.tensors().size(), 1u);

  Raw e;
  e.header(0, 0);
  e.write(dir.file("empty.gguf"));
  GgufFile g = GgufFile::open(dir.file("empty.gguf"));
  EXPECT_TRUE(g.metadata().empty());
  EXPECT_TRUE(g.tensors().empty());
}

TEST(GgufReader, ReadsLlamaCppVocabFile) {
  REQUIRE_SHARED_DATA("gguf/ggml-vocab-llama-spm.gguf");
  const std::string path = test::shared_data() + "/gguf/ggml-vocab-llama-spm.gguf";
  GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.tensors().size(), 0u);
  EXPECT_EQ(f.metadata().size(), 22u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "llama");
  EXPECT_EQ(f.get_int("llama.vocab_size"), 32000);
  EXPECT_NEAR(f.get_float("llama.attention.layer_norm_rms_epsilon"), 1e-5, 1e-9);
  const GgufValue* tokens = f.find("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens && tokens->is_array());
  EXPECT_EQ(tokens->array_type, GgufType::STRING);
  ASSERT_EQ(tokens->strings.size(), 32000u);
  EXPECT_EQ(tokens->strings[0], "<unk>");
  EXPECT_EQ(tokens->strings[1], "<s>");
  EXPECT_EQ(tokens->strings[2], "</s>");
  const GgufValue* scores = f.find("tokenizer.ggml.scores");
  ASSERT_TRUE(scores && scores->is_array());
  EXPECT_EQ(scores->array_type, GgufType::FLOAT32);
  EXPECT_EQ(scores->numbers.size(), 32000u);
  const GgufValue* types = f.find("tokenizer.ggml.token_type");
  ASSERT_TRUE(types && types->is_array());
  EXPECT_EQ(types->array_type, GgufType::INT32);
  ASSERT_EQ(types->numbers.size(), 32000u);
  EXPECT_EQ(types->numbers[0], 2);  // unknown
  EXPECT_EQ(types->numbers[1], 3);  // control
  EXPECT_EQ(f.get_int("tokenizer.ggml.bos_token_id"), 1);
  EXPECT_EQ(f.get_int("tokenizer.ggml.eos_token_id"), 2);
  EXPECT_EQ(f.get_int("tokenizer.ggml.unknown_token_id"), 0);
  EXPECT_TRUE(std::get<bool>(f.find("tokenizer.ggml.add_bos_token")->scalar));
  EXPECT_FALSE(std::get<bool>(f.find("tokenizer.ggml.add_eos_token")->scalar));
}

// ------------------------------------------------------------------------------------------------
// Corrupt files

TEST(GgufReader, RejectsBadMagicAndVersion) {
  TempDir dir;
  const std::string p = dir.file("x.gguf");
  test::write_text(p, "");
  expect_reject(p, "magic");
  test::write_text(p, "GGU");
  expect_reject(p, "magic");
  Raw r;
  r.header(0, 0);
  r.b[3] = 'L';
  r.write(p);
  expect_reject(p, "bad magic");
  for (uint32_t v : {0u, 1u, 4u, 0x03000000u}) {
    Raw q;
    q.header(0, 0, v);
    q.write(p);
    expect_reject(p, "version " + std::to_string(v));
  }
  test::write_text(p, "GGUF\x03");
  expect_reject(p, "truncated");
}

TEST(GgufReader, RejectsAbsurdCounts) {
  TempDir dir;
  const std::string p = dir.file("x.gguf");
  for (uint64_t n : {uint64_t{1} << 62, ~uint64_t{0}, uint64_t{1000}}) {
    Raw a;
    a.header(n, 0).zeros(64);
    a.write(p);
    expect_reject(p, "tensor count");
    Raw b;
    b.header(0, n).zeros(64);
    b.write(p);
    expect_reject(p, "metadata count");
  }
  // Each fits alone, together they do not.
  Raw c;
  c.header(2, 5).zeros(2 * 32 + 20);
  c.write(p);
  expect_reject(p, "cannot fit");
}

// A small valid file: metadata of several types, an array, and three tensors; the last tensor's
// data ends exactly at the end of the file, so every proper prefix is corrupt.
std::string small_valid_file() {
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_u32("llama.block_count", 2);
  w.set_i32("i", -3);
  w.set_f32("f", 0.25f);
  w.set_bool("b", true);
  w.set_strings("tokens", {"a", "bc", ""});
  w.set_f32s("scores", {1.f, 2.f});
  w.set_i32s("types", {1, 2, 3});
  std::vector<uint8_t> q = random_bytes(34 * 2, 5), h = random_bytes(6, 6), x = random_bytes(32, 7);
  w.add_tensor("q", {64}, DType::Q8_0, q.data(), q.size());
  w.add_tensor("h", {3}, DType::F16, h.data(), h.size());
  w.add_tensor("x", {8}, DType::F32, x.data(), x.size());
  return w.serialize();
}

TEST(GgufReader, EveryTruncationIsAnError) {
  TempDir dir;
  const std::string full = small_valid_file();
  const std::string p = dir.file("t.gguf");
  test::write_text(p, full);
  ASSERT_NO_THROW(GgufFile::open(p));
  for (size_t n = 0; n < full.size(); ++n) {
    std::remove(p.c_str());  // a fresh file: rewriting a truncated one makes ext4 flush it on close
    test::write_text(p, full.substr(0, n));
    try {
      GgufFile::open(p);
      ADD_FAILURE() << "prefix of " << n << " of " << full.size() << " bytes opened";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  }
}

TEST(GgufReader, RejectsBadStringsAndArrays) {
  TempDir dir;
  const std::string p = dir.file("x.gguf");
  {
    Raw r;  // key length past the end
    r.header(0, 1).u64(1000).raw("abc", 3).u32(4).u32(1);
    r.write(p);
    expect_reject(p, "past the end");
  }
  {
    Raw r;  // string value length past the end
    r.header(0, 1).str("k").u32(8).u64(~uint64_t{0} - 3).raw("abcdefgh", 8);
    r.write(p);
    expect_reject(p, "string length");
  }
  {
    Raw r;  // array count past the end
    r.header(0, 1).str("k").u32(9).u32(4).u64(uint64_t{1} << 61).u32(1).u32(2);
    r.write(p);
    expect_reject(p, "array count");
  }
  {
    Raw r;  // string array: count fits bytes but each element needs 8
    r.header(0, 1).str("k").u32(9).u32(8).u64(40).zeros(40);
    r.write(p);
    expect_reject(p, "array count");
  }
  {
    Raw r;  // nested array
    r.header(0, 1).str("k").u32(9).u32(9).u64(1).u32(4).u64(1).u32(7);
    r.write(p);
    expect_reject(p, "nested array");
  }
  {
    Raw r;  // unknown element type
    r.header(0, 1).str("k").u32(9).u32(13).u64(1).u32(7);
    r.write(p);
    expect_reject(p, "unknown metadata type 13");
  }
  {
    Raw r;  // unknown value type
    r.header(0, 1).str("k").u32(13).u32(0).u32(0);
    r.write(p);
    expect_reject(p, "unknown metadata type 13");
  }
  {
    Raw r;
    r.header(0, 1).str("k").u32(0xFFFFFFFF).u32(0).u32(0);
    r.write(p);
    expect_reject(p, "unknown metadata type");
  }
  {
    Raw r;  // bool that is neither 0 nor 1
    r.header(0, 1).str("k").u32(7).u8(2).zeros(12);
    r.write(p);
    expect_reject(p, "bool");
  }
  {
    Raw r;  // duplicate keys
    r.header(0, 2).kv_u32("k", 1).kv_u32("k", 2);
    r.write(p);
    expect_reject(p, "duplicate metadata key 'k'");
  }
  {
    Raw r;  // alignment of the wrong type / not a power of two
    r.header(0, 1).kv_str("general.alignment", "32");
    r.write(p);
    expect_reject(p, "expected UINT32");
    Raw q;
    q.header(0, 1).kv_u32("general.alignment", 48);
    q.write(p);
    expect_reject(p, "power of two");
    Raw z;
    z.header(0, 1).kv_u32("general.alignment", 0);
    z.write(p);
    expect_reject(p, "power of two");
  }
}

TEST(GgufReader, RejectsBadTensorInfos) {
  TempDir dir;
  const std::string p = dir.file("x.gguf");
  auto one = [&](const std::vector<uint64_t>& dims, uint32_t type, uint64_t offset, size_t data = 256) {
    Raw r;
    r.header(1, 0).tensor("w", dims, type, offset).pad().zeros(data);
    r.write(p);
  };
  one({8}, 3, 0);  // Q4_1: a real ggml type we do not support
  expect_reject(p, "unknown or unsupported tensor type (ggml type 3)");
  one({8}, 99, 0);
  expect_reject(p, "tensor type");
  one({1, 1, 1, 1, 1}, 0, 0);
  expect_reject(p, "n_dims 5");
  one({}, 0, 0);
  expect_reject(p, "n_dims 0");
  one({8, 0}, 0, 0);
  expect_reject(p, "dimension 1 is 0");
  one({uint64_t{1} << 32, uint64_t{1} << 32}, 0, 0);
  expect_reject(p, "overflow");
  one({~uint64_t{0}}, 0, 0);
  expect_reject(p, "overflow");
  one({uint64_t{1} << 40}, 0, 0);  // 4 TiB of F32 in a small file
  expect_reject(p, "more bytes than the whole file");
  one({31}, 8, 0);  // Q8_0 rows are multiples of 32
  expect_reject(p, "block size 32");
  one({8}, 0, 4);
  expect_reject(p, "misaligned");
  one({8}, 0, 256);  // starts exactly at the end of the 256-byte data section
  expect_reject(p, "out of range");
  one({8}, 0, ~uint64_t{0} - 31);  // aligned, astronomically far
  expect_reject(p, "out of range");
  one({64}, 0, 0, 255);  // needs 256 bytes, file has 255
  expect_reject(p, "out of range");
  {
    Raw r;  // data section itself past the end: infos end unaligned, no data at all
    r.header(1, 0).tensor("w", {8}, 0, 0);
    r.write(p);
    expect_reject(p, "truncated");
  }
  {
    Raw r;  // overlapping: b starts inside a
    r.header(2, 0).tensor("a", {16}, 0, 0).tensor("b", {8}, 0, 32).pad().zeros(128);
    r.write(p);
    expect_reject(p, "overlap");
    Raw q;  // same offset
    q.header(2, 0).tensor("a", {8}, 0, 64).tensor("b", {8}, 0, 64).pad().zeros(128);
    q.write(p);
    expect_reject(p, "overlap");
  }
  {
    Raw r;  // duplicate tensor names
    r.header(2, 0).tensor("w", {8}, 0, 0).tensor("w", {8}, 0, 32).pad().zeros(64);
    r.write(p);
    expect_reject(p, "duplicate tensor name 'w'");
  }
  {
    Raw r;  // tensor name length past the end
    r.header(1, 0).u64(1 << 20).zeros(40);
    r.write(p);
    expect_reject(p, "past the end");
  }
  {
    Raw r;  // custom alignment: offsets must follow it
    r.header(1, 1).kv_u32("general.alignment", 64).tensor("w", {8}, 0, 32).pad(64).zeros(128);
    r.write(p);
    expect_reject(p, "multiple of the alignment 64");
  }
  {
    Raw r;  // the same layout, correctly aligned, opens
    r.header(1, 1).kv_u32("general.alignment", 64).tensor("w", {8}, 0, 64).pad(64).zeros(128);
    r.write(p);
    GgufFile f = GgufFile::open(p);
    EXPECT_EQ(f.alignment(), 64u);
    EXPECT_EQ(f.data_offset() % 64, 0u);
    EXPECT_EQ(f.tensors()[0].data, f.file()->data() + f.data_offset() + 64);
  }
}

TEST(GgufReader, MissingFileNamesThePath) {
  TempDir dir;
  const std::string p = dir.file("does-not-exist.gguf");
  expect_reject(p, "cannot open");
  expect_reject(dir.path(), "directory");
}

}  // namespace
}  // namespace la
