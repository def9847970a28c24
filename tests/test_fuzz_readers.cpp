// A bounded, deterministic mutation fuzzer over the file readers (GGUF and safetensors). Small
// valid seed files are mutated (bit flips, extreme values written over integer fields, truncation,
// duplicated / deleted / inserted regions, and for safetensors edits of the JSON numbers); every
// mutant must either open, with every tensor's bytes inside the mapping (they are all read), or
// throw la::Error. Any other exception, a crash or a sanitizer report fails the test.
//
// Fixed seed, so a failure reproduces; LA_FUZZ_ITERS=n runs n iterations per format instead of the
// default (sized to take well under 5 s in Release and 30 s under ASan), LA_FUZZ_SEED=s another seed.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "la/core/error.h"
#include "la/io/gguf.h"
#include "la/io/safetensors.h"
#include "support/test_support.h"

namespace la {
namespace {

using test::TempDir;

uint64_t env_u64(const char* name, uint64_t def) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : def;
}

// Deterministic across standard libraries: mt19937_64 is fully specified, and so is `below`.
class Rng {
 public:
  explicit Rng(uint64_t seed) : g_(seed) {}
  uint64_t next() { return g_(); }
  size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(g_() % n); }
  bool chance(unsigned percent) { return below(100) < percent; }

 private:
  std::mt19937_64 g_;
};

struct Field {
  size_t pos, size;  // an integer field of the seed file: 4 or 8 bytes
};

struct Seed {
  std::string bytes;
  std::vector<Field> fields;
};

constexpr uint32_t kExtreme32[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 30, 31, 32, 63, 64, 255, 0x7FFF, 0xFFFF,
                                   0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF};
constexpr uint64_t kExtreme64[] = {0,
                                   1,
                                   2,
                                   7,
                                   8,
                                   31,
                                   32,
                                   33,
                                   64,
                                   255,
                                   256,
                                   4096,
                                   0xFFFFFFFFull,
                                   0x100000000ull,
                                   0x7FFFFFFFFFFFFFFFull,
                                   0x8000000000000000ull,
                                   0xFFFFFFFFFFFFFFE0ull,
                                   0xFFFFFFFFFFFFFFF8ull,
                                   0xFFFFFFFFFFFFFFFFull};

// ------------------------------------------------------------------------------------------------
// Seeds

std::vector<uint8_t> pattern(size_t n, uint8_t k) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 31 + k);
  return v;
}

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
    auto a = pattern(4 * 6, 1), q = pattern(34 * 2, 2), h = pattern(2 * 5, 3), k = pattern(144, 4),
         x = pattern(210, 5), b16 = pattern(2 * 4, 6), q4 = pattern(18, 7);
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
    g.u64(2);  // tensors
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

// ------------------------------------------------------------------------------------------------
// Mutations

void put_le(std::string& b, size_t pos, uint64_t v, size_t n) {
  for (size_t i = 0; i < n && pos + i < b.size(); ++i) b[pos + i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}

uint64_t extreme(Rng& r, size_t width, size_t file_size) {
  if (width == 4) {
    if (r.chance(10)) return static_cast<uint32_t>(file_size - r.below(3));
    return kExtreme32[r.below(std::size(kExtreme32))];
  }
  if (r.chance(10)) return file_size + r.below(64) - 32;
  if (r.chance(10)) return uint64_t{1} << r.below(64);
  return kExtreme64[r.below(std::size(kExtreme64))];
}

void mutate_bytes(Rng& r, std::string& b, const std::vector<Field>& fields) {
  switch (r.below(8)) {
    case 0: {  // flip bits
      const size_t n = 1 + r.below(4);
      for (size_t i = 0; i < n && !b.empty(); ++i) b[r.below(b.size())] ^= static_cast<char>(1u << r.below(8));
      break;
    }
    case 1: {  // random byte values
      const size_t n = 1 + r.below(4);
      for (size_t i = 0; i < n && !b.empty(); ++i) b[r.below(b.size())] = static_cast<char>(r.next());
      break;
    }
    case 2:
    case 3: {  // an extreme value over a known integer field, or over any 4/8 bytes
      if (!fields.empty() && r.chance(70)) {
        const Field f = fields[r.below(fields.size())];
        // Only fields still where the seed put them (earlier mutations may have moved bytes).
        put_le(b, f.pos, extreme(r, f.size, b.size()), f.size);
      } else {
        const size_t w = r.chance(50) ? 4 : 8;
        if (b.size() >= w) put_le(b, r.below(b.size() - w + 1), extreme(r, w, b.size()), w);
      }
      break;
    }
    case 4: {  // truncate
      b.resize(r.below(b.size() + 1));
      break;
    }
    case 5: {  // duplicate a region (insert a copy elsewhere)
      if (b.empty()) break;
      const size_t at = r.below(b.size()), len = 1 + r.below(std::min<size_t>(64, b.size() - at));
      const std::string chunk = b.substr(at, len);
      b.insert(r.below(b.size() + 1), chunk);
      break;
    }
    case 6: {  // delete a region
      if (b.empty()) break;
      const size_t at = r.below(b.size());
      b.erase(at, 1 + r.below(std::min<size_t>(32, b.size() - at)));
      break;
    }
    case 7: {  // overwrite a region with a copy of another (same length)
      if (b.size() < 2) break;
      const size_t len = 1 + r.below(std::min<size_t>(32, b.size() / 2));
      const size_t from = r.below(b.size() - len + 1), to = r.below(b.size() - len + 1);
      const std::string chunk = b.substr(from, len);
      b.replace(to, len, chunk);
      break;
    }
  }
}

// Splits a safetensors file into its JSON header and data; false when the length is broken.
bool split_safetensors(const std::string& b, std::string* js, std::string* data) {
  if (b.size() < 8) return false;
  uint64_t n = 0;
  std::memcpy(&n, b.data(), 8);
  if (n > b.size() - 8) return false;
  *js = b.substr(8, n);
  *data = b.substr(8 + n);
  return true;
}

std::string join_safetensors(const std::string& js, const std::string& data) {
  const uint64_t n = js.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &n, 8);
  return out + js + data;
}

