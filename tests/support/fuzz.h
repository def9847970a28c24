// The bounded, deterministic mutation fuzzer shared by tests/test_fuzz_readers.cpp (the GGUF and
// safetensors containers) and tests/test_fuzz_inputs.cpp (adapter files, Alpaca data,
// tokenizers): a fully specified RNG, byte-level mutations of a seed file (bit flips, extreme
// values over integer fields, truncation, duplicated / deleted / copied regions), edits of a
// safetensors JSON header, and the check that a reader either succeeds or throws la::Error.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "la/core/error.h"

namespace la::fuzz {

inline uint64_t env_u64(const char* name, uint64_t def) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : def;
}

// Mutants per test: LA_FUZZ_ITERS when set, else the test's default.
inline uint64_t iterations(uint64_t def) {
  return env_u64("LA_FUZZ_ITERS", def);
}

// Deterministic across standard libraries: mt19937_64 is fully specified, and so is `below`.
class Rng {
 public:
  explicit Rng(uint64_t seed) : g_(seed) {}
  uint64_t next() { return g_(); }
  size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(g_() % n); }
  bool chance(unsigned percent) { return below(100) < percent; }
  template <typename T>
  const T& pick(const std::vector<T>& v) {
    return v[below(v.size())];
  }

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

inline constexpr uint32_t kExtreme32[] = {0,   1,      2,      3,          4,          5,          7,         8,
                                          9,   12,     13,     30,         31,         32,         63,        64,
                                          255, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF};
inline constexpr uint64_t kExtreme64[] = {0,
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

inline std::vector<uint8_t> pattern(size_t n, uint8_t k) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 31 + k);
  return v;
}

// ------------------------------------------------------------------------------------------------
// Byte mutations

