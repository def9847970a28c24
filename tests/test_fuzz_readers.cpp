// A bounded, deterministic mutation fuzzer over the file readers (GGUF, safetensors and PyTorch
// .pth). Small valid seed files are mutated (bit flips, extreme values written over integer fields,
// truncation, duplicated / deleted / inserted regions, for safetensors edits of the JSON numbers,
// and for .pth the pickle alone, re-wrapped in a valid archive so its CRC lets it through); every
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
#include "la/formats/pth.h"
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

// .pth seeds: our writer's archive (f32 / f16 / bf16, views sharing a storage, a root key) and
// the two torch.save fixtures (torch 1.13 and 2.x: OrderedDict with _metadata, a parameter, an
// int64 tensor, nested dicts). The ZIP's sizes and offsets are marked as fields.
std::vector<Seed> pth_seeds() {
  std::vector<std::string> files;
  {
    TempDir dir;
    const auto w = pattern(4 * 12, 1), h = pattern(2 * 5, 2), b = pattern(2 * 6, 3);
    PthWriter wr;
    wr.add("w", DType::F32, {3, 4}, w.data());
    wr.add("h", DType::F16, {5}, h.data());
    wr.add("b", DType::BF16, {2, 3}, b.data());
    wr.add_view("w_t", "w", 0, {4, 3}, {1, 4});
    wr.add_view("w_rows", "w", 4, {2, 4}, {4, 1});
    wr.set_root_key("model");
    wr.write(dir.file("s.pth"));
    files.push_back(read_file(dir.file("s.pth")));
  }
  const std::string fixtures = std::string(LA_SOURCE_DIR) + "/tests/fixtures/pth/";
  files.push_back(read_file(fixtures + "torch1_state_dict.pth"));
  files.push_back(read_file(fixtures + "torch2_nested.pth"));
  std::vector<Seed> seeds;
  for (std::string& bytes : files) {
    Seed s;
    s.bytes = std::move(bytes);
    auto mark = [&](const char* sig, std::initializer_list<Field> fields) {
      for (size_t at = s.bytes.find(sig); at != std::string::npos; at = s.bytes.find(sig, at + 1))
        for (Field f : fields) s.fields.push_back({at + f.pos, f.size});
    };
    mark("PK\x03\x04", {{14, 4}, {18, 4}, {22, 4}});           // local: crc, sizes
    mark("PK\x01\x02", {{20, 4}, {24, 4}, {42, 4}});           // central: sizes, offset
    mark("PK\x06\x06", {{24, 8}, {32, 8}, {40, 8}, {48, 8}});  // ZIP64 end: counts, size, offset
    mark("PK\x06\x07", {{8, 8}});                              // locator: the ZIP64 end's offset
    mark("PK\x05\x06", {{8, 4}, {12, 4}, {16, 4}});            // end: counts, size, offset
    seeds.push_back(std::move(s));
  }
  return seeds;
}

// Pickle instructions of a protocol-2 stream as torch writes it: [begin, end) of each, or empty
// when an opcode is not one of these (a mutant already broken).
std::vector<std::pair<size_t, size_t>> pickle_instructions(const std::string& b) {
  std::vector<std::pair<size_t, size_t>> out;
  size_t pos = 0;
  while (pos < b.size()) {
    const auto op = static_cast<uint8_t>(b[pos]);
    size_t len = 1;
    auto prefixed = [&](size_t width) {
      if (pos + 1 + width > b.size()) return false;
      uint64_t n = 0;
      std::memcpy(&n, b.data() + pos + 1, width);
      len = 1 + width + static_cast<size_t>(std::min<uint64_t>(n, b.size()));
      return true;
    };
    switch (op) {
      case '(':
      case '.':
      case '0':
      case 'N':
      case 'Q':
      case 'R':
      case ']':
      case 'a':
      case 'b':
      case 'e':
      case 's':
      case 't':
      case 'u':
      case '}':
      case ')':
      case 0x85:
      case 0x86:
      case 0x87:
      case 0x88:
      case 0x89: break;
      case 0x80:
      case 'K':
      case 'h':
      case 'q': len = 2; break;
      case 'M': len = 3; break;
      case 'J':
      case 'j':
      case 'r': len = 5; break;
      case 'G': len = 9; break;
      case 'X':
        if (!prefixed(4)) return {};
        break;
      case 0x8a:
        if (!prefixed(1)) return {};
        break;
      case 'c': {
        const size_t a = b.find('\n', pos), e = a == std::string::npos ? a : b.find('\n', a + 1);
        if (e == std::string::npos) return {};
        len = e + 1 - pos;
        break;
      }
      default: return {};
    }
    if (pos + len > b.size()) return {};
    out.push_back({pos, pos + len});
    pos += len;
  }
  return out;
}