nlohmann::ordered_json extreme_json(Rng& r, uint64_t data_size) {
  switch (r.below(12)) {
    case 0: return -1;
    case 1: return 1.5;
    case 2: return "8";
    case 3: return nullptr;
    case 4: return nlohmann::ordered_json::array();
    case 5: return nlohmann::ordered_json::object();
    case 6: return data_size + r.below(3);
    case 7: return data_size - std::min<uint64_t>(data_size, r.below(9));
    case 8: return uint64_t{1} << r.below(64);
    case 9: return static_cast<int64_t>(-(int64_t{1} << r.below(63)));
    case 10: return 1e300;
    default: return kExtreme64[r.below(std::size(kExtreme64))];
  }
}

// Safetensors: edit the JSON header as a tree (values that stay syntactically valid JSON reach
// the reader's checks) or as text, then fix the 8-byte length so the mutant gets past it.
void mutate_safetensors_json(Rng& r, std::string& b) {
  std::string js, data;
  if (!split_safetensors(b, &js, &data)) return;
  auto j = nlohmann::ordered_json::parse(js, nullptr, false);
  if (j.is_discarded() || !j.is_object() || j.empty() || r.chance(10)) {
    // Text: replace a number or duplicate a region (may break the syntax or duplicate keys).
    std::vector<size_t> digits;
    for (size_t i = 0; i < js.size(); ++i)
      if (js[i] >= '0' && js[i] <= '9' && (i == 0 || js[i - 1] < '0' || js[i - 1] > '9')) digits.push_back(i);
    static const char* kNumbers[] = {"0", "-1", "18446744073709551616", "9223372036854775808", "1e300", "1.5"};
    if (!digits.empty() && r.chance(50)) {
      const size_t at = digits[r.below(digits.size())];
      size_t end = at;
      while (end < js.size() && js[end] >= '0' && js[end] <= '9') ++end;
      js.replace(at, end - at, kNumbers[r.below(std::size(kNumbers))]);
    } else if (!js.empty()) {
      const size_t at = r.below(js.size()), len = 1 + r.below(std::min<size_t>(48, js.size() - at));
      js.insert(r.below(js.size() + 1), js.substr(at, len));
    }
    b = join_safetensors(js, data);
    return;
  }
  std::vector<std::string> names;
  for (auto it = j.begin(); it != j.end(); ++it) names.push_back(it.key());
  const std::string name = names[r.below(names.size())];
  auto& t = j[name];
  static const char* kDtypes[] = {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "Q8_0", "", "f32"};
  static const char* kFields[] = {"dtype", "shape", "data_offsets"};
  switch (r.below(9)) {
    case 0:
    case 1:  // one end of data_offsets
      if (t.is_object() && t.contains("data_offsets") && t["data_offsets"].is_array() && !t["data_offsets"].empty())
        t["data_offsets"][r.below(t["data_offsets"].size())] = extreme_json(r, data.size());
      break;
    case 2:  // a dimension, or the rank
      if (t.is_object() && t.contains("shape") && t["shape"].is_array()) {
        auto& sh = t["shape"];
        if (!sh.empty() && r.chance(60))
          sh[r.below(sh.size())] = r.chance(50) ? extreme_json(r, data.size()) : nlohmann::ordered_json(r.below(5));
        else if (!sh.empty() && r.chance(50))
          sh.erase(sh.size() - 1);
        else
          sh.push_back(r.below(4));
      }
      break;
    case 3:  // dtype
      if (t.is_object()) t["dtype"] = kDtypes[r.below(std::size(kDtypes))];
      break;
    case 4:  // drop a field or give it the wrong JSON type
      if (t.is_object()) {
        const char* f = kFields[r.below(3)];
        if (r.chance(50))
          t.erase(f);
        else
          t[f] = extreme_json(r, data.size());
      }
      break;
    case 5: {  // copy another entry's data_offsets (overlaps) or its whole description
      const std::string other = names[r.below(names.size())];
      if (t.is_object() && j[other].is_object() && j[other].contains("data_offsets")) {
        if (r.chance(50))
          t["data_offsets"] = j[other]["data_offsets"];
        else
          j[name + "_copy"] = j[other];
      }
      break;
    }
    case 6:  // the entry itself becomes something else
      j[name] = extreme_json(r, data.size());
      break;
    case 7:  // metadata
      if (r.chance(50) || !(j["__metadata__"].is_object() || j["__metadata__"].is_null()))
        j["__metadata__"] = extreme_json(r, data.size());
      else
        j["__metadata__"]["k"] = extreme_json(r, data.size());
      break;
    case 8:  // an offset shift that keeps the length: slide a tensor within the data
      if (t.is_object() && t.contains("data_offsets") && t["data_offsets"].is_array() &&
          t["data_offsets"].size() == 2 && t["data_offsets"][0].is_number_unsigned() &&
          t["data_offsets"][1].is_number_unsigned()) {
        const uint64_t d = r.below(5);
        t["data_offsets"][0] = t["data_offsets"][0].get<uint64_t>() + d;
        t["data_offsets"][1] = t["data_offsets"][1].get<uint64_t>() + d;
      }
      break;
  }
  b = join_safetensors(j.dump(), data);
}

