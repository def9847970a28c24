// A bounded, deterministic mutation fuzzer over the file readers (GGUF and safetensors). Small
// valid seed files are mutated (bit flips, extreme values written over integer fields, truncation,
// duplicated / deleted / inserted regions, and for safetensors edits of the JSON numbers); every
// mutant must either open, with every tensor's bytes inside the mapping (they are all read), or
// throw la::Error naming the file once, on one line. Any other exception, a crash or a sanitizer
// report fails the test. The mutation machinery is tests/support/fuzz.h, shared with
// test_fuzz_inputs.cpp (adapters, Alpaca data, tokenizers).
//
// Fixed seed, so a failure reproduces; LA_FUZZ_ITERS=n runs n iterations per format instead of the
// default (sized to take well under 5 s in Release and 30 s under ASan), LA_FUZZ_SEED=s another seed.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "la/core/error.h"
#include "la/formats/gguf.h"
#include "la/formats/safetensors.h"
#include "la/vision/image.h"
#include "support/fuzz.h"
#include "support/test_support.h"

namespace la {
namespace {

using test::TempDir;
using namespace fuzz;  // Rng, Seed, Field, mutate_bytes, mutate_safetensors_json, check_one, ...

// ------------------------------------------------------------------------------------------------
// Seeds

// Builds GGUF bytes and records where every count, length, type, dim and offset lives.
struct GgufBuilder {
  Seed s;
  void u32(uint32_t v) {
    s.fields.push_back({s.bytes.size(), 4});
    s.bytes.append(reinterpret_cast<const char*>(&v), 4);
  }
  void u64(uint64_t v) {
    s.fields.push_back({s.bytes.size(), 8});
    s.bytes.append(reinterpret_cast<const char*>(&v), 8);
  }
  void str(const std::string& x) {
    u64(x.size());
    s.bytes += x;
  }
};

// Two seeds: the writer's output (several metadata types, arrays, tensors of several dtypes), and
// a hand-built one with a custom alignment and every scalar metadata type.
std::vector<Seed> gguf_seeds() {
  std::vector<Seed> seeds;
  {
    GgufWriter w;
    w.set_string("general.architecture", "llama");
    w.set_u32("llama.block_count", 2);
    w.set_i32("i", -3);
    w.set_f32("f", 0.5f);
    w.set_bool("b", true);
    w.set_strings("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a"});
    w.set_f32s("tokenizer.ggml.scores", {0.f, 0.f, 0.f, -1.f});
    w.set_i32s("tokenizer.ggml.token_type", {2, 3, 3, 1});
    auto a = pattern(4 * 6, 1), q = pattern(34 * 2, 2), h = pattern(2 * 5, 3), k = pattern(144, 4), x = pattern(210, 5),
         b16 = pattern(2 * 4, 6), q4 = pattern(18, 7);
    w.add_tensor("a", {3, 2}, DType::F32, a.data(), a.size());
    w.add_tensor("q", {32, 2}, DType::Q8_0, q.data(), q.size());
    w.add_tensor("h", {5}, DType::F16, h.data(), h.size());
    w.add_tensor("k", {256}, DType::Q4_K, k.data(), k.size());
    w.add_tensor("x", {256, 1}, DType::Q6_K, x.data(), x.size());
    w.add_tensor("bf", {2, 2}, DType::BF16, b16.data(), b16.size());
    w.add_tensor("q4", {32}, DType::Q4_0, q4.data(), q4.size());
    Seed s;
    s.bytes = w.serialize();
    // The writer's layout is known: mark the header fields; byte-level mutations cover the rest,
    // and the hand-built seed below records every field.
    s.fields = {{4, 4}, {8, 8}, {16, 8}};
    seeds.push_back(std::move(s));
  }
  {
    GgufBuilder g;
    g.s.bytes = "GGUF";
    g.u32(3);
    g.u64(2);   // tensors
    g.u64(11);  // kvs
    g.str("general.alignment");
    g.u32(4);
    g.u32(64);
    const uint32_t types[] = {0, 1, 2, 3, 5, 6, 10, 11, 12};  // u8 i8 u16 i16 i32 f32 u64 i64 f64
    const size_t sizes[] = {1, 1, 2, 2, 4, 4, 8, 8, 8};
    for (int i = 0; i < 9; ++i) {
      const char key[3] = {'k', static_cast<char>('0' + i), 0};
      g.str(key);
      g.u32(types[i]);
      g.s.bytes.append(sizes[i], static_cast<char>(i + 1));
    }
    g.str("arr");
    g.u32(9);
    g.u32(8);
    g.u64(2);
    g.str("x");
    g.str("yz");
    // tensors: F32 [4, 2] at 0 and Q8_0 [32] at 64
    g.str("t0");
    g.u32(2);
    g.u64(4);
    g.u64(2);
    g.u32(0);
    g.u64(0);
    g.str("t1");
    g.u32(1);
    g.u64(32);
    g.u32(8);
    g.u64(64);
    while (g.s.bytes.size() % 64) g.s.bytes.push_back('\0');
    auto d = pattern(64 + 34, 9);
    g.s.bytes.append(reinterpret_cast<const char*>(d.data()), d.size());
    seeds.push_back(std::move(g.s));
  }
  return seeds;
}

std::vector<Seed> safetensors_seeds() {
  std::vector<Seed> seeds;
  {
    SafetensorsWriter w;
    w.set_metadata("format", "pt");
    w.set_metadata("note", "x");
    auto a = pattern(4 * 6, 1), b = pattern(2 * 3, 2), c = pattern(8, 3), d = pattern(1, 4);
    w.add("w", SafeDType::F32, {2, 3}, a.data(), a.size());
    w.add("h", SafeDType::F16, {3}, b.data(), b.size());
    w.add("i", SafeDType::I64, {1, 1}, c.data(), c.size());
    w.add("u", SafeDType::U8, {1}, d.data(), d.size());
    w.add("empty", SafeDType::BF16, {0, 4}, nullptr, 0);
    Seed s;
    s.bytes = w.serialize();
    s.fields = {{0, 8}};
    seeds.push_back(std::move(s));
  }
  {
    SafetensorsWriter w;
    auto a = pattern(4 * 4, 5);
    w.add("m", SafeDType::BF16, {2, 4}, a.data(), a.size());
    Seed s;
    s.bytes = w.serialize();
    s.fields = {{0, 8}};
    seeds.push_back(std::move(s));
  }
  return seeds;
}

// Reads every byte of [p, p + n) after checking the range lies inside the mapping.
uint64_t touch(const MappedFile& m, const uint8_t* p, size_t n, const std::string& what) {
  const uint8_t* lo = m.data();
  const uint8_t* hi = m.data() + m.size();
  if (n == 0) return 0;
  EXPECT_TRUE(p >= lo && p <= hi && n <= static_cast<size_t>(hi - p)) << what << ": bytes outside the mapping";
  if (!(p >= lo && p <= hi && n <= static_cast<size_t>(hi - p))) return 0;
  uint64_t sum = 0;
  for (size_t i = 0; i < n; ++i) sum += p[i];
  return sum;
}

uint64_t touch_gguf(const GgufFile& f) {
  uint64_t sum = 0;
  for (const auto& t : f.tensors()) {
    EXPECT_EQ(f.find_tensor(t.name), &t);
    EXPECT_EQ(t.nbytes, static_cast<size_t>(t.numel() / dtype_block_size(t.type)) * dtype_block_bytes(t.type));
    EXPECT_EQ(t.offset % f.alignment(), 0u);
    EXPECT_TRUE(!t.dims.empty() && t.dims.size() <= 4) << t.name;
    for (int64_t d : t.dims) EXPECT_GT(d, 0) << t.name;
    sum += touch(*f.file(), t.data, t.nbytes, t.name);
  }
  for (const auto& [k, v] : f.metadata()) {
    sum += k.size();
    for (const auto& s : v.strings) sum += s.size();
    sum += v.numbers.size();
    if (auto* s = std::get_if<std::string>(&v.scalar)) sum += s->size();
  }
  return sum;
}

uint64_t touch_safetensors(const SafetensorsFile& f) {
  uint64_t sum = 0;
  for (const auto& t : f.tensors()) {
    EXPECT_EQ(f.find(t.name), &t);
    EXPECT_EQ(t.nbytes, static_cast<size_t>(t.numel()) * safe_dtype_size(t.dtype));
    for (int64_t d : t.shape) EXPECT_TRUE(d >= 0 && d <= (int64_t{1} << 48)) << t.name << " dim " << d;
    sum += touch(*f.file(), t.data, t.nbytes, t.name);
    try {
      WeightMatrix w = f.matrix(t);
      EXPECT_LE(w.bytes(), t.nbytes) << t.name;
    } catch (const Error&) {
      // unsupported dtype / rank / alignment for a weight matrix: fine
    }
  }
  for (const auto& [k, v] : f.metadata()) sum += k.size() + v.size();
  return sum;
}

constexpr uint64_t kDefaultIters = 20000;

// LA_FUZZ_WRITE_SEEDS=<dir> also writes the seeds there (gguf-*.gguf, st-*.safetensors), as a
// starting corpus for the libFuzzer target in tests/fuzz.
TEST(FuzzReaders, SeedsAreValid) {
  TempDir dir;
  const char* out = std::getenv("LA_FUZZ_WRITE_SEEDS");
  int k = 0;
  for (const Seed& s : gguf_seeds()) {
    if (out) write_bytes(std::string(out) + "/gguf-" + std::to_string(k++) + ".gguf", s.bytes);
    write_bytes(dir.file("s.gguf"), s.bytes);
    GgufFile f = GgufFile::open(dir.file("s.gguf"));
    EXPECT_FALSE(f.tensors().empty());
    touch_gguf(f);
  }
  for (const Seed& s : safetensors_seeds()) {
    if (out) write_bytes(std::string(out) + "/st-" + std::to_string(k++) + ".safetensors", s.bytes);
    write_bytes(dir.file("s.safetensors"), s.bytes);
    SafetensorsFile f = SafetensorsFile::open(dir.file("s.safetensors"));
    EXPECT_FALSE(f.tensors().empty());
    touch_safetensors(f);
  }
}

TEST(FuzzReaders, GgufMutants) {
  TempDir dir;
  const std::string path = dir.file("m.gguf");
  const std::string keep = ::testing::TempDir() + "gguf_fuzz_failure.gguf";
  const std::vector<Seed> seeds = gguf_seeds();
  Rng r(env_u64("LA_FUZZ_SEED", 0x6775'6766'0001ull));
  const uint64_t iters = env_u64("LA_FUZZ_ITERS", kDefaultIters);
  Stats st;
  const auto t0 = std::chrono::steady_clock::now();
  for (uint64_t it = 0; it < iters; ++it) {
    const Seed& s = seeds[r.below(seeds.size())];
    std::string b = s.bytes;
    const size_t n = 1 + r.below(3);
    for (size_t m = 0; m < n; ++m) mutate_bytes(r, b, s.fields);
    write_bytes(path, b);
    check_one(
        path, [&] { st.checksum += touch_gguf(GgufFile::open(path)); }, st, it, b, keep);
    if (::testing::Test::HasFatalFailure()) return;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  st.print("gguf", iters, secs);
  EXPECT_GT(st.opened, 0u);    // the mutator is not so destructive that nothing survives...
  EXPECT_GT(st.rejected, 0u);  // ...nor so gentle that nothing is rejected
}

// Images (SPEC §8): every JPEG and PNG of the CLIP fixtures mutated (bit flips, extreme values,
// truncation); the decoders (libjpeg-turbo, libpng) must return an image or a la::Error naming
// the file, never crash, hang or allocate for a lying header.
TEST(FuzzReaders, ImageMutants) {
  TempDir dir;
  const std::string path = dir.file("image");
  const std::string keep = ::testing::TempDir() + "image_fuzz_failure.img";
  std::vector<std::string> seeds;
  for (const auto& e : std::filesystem::directory_iterator(std::string(LA_SOURCE_DIR) + "/tests/fixtures/clip/images"))
    seeds.push_back(read_file(e.path().string()));
  ASSERT_GE(seeds.size(), 10u);
  Rng r(env_u64("LA_FUZZ_SEED", 0x696d'6167'0001ull));
  const uint64_t iters = env_u64("LA_FUZZ_ITERS", kDefaultIters) / 4;  // a decode costs more than a header parse
  Stats st;
  const auto t0 = std::chrono::steady_clock::now();
  for (uint64_t it = 0; it < iters; ++it) {
    std::string b = seeds[r.below(seeds.size())];
    const size_t n = 1 + r.below(3);
    for (size_t m = 0; m < n; ++m) mutate_bytes(r, b, {});
    write_bytes(path, b);
    check_one(
        path,
        [&] {
          const RgbImage im = load_image(path);
          for (uint8_t v : im.pixels) st.checksum += v;
        },
        st, it, b, keep);
    if (::testing::Test::HasFatalFailure()) return;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  st.print("image", iters, secs);
  EXPECT_GT(st.opened, 0u);
  EXPECT_GT(st.rejected, 0u);
}

TEST(FuzzReaders, SafetensorsMutants) {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  const std::string keep = ::testing::TempDir() + "safetensors_fuzz_failure.safetensors";
  const std::vector<Seed> seeds = safetensors_seeds();
  Rng r(env_u64("LA_FUZZ_SEED", 0x7361'6665'0001ull));
  const uint64_t iters = env_u64("LA_FUZZ_ITERS", kDefaultIters);
  Stats st;
  const auto t0 = std::chrono::steady_clock::now();
  for (uint64_t it = 0; it < iters; ++it) {
    const Seed& s = seeds[r.below(seeds.size())];
    std::string b = s.bytes;
    const size_t n = 1 + r.below(3);
    for (size_t m = 0; m < n; ++m) {
      if (r.chance(85))
        mutate_safetensors_json(r, b);
      else
        mutate_bytes(r, b, s.fields);
    }
    write_bytes(path, b);
    check_one(
        path, [&] { st.checksum += touch_safetensors(SafetensorsFile::open(path)); }, st, it, b, keep);
    if (::testing::Test::HasFatalFailure()) return;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  st.print("safetensors", iters, secs);
  EXPECT_GT(st.opened, 0u);
  EXPECT_GT(st.rejected, 0u);
}

// Regressions for the safetensors reader found while writing this fuzzer.

std::string safetensors_bytes(const std::string& json, size_t data_bytes) {
  return join_safetensors(json, std::string(data_bytes, '\x01'));
}

// An empty tensor may share its offset with the tensor that follows it (the writer, and
// Hugging Face's, lay them out like that); that is not an overlap, whatever the key order.
TEST(SafetensorsReader, EmptyTensorSharingAnOffsetIsNotAnOverlap) {
  TempDir dir;
  const std::string p = dir.file("e.safetensors");
  write_bytes(p, safetensors_bytes(R"({"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                   R"("z_empty":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}})",
                                   8));
  SafetensorsFile f = SafetensorsFile::open(p);
  EXPECT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.get("z_empty").nbytes, 0u);

  SafetensorsWriter w;
  float x[2] = {1, 2};
  w.add_f32("w0", {2}, x);
  w.add("a_empty", SafeDType::F32, {0, 3}, nullptr, 0);
  w.add_f32("a_next", {2}, x);
  w.write(p);
  EXPECT_EQ(SafetensorsFile::open(p).tensors().size(), 3u);
}

// A dimension that does not fit in int64 must be rejected even when another dimension is 0
// (the element count is then 0 and the old check let it through as a negative int64).
TEST(SafetensorsReader, RejectsHugeDimensionNextToZero) {
  TempDir dir;
  const std::string p = dir.file("z.safetensors");
  for (const char* dim : {"9223372036854775808", "18446744073709551615", "4611686018427387904"}) {
    write_bytes(p, safetensors_bytes(
                       std::string(R"({"t":{"dtype":"F32","shape":[0,)") + dim + R"(],"data_offsets":[0,0]}})", 0));
    try {
      SafetensorsFile f = SafetensorsFile::open(p);
      ADD_FAILURE() << dim << ": opened with dims " << f.tensors()[0].shape[0] << ", " << f.tensors()[0].shape[1];
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("too large"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace la