// Edits a pickle by its instructions, so that most mutants get past the opcode scan and reach the
// machine: a small integer argument set to an extreme, an instruction deleted, repeated, moved or
// swapped for another argument-free one, a string argument (a storage key, 'storage') replaced.
void mutate_pickle(Rng& r, std::string& b) {
  const auto ins = pickle_instructions(b);
  if (ins.size() < 3) return mutate_bytes(r, b, {});
  const auto [p, e] = ins[1 + r.below(ins.size() - 2)];  // never the PROTO or the STOP
  const std::string one = b.substr(p, e - p);
  static const char kNoArg[] = {'(', '0', 'N', 'Q', 'R',    ']',    'a',    'b',    'e',    's',
                                't', 'u', '}', ')', '\x85', '\x86', '\x87', '\x88', '\x89', '.'};
  static const char* kStrings[] = {"", "0", "1", "7", "99", "storage", "cpu", "x.y", "../data.pkl"};
  switch (r.below(6)) {
    case 0:  // an integer argument
      if (one[0] == 'K' || one[0] == 'h' || one[0] == 'q') {
        b[p + 1] = static_cast<char>(r.chance(50) ? r.below(8) : kExtreme32[r.below(std::size(kExtreme32))]);
      } else if (one[0] == 'J' || one[0] == 'M' || one[0] == 'j' || one[0] == 'r') {
        put_le(b, p + 1, kExtreme32[r.below(std::size(kExtreme32))], one[0] == 'M' ? 2 : 4);
      } else if (one[0] == 'X') {
        std::string x(kStrings[r.below(std::size(kStrings))]);
        const uint32_t n = static_cast<uint32_t>(x.size());
        b.replace(p, e - p, "X" + std::string(reinterpret_cast<const char*>(&n), 4) + x);
      } else {
        b[p] = kNoArg[r.below(std::size(kNoArg))];
      }
      break;
    case 1: b.erase(p, e - p); break;
    case 2: {  // repeat it elsewhere
      const auto at = ins[1 + r.below(ins.size() - 1)].first;
      b.insert(at, one);
      break;
    }
    case 3:  // swap with the next instruction
      if (e < b.size()) {
        const auto [p2, e2] = *std::find_if(ins.begin(), ins.end(), [&](auto x) { return x.first == e; });
        b.replace(p, e2 - p, b.substr(p2, e2 - p2) + one);
      }
      break;
    case 4:  // another argument-free opcode in place of one
      if (e - p == 1)
        b[p] = kNoArg[r.below(std::size(kNoArg))];
      else
        b.insert(p, 1, kNoArg[r.below(std::size(kNoArg))]);
      break;
    default: mutate_bytes(r, b, {}); break;
  }
}