// Unlinks first: rewriting a truncated file makes ext4 (auto_da_alloc) flush it to disk on close,
// which costs milliseconds per mutant on a busy machine; a fresh file stays in the page cache.
void write_bytes(const std::string& path, const std::string& b) {
  std::remove(path.c_str());
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(b.data(), static_cast<std::streamsize>(b.size()));
  ASSERT_TRUE(f.good()) << path;
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

struct Stats {
  uint64_t opened = 0, rejected = 0, checksum = 0;
  std::map<std::string, int> reasons;  // error messages with the path, quoted names and numbers removed

  void note(const std::string& msg, const std::string& path) {
    std::string m = msg.substr(msg.find(path) == 0 ? path.size() : 0), out;
    bool in_quote = false;
    for (char c : m) {
      if (c == '\'') {
        in_quote = !in_quote;
        out += "'_'";
      } else if (!in_quote && !(c >= '0' && c <= '9')) {
        out += c;
      }
    }
    ++reasons[out.substr(0, 90)];
  }
  void print(const char* what, uint64_t iters, double secs) const {
    std::printf("%s: %llu mutants, %llu opened, %llu rejected, %.2f s\n", what,
                static_cast<unsigned long long>(iters), static_cast<unsigned long long>(opened),
                static_cast<unsigned long long>(rejected), secs);
    if (env_u64("LA_FUZZ_VERBOSE", 0))
      for (const auto& [r, n] : reasons) std::printf("  %6d %s\n", n, r.c_str());
  }
};

// Opens one mutant; anything but success or la::Error is a failure.
template <typename Fn>
void check_one(const std::string& path, const Fn& open_and_touch, Stats& st, uint64_t iter,
               const std::string& bytes, const std::string& keep_path) {
  try {
    open_and_touch();
    ++st.opened;
  } catch (const Error& e) {
    ++st.rejected;
    st.note(e.what(), path);
    if (std::string(e.what()).find(path) == std::string::npos) {
      ADD_FAILURE() << "iteration " << iter << ": error does not name the file: " << e.what();
      write_bytes(keep_path, bytes);
    }
  } catch (const std::exception& e) {
    write_bytes(keep_path, bytes);
    FAIL() << "iteration " << iter << ": unexpected exception (not la::Error): " << e.what()
           << "; mutant kept at " << keep_path;
  } catch (...) {
    write_bytes(keep_path, bytes);
    FAIL() << "iteration " << iter << ": unexpected non-std exception; mutant kept at " << keep_path;
  }
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
    check_one(path, [&] { st.checksum += touch_gguf(GgufFile::open(path)); }, st, it, b, keep);
    if (::testing::Test::HasFatalFailure()) return;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  st.print("gguf", iters, secs);
  EXPECT_GT(st.opened, 0u);    // the mutator is not so destructive that nothing survives...
  EXPECT_GT(st.rejected, 0u);  // ...nor so gentle that nothing is rejected
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
    check_one(path, [&] { st.checksum += touch_safetensors(SafetensorsFile::open(path)); }, st, it, b, keep);
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
    write_bytes(p, safetensors_bytes(std::string(R"({"t":{"dtype":"F32","shape":[0,)") + dim +
                                         R"(],"data_offsets":[0,0]}})",
                                     0));
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