inline void put_le(std::string& b, size_t pos, uint64_t v, size_t n) {
  for (size_t i = 0; i < n && pos + i < b.size(); ++i) b[pos + i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}

inline uint64_t extreme(Rng& r, size_t width, size_t file_size) {
  if (width == 4) {
    if (r.chance(10)) return static_cast<uint32_t>(file_size - r.below(3));
    return kExtreme32[r.below(std::size(kExtreme32))];
  }
  if (r.chance(10)) return file_size + r.below(64) - 32;
  if (r.chance(10)) return uint64_t{1} << r.below(64);
  return kExtreme64[r.below(std::size(kExtreme64))];
}

inline void mutate_bytes(Rng& r, std::string& b, const std::vector<Field>& fields) {
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

// ------------------------------------------------------------------------------------------------
// Safetensors header edits

// Splits a safetensors file into its JSON header and data; false when the length is broken.
inline bool split_safetensors(const std::string& b, std::string* js, std::string* data) {
  if (b.size() < 8) return false;
  uint64_t n = 0;
  std::memcpy(&n, b.data(), 8);
  if (n > b.size() - 8) return false;
  *js = b.substr(8, n);
  *data = b.substr(8 + n);
  return true;
}

inline std::string join_safetensors(const std::string& js, const std::string& data) {
  const uint64_t n = js.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &n, 8);
  return out + js + data;
}

inline nlohmann::ordered_json extreme_json(Rng& r, uint64_t data_size) {
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
inline void mutate_safetensors_json(Rng& r, std::string& b) {
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
  static const char* kDtypes[] = {"F64", "F32", "F16",  "BF16", "I64", "I32", "I16",
                                  "I8",  "U8",  "BOOL", "Q8_0", "",    "f32"};
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

// ------------------------------------------------------------------------------------------------
// Running mutants

// Unlinks first: rewriting a truncated file makes ext4 (auto_da_alloc) flush it to disk on close,
// which costs milliseconds per mutant on a busy machine; a fresh file stays in the page cache.
inline void write_bytes(const std::string& path, const std::string& b) {
  std::remove(path.c_str());
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(b.data(), static_cast<std::streamsize>(b.size()));
  ASSERT_TRUE(f.good()) << path;
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
    std::printf("%s: %llu mutants, %llu opened, %llu rejected, %.2f s\n", what, static_cast<unsigned long long>(iters),
                static_cast<unsigned long long>(opened), static_cast<unsigned long long>(rejected), secs);
    if (env_u64("LA_FUZZ_VERBOSE", 0))
      for (const auto& [r, n] : reasons) std::printf("  %6d %s\n", n, r.c_str());
  }
};

// True when `msg` is one line apart from what it quotes ('...'): messages quote names, metadata
// and pieces from the file as they are (the CLI prints every message through la::printable), but
// a message of their own never spans lines.
inline bool one_line_outside_quotes(const std::string& msg) {
  bool in_quote = false;
  for (char c : msg) {
    if (c == '\'') in_quote = !in_quote;
    if (!in_quote && (c == '\n' || c == '\r')) return false;
  }
  return true;
}

// Runs one mutant; anything but success or la::Error (naming the file once, on one line) is a
// failure.
// The mutant is kept at `keep_path` for replaying.
template <typename Fn>
void check_one(const std::string& path, const Fn& open_and_touch, Stats& st, uint64_t iter, const std::string& bytes,
               const std::string& keep_path) {
  try {
    open_and_touch();
    ++st.opened;
  } catch (const Error& e) {
    ++st.rejected;
    const std::string msg = e.what();
    st.note(msg, path);
    const size_t at = msg.find(path);
    // (A file that holds its own path may be quoted with it; one that holds a ' can fool the
    // quote tracking.)
    if (at == std::string::npos) {
      ADD_FAILURE() << "iteration " << iter << ": error does not name the file: " << msg;
      write_bytes(keep_path, bytes);
    } else if (msg.find(path, at + 1) != std::string::npos && bytes.find(path) == std::string::npos) {
      ADD_FAILURE() << "iteration " << iter << ": error names the file more than once: " << msg;
      write_bytes(keep_path, bytes);
    } else if (!one_line_outside_quotes(msg) && bytes.find('\'') == std::string::npos) {
      ADD_FAILURE() << "iteration " << iter << ": error spans lines: " << msg;
      write_bytes(keep_path, bytes);
    }
  } catch (const std::exception& e) {
    write_bytes(keep_path, bytes);
    FAIL() << "iteration " << iter << ": unexpected exception (not la::Error): " << e.what() << "; mutant kept at "
           << keep_path;
  } catch (...) {
    write_bytes(keep_path, bytes);
    FAIL() << "iteration " << iter << ": unexpected non-std exception; mutant kept at " << keep_path;
  }
}

// A copy of a random seed with one to three byte mutations (mutate_bytes).
inline std::string byte_mutant(Rng& r, const std::vector<Seed>& seeds) {
  const Seed& s = seeds[r.below(seeds.size())];
  std::string b = s.bytes;
  const size_t n = 1 + r.below(3);
  for (size_t m = 0; m < n; ++m) mutate_bytes(r, b, s.fields);
  return b;
}

// Mutants of every seed, `mutate` applied to a copy, each written to `path` and checked; prints
// the statistics and expects that some mutants load and some do not.
template <typename Mutate, typename Load>
void run_mutants(const char* what, const std::string& path, const std::string& keep, uint64_t seed,
                 uint64_t default_iters, const Mutate& mutate, const Load& load) {
  Rng r(env_u64("LA_FUZZ_SEED", seed));
  const uint64_t iters = iterations(default_iters);
  Stats st;
  const auto t0 = std::chrono::steady_clock::now();
  for (uint64_t it = 0; it < iters; ++it) {
    const std::string b = mutate(r);
    write_bytes(path, b);
    check_one(
        path, [&] { st.checksum += load(); }, st, it, b, keep);
    if (::testing::Test::HasFatalFailure()) return;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  st.print(what, iters, secs);
  if (iters >= 200) {
    EXPECT_GT(st.opened, 0u) << what;    // the mutator is not so destructive that nothing survives...
    EXPECT_GT(st.rejected, 0u) << what;  // ...nor so gentle that nothing is rejected
  }
}

inline std::string keep_path(const std::string& name) {
  return ::testing::TempDir() + name;
}

}  // namespace la::fuzz