// Reads every byte every tensor reaches through its strides (after checking that lies inside the
// mapping), as a user of PthTensor would.
uint64_t touch_pth(const PthFile& f) {
  uint64_t sum = 0;
  for (const auto& t : f.tensors()) {
    EXPECT_EQ(f.find(t.name), &t);
    EXPECT_EQ(t.shape.size(), t.strides.size()) << t.name;
    int64_t last = 0;
    for (size_t d = 0; d < t.shape.size(); ++d) {
      EXPECT_GE(t.shape[d], 0) << t.name;
      EXPECT_GE(t.strides[d], 0) << t.name;
      if (t.shape[d] > 0) last += (t.shape[d] - 1) * t.strides[d];
    }
    const size_t es = t.dtype == DType::F32 ? 4 : 2;
    if (t.numel() > 0)
      sum += touch(*f.file(), static_cast<const uint8_t*>(t.data), static_cast<size_t>(last + 1) * es, t.name);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % es, 0u) << t.name;
    sum += t.contiguous();
  }
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
  for (const Seed& s : pth_seeds()) {
    if (out) write_bytes(std::string(out) + "/pth-" + std::to_string(k++) + ".pth", s.bytes);
    write_bytes(dir.file("s.pth"), s.bytes);
    auto f = PthFile::open(dir.file("s.pth"));
    EXPECT_FALSE(f->tensors().empty());
    touch_pth(*f);
  }
}

TEST(FuzzReaders, GgufMutants) {
  TempDir dir;
  const std::string path = dir.file("m.gguf");
  const std::vector<Seed> seeds = gguf_seeds();
  run_mutants(
      "gguf", path, keep_path("gguf_fuzz_failure.gguf"), 0x6775'6766'0001ull, kDefaultIters,
      [&](Rng& r) { return byte_mutant(r, seeds); }, [&] { return touch_gguf(GgufFile::open(path)); });
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
  const std::vector<Seed> seeds = safetensors_seeds();
  run_mutants(
      "safetensors", path, keep_path("safetensors_fuzz_failure.safetensors"), 0x7361'6665'0001ull, kDefaultIters,
      [&](Rng& r) {
        const Seed& s = seeds[r.below(seeds.size())];
        std::string b = s.bytes;
        const size_t n = 1 + r.below(3);
        for (size_t m = 0; m < n; ++m) {
          if (r.chance(85))
            mutate_safetensors_json(r, b);
          else
            mutate_bytes(r, b, s.fields);
        }
        return b;
      },
      [&] { return touch_safetensors(SafetensorsFile::open(path)); });
}

// The whole archive mutated: the ZIP's records, offsets and sizes (a mutant of data.pkl's bytes
// mostly stops at its CRC; PthPickleMutants gets past it).
TEST(FuzzReaders, PthMutants) {
  TempDir dir;
  const std::string path = dir.file("m.pth");
  const std::vector<Seed> seeds = pth_seeds();
  run_mutants(
      "pth", path, keep_path("pth_fuzz_failure.pth"), 0x7074'6830'0001ull, kDefaultIters,
      [&](Rng& r) { return byte_mutant(r, seeds); }, [&] { return touch_pth(*PthFile::open(path)); });
}

// data.pkl alone mutated (mostly instruction by instruction) and put back into a valid archive
// (its CRC right): the pickle machine meets damaged opcodes, lengths, memo indices, marks, tuples
// of the wrong shape, storages of the wrong size, every one of which must be a la::Error.
TEST(FuzzReaders, PthPickleMutants) {
  TempDir dir;
  const std::string path = dir.file("p.pth");
  std::vector<std::vector<ZipRecord>> seeds;
  for (const Seed& s : pth_seeds()) {
    write_bytes(path, s.bytes);
    seeds.push_back(read_stored_zip(path));
  }
  run_mutants(
      "pth pickle", path, keep_path("pth_pickle_fuzz_failure.pth"), 0x7074'6831'0001ull, kDefaultIters,
      [&](Rng& r) {
        std::vector<ZipRecord> records = seeds[r.below(seeds.size())];
        for (ZipRecord& rec : records) {
          if (!rec.name.ends_with("/data.pkl")) continue;
          const size_t n = 1 + r.below(3);
          for (size_t m = 0; m < n; ++m) mutate_pickle(r, rec.bytes);
        }
        return stored_zip(records, r.chance(10));
      },
      [&] { return touch_pth(*PthFile::open(path)); });
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
