// The mutation fuzzer of test_fuzz_readers.cpp (tests/support/fuzz.h) over the readers of what a
// user hands us besides a model: adapter files (safetensors and GGUF, with and without a model
// config), Alpaca data (a JSON array and JSONL, then tokenized) and tokenizers (llama2.c
// tokenizer.bin, a GGUF vocabulary, a SentencePiece .model; each one that loads also encodes and
// decodes a few texts). The seeds are made here (synthetic records, a trained BPE vocabulary,
// Adapter::create); only the SentencePiece test needs ../shared/data (it skips without it).
//
// Each mutant must load, with the result's invariants holding, or throw la::Error naming the file
// on one line. Any other exception, a crash or a sanitizer report fails the test.
//
// Fixed seeds, so a failure reproduces; LA_FUZZ_ITERS=n runs n mutants per test instead of the
// default (sized so the whole file takes well under 30 s in Release on one core; the acceptance
// run is LA_FUZZ_ITERS=20000 under the asan preset), LA_FUZZ_SEED=s another seed,
// LA_FUZZ_VERBOSE=1 prints the error messages by kind.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>
#include <vector>

#include "la/core/error.h"
#include "la/core/mapped_file.h"
#include "la/data/alpaca.h"
#include "la/data/dataset.h"
#include "la/data/synthetic.h"
#include "la/formats/gguf.h"
#include "la/formats/safetensors.h"
#include "la/io/adapter_file.h"
#include "la/model/adapter.h"
#include "la/tokenizer/bpe_tokenizer.h"
#include "la/tokenizer/bpe_trainer.h"
#include "la/tokenizer/byte_bpe_tokenizer.h"
#include "la/tokenizer/gguf_vocab.h"
#include "la/tokenizer/pretokenizer.h"
#include "la/tokenizer/tokenizer.h"
#include "support/fuzz.h"
#include "support/test_support.h"

namespace la {
namespace {

using test::TempDir;
using namespace fuzz;
using ojson = nlohmann::ordered_json;

[[maybe_unused]] const bool kOneThread = test::run_library_on_one_thread();

bool valid_utf8(std::string_view s) {
  for (size_t pos = 0; pos < s.size();) {
    const int n = utf8_char_length(s.substr(pos));
    if (n <= 0) return false;
    pos += static_cast<size_t>(n);
  }
  return true;
}

// Strings mutations put where the readers expect names, modes, numbers or pieces.
const std::vector<std::string> kStrings = {"",
                                           "x",
                                           "llama",
                                           "llama_adapter",
                                           "llama-adapter",
                                           "tanh",
                                           "identity",
                                           "TANH",
                                           "gpt2",
                                           "0",
                                           "-1",
                                           "3",
                                           "10",
                                           "4096",
                                           "4097",
                                           "99999999999999999999",
                                           " 3",
                                           "3x",
                                           "+3",
                                           "1.5",
                                           "1e3",
                                           "<unk>",
                                           "<s>",
                                           "</s>",
                                           "<0x0A>",
                                           "<0x41>",
                                           "<0xZZ>",
                                           "<0x0a>",
                                           "<0x",
                                           "\xE2\x96\x81",
                                           "\xE2\x96\x81\xE2\x96\x81",
                                           "\xE2\x96",
                                           "\xFF",
                                           "\xC0\x80",
                                           "\xED\xA0\x80",
                                           "\xF4\x90\x80\x80",
                                           "a\nb",
                                           "'",
                                           "<|x|>",
                                           "\n<s>\n",
                                           " ",
                                           std::string(1, '\0'),
                                           std::string(300, 'a')};

// ------------------------------------------------------------------------------------------------
// GGUF documents: metadata and tensors as data, mutated as a structure (values of other types,
// extreme numbers, missing / duplicated / renamed keys, array elements, tensor dims, types, names
// and bytes), then serialized recording every integer field for the byte mutations.

enum GType : uint32_t { kU8 = 0, kI8, kU16, kI16, kU32, kI32, kF32, kBool, kStr, kArr, kU64, kI64, kF64 };

template <typename T>
std::string le(T v) {
  std::string s(sizeof v, '\0');
  std::memcpy(s.data(), &v, sizeof v);
  return s;
}
std::string gstr(const std::string& s) {
  return le<uint64_t>(s.size()) + s;
}

size_t gwidth(uint32_t t) {
  switch (t) {
    case kU8:
    case kI8:
    case kBool: return 1;
    case kU16:
    case kI16: return 2;
    case kU32:
    case kI32:
    case kF32: return 4;
    case kU64:
    case kI64:
    case kF64: return 8;
    default: return 0;
  }
}

struct GKv {
  std::string key;
  uint32_t type = kU32;
  std::string value;               // the encoded scalar (type != kArr)
  uint32_t elem_type = kU32;       // type == kArr
  std::vector<std::string> elems;  // encoded elements
};
struct GTensor {
  std::string name;
  std::vector<uint64_t> dims;
  uint32_t ggml_type = 0;
  std::string data;
};
struct GDoc {
  std::vector<GKv> kvs;
  std::vector<GTensor> tensors;
};

GKv kv(const std::string& key, uint32_t type, std::string value) {
  return {key, type, std::move(value), 0, {}};
}
GKv kv_u32(const std::string& k, uint32_t v) {
  return kv(k, kU32, le(v));
}
GKv kv_str(const std::string& k, const std::string& v) {
  return kv(k, kStr, gstr(v));
}
GKv kv_bool(const std::string& k, bool v) {
  return kv(k, kBool, std::string(1, v ? '\1' : '\0'));
}
template <typename T>
GKv kv_arr(const std::string& k, uint32_t elem_type, const std::vector<T>& v) {
  GKv x{k, kArr, "", elem_type, {}};
  for (const T& e : v) {
    if constexpr (std::is_same_v<T, std::string>)
      x.elems.push_back(gstr(e));
    else
      x.elems.push_back(le(e));
  }
  return x;
}
GTensor f32_tensor(const std::string& name, std::vector<uint64_t> dims, const float* v, size_t n) {
  return {name, std::move(dims), 0, std::string(reinterpret_cast<const char*>(v), n * sizeof(float))};
}

// An encoded value of type t: an extreme number, or a string from the dictionary.
std::string random_value(Rng& r, uint32_t t) {
  switch (t) {
    case kU8:
    case kI8: return std::string(1, static_cast<char>(r.chance(50) ? r.below(8) : r.next()));
    case kBool: return std::string(1, static_cast<char>(r.below(3)));
    case kU16:
    case kI16: return le(static_cast<uint16_t>(r.chance(50) ? r.below(8) : r.next()));
    case kU32: return le(static_cast<uint32_t>(kExtreme32[r.below(std::size(kExtreme32))]));
    case kI32:
      return le(static_cast<int32_t>(r.chance(50) ? -static_cast<int32_t>(r.below(4)) - 1
                                                  : static_cast<int32_t>(kExtreme32[r.below(std::size(kExtreme32))])));
    case kU64: return le(kExtreme64[r.below(std::size(kExtreme64))]);
    case kI64:
      return le(static_cast<int64_t>(r.chance(50) ? -static_cast<int64_t>(r.below(4)) - 1
                                                  : static_cast<int64_t>(kExtreme64[r.below(std::size(kExtreme64))])));
    case kF32: {
      static const float kF[] = {0.f, -1.f, 0.5f, 3.f, 1e30f, -1e30f, NAN, INFINITY, -INFINITY, 1e-40f, 2.5e9f};
      return le(kF[r.below(std::size(kF))]);
    }
    case kF64: {
      static const double kD[] = {0., -1., 3., 1e300, -1e300, NAN, INFINITY, 4e9, 9.3e18, 1e-310};
      return le(kD[r.below(std::size(kD))]);
    }
    case kStr: return gstr(r.pick(kStrings));
    default: return "";
  }
}

uint32_t random_scalar_type(Rng& r) {
  static const uint32_t kTypes[] = {kU8, kI8, kU16, kI16, kU32, kI32, kF32, kBool, kStr, kU64, kI64, kF64};
  return kTypes[r.below(std::size(kTypes))];
}

// Re-encodes array elements as another element type (numbers convert; strings from numbers).
std::string convert_elem(const std::string& e, uint32_t from, uint32_t to) {
  double x = 0;
  switch (from) {
    case kU8: x = static_cast<uint8_t>(e[0]); break;
    case kI8: x = static_cast<int8_t>(e[0]); break;
    case kU32: {
      uint32_t v;
      std::memcpy(&v, e.data(), 4);
      x = v;
      break;
    }
    case kI32: {
      int32_t v;
      std::memcpy(&v, e.data(), 4);
      x = v;
      break;
    }
    case kF32: {
      float v;
      std::memcpy(&v, e.data(), 4);
      x = v;
      break;
    }
    case kF64: {
      std::memcpy(&x, e.data(), 8);
      break;
    }
    case kI64: {
      int64_t v;
      std::memcpy(&v, e.data(), 8);
      x = static_cast<double>(v);
      break;
    }
    case kStr: x = static_cast<double>(e.size()); break;
    default: break;
  }
  const double c = std::isfinite(x) ? std::clamp(x, -1e9, 1e9) : 0.0;
  switch (to) {
    case kU8: return std::string(1, static_cast<char>(static_cast<int64_t>(c) & 0xFF));
    case kI32: return le(static_cast<int32_t>(c));
    case kU32: return le(static_cast<uint32_t>(static_cast<int64_t>(c)));
    case kI64: return le(static_cast<int64_t>(c));
    case kF32: return le(static_cast<float>(x));
    case kF64: return le(x);
    case kStr: return gstr(std::to_string(static_cast<int64_t>(c)));
    default: return le(static_cast<uint32_t>(0));
  }
}

struct GDict {
  std::vector<std::string> keys;     // metadata keys the reader looks for
  std::vector<std::string> tensors;  // tensor names it looks for
};

void mutate_gguf_doc(Rng& r, GDoc& d, const GDict& dict) {
  switch (r.below(10)) {
    case 0:
    case 1: {  // a metadata value: another value of its type, or another type
      if (d.kvs.empty()) break;
      GKv& k = d.kvs[r.below(d.kvs.size())];
      if (k.type == kArr) {
        if (k.elems.empty()) break;
        k.elems[r.below(k.elems.size())] = random_value(r, k.elem_type);
        break;
      }
      if (r.chance(50)) k.type = random_scalar_type(r);
      k.value = random_value(r, k.type);
      break;
    }
    case 2:  // drop a key
      if (!d.kvs.empty()) d.kvs.erase(d.kvs.begin() + static_cast<std::ptrdiff_t>(r.below(d.kvs.size())));
      break;
    case 3: {  // a key the reader knows, with some value, in some place (now and then a duplicate)
      GKv k;
      k.key = r.pick(dict.keys);
      k.type = random_scalar_type(r);
      k.value = random_value(r, k.type);
      if (!r.chance(20)) std::erase_if(d.kvs, [&](const GKv& x) { return x.key == k.key; });
      d.kvs.insert(d.kvs.begin() + static_cast<std::ptrdiff_t>(r.below(d.kvs.size() + 1)), k);
      break;
    }
    case 4: {  // rename a key
      if (d.kvs.empty()) break;
      GKv& k = d.kvs[r.below(d.kvs.size())];
      k.key = r.chance(70) ? r.pick(dict.keys) : k.key + r.pick(kStrings);
      break;
    }
    case 5: {  // an array: lose, gain or reorder elements, or change the element type
      std::vector<size_t> arrays;
      for (size_t i = 0; i < d.kvs.size(); ++i)
        if (d.kvs[i].type == kArr) arrays.push_back(i);
      if (arrays.empty()) break;
      GKv& k = d.kvs[r.pick(arrays)];
      switch (r.below(5)) {
        case 0:
          if (!k.elems.empty()) k.elems.erase(k.elems.begin() + static_cast<std::ptrdiff_t>(r.below(k.elems.size())));
          break;
        case 1:
          if (!k.elems.empty()) k.elems.push_back(k.elems[r.below(k.elems.size())]);
          break;
        case 2:
          if (k.elems.size() >= 2) std::swap(k.elems[r.below(k.elems.size())], k.elems[r.below(k.elems.size())]);
          break;
        case 3: {
          static const uint32_t kTo[] = {kU8, kI32, kU32, kI64, kF32, kF64, kStr};
          const uint32_t to = kTo[r.below(std::size(kTo))];
          for (auto& e : k.elems) e = convert_elem(e, k.elem_type, to);
          k.elem_type = to;
          break;
        }
        case 4:
          if (r.chance(30))
            k.elems.clear();
          else if (!k.elems.empty())
            k.elems.resize(r.below(k.elems.size()));
          break;
      }
      break;
    }
    case 6:
    case 7: {  // a tensor: dims, type, name, bytes
      if (d.tensors.empty()) break;
      GTensor& t = d.tensors[r.below(d.tensors.size())];
      switch (r.below(7)) {
        case 0:
          if (!t.dims.empty())
            t.dims[r.below(t.dims.size())] = r.chance(50) ? r.below(5) : kExtreme64[r.below(std::size(kExtreme64))];
          break;
        case 1:
          if (t.dims.size() >= 2 && r.chance(50))
            std::swap(t.dims[0], t.dims[1]);
          else if (r.chance(50))
            t.dims.push_back(1);
          else if (!t.dims.empty())
            t.dims.pop_back();
          break;
        case 2: {
          static const uint32_t kTypes[] = {0, 1, 2, 8, 12, 14, 30, 99};
          t.ggml_type = kTypes[r.below(std::size(kTypes))];
          break;
        }
        case 3: t.name = r.chance(70) ? r.pick(dict.tensors) : t.name + r.pick(kStrings); break;
        case 4: {  // a NaN or an infinity among the values
          static const uint32_t kBits[] = {0x7FC00000u, 0x7F800000u, 0xFF800000u, 0x7F7FFFFFu};
          if (t.data.size() >= 4) put_le(t.data, 4 * r.below(t.data.size() / 4), kBits[r.below(std::size(kBits))], 4);
          break;
        }
        case 5:
          if (r.chance(50))
            t.data.resize(r.below(t.data.size() + 1));
          else
            t.data.append(4 * (1 + r.below(4)), '\0');
          break;
        case 6:
          if (r.chance(50))
            d.tensors.push_back(t);
          else
            d.tensors.erase(d.tensors.begin() + static_cast<std::ptrdiff_t>(r.below(d.tensors.size())));
          break;
      }
      break;
    }
    case 8:  // reorder
      if (d.kvs.size() >= 2) std::swap(d.kvs[r.below(d.kvs.size())], d.kvs[r.below(d.kvs.size())]);
      if (d.tensors.size() >= 2 && r.chance(50))
        std::swap(d.tensors[r.below(d.tensors.size())], d.tensors[r.below(d.tensors.size())]);
      break;
    case 9: {  // general.alignment
      static const uint32_t kAlign[] = {0, 1, 3, 8, 16, 64, 4096, 0x80000000u};
      d.kvs.insert(d.kvs.begin(), kv_u32("general.alignment", kAlign[r.below(std::size(kAlign))]));
      break;
    }
  }
}

// GGUF v3 bytes, laid out as a writer would (data at offsets aligned to general.alignment when
// that is a sensible u32, else 32), with every count, length, type, dim and offset recorded.
Seed serialize_gguf(const GDoc& d) {
  Seed s;
  auto u32 = [&](uint32_t v) {
    s.fields.push_back({s.bytes.size(), 4});
    s.bytes += le(v);
  };
  auto u64 = [&](uint64_t v) {
    s.fields.push_back({s.bytes.size(), 8});
    s.bytes += le(v);
  };
  auto value = [&](uint32_t t, const std::string& v) {
    if (gwidth(t) >= 4 || t == kStr) s.fields.push_back({s.bytes.size(), t == kStr ? 8 : gwidth(t)});
    s.bytes += v;
  };
  uint64_t align = 32;
  for (const GKv& k : d.kvs) {
    if (k.key == "general.alignment" && k.type == kU32 && k.value.size() == 4) {
      uint32_t a;
      std::memcpy(&a, k.value.data(), 4);
      if (a >= 1 && a <= 4096 && (a & (a - 1)) == 0) align = a;
    }
  }
  s.bytes = "GGUF";
  u32(3);
  u64(d.tensors.size());
  u64(d.kvs.size());
  for (const GKv& k : d.kvs) {
    u64(k.key.size());
    s.bytes += k.key;
    u32(k.type);
    if (k.type == kArr) {
      u32(k.elem_type);
      u64(k.elems.size());
      for (const auto& e : k.elems) value(k.elem_type, e);
    } else {
      value(k.type, k.value);
    }
  }
  std::vector<uint64_t> offsets;
  uint64_t off = 0;
  for (const GTensor& t : d.tensors) {
    off = (off + align - 1) / align * align;
    offsets.push_back(off);
    off += t.data.size();
  }
  for (size_t i = 0; i < d.tensors.size(); ++i) {
    const GTensor& t = d.tensors[i];
    u64(t.name.size());
    s.bytes += t.name;
    u32(static_cast<uint32_t>(t.dims.size()));
    for (uint64_t x : t.dims) u64(x);
    u32(t.ggml_type);
    u64(offsets[i]);
  }
  while (s.bytes.size() % align) s.bytes.push_back('\0');
  const size_t data_start = s.bytes.size();
  for (size_t i = 0; i < d.tensors.size(); ++i) {
    s.bytes.resize(data_start + offsets[i], '\0');
    s.bytes += d.tensors[i].data;
  }
  return s;
}

// Mutants of GGUF seeds: a document is mutated as a structure (then, sometimes, as bytes); a
// writer's bytes only as bytes.
struct GgufSeeds {
  std::vector<GDoc> docs;
  std::vector<Seed> bytes;
  GDict dict;

  std::string mutant(Rng& r) const {
    if (!docs.empty() && (bytes.empty() || r.chance(75))) {
      GDoc d = docs[r.below(docs.size())];
      const size_t n = 1 + r.below(3);
      for (size_t i = 0; i < n; ++i) mutate_gguf_doc(r, d, dict);
      Seed s = serialize_gguf(d);
      if (r.chance(25)) mutate_bytes(r, s.bytes, s.fields);
      return s.bytes;
    }
    const Seed& s = bytes[r.below(bytes.size())];
    std::string b = s.bytes;
    const size_t n = 1 + r.below(3);
    for (size_t i = 0; i < n; ++i) mutate_bytes(r, b, s.fields);
    return b;
  }
};

Seed writer_seed(const std::string& bytes) {
  return {bytes, {{4, 4}, {8, 8}, {16, 8}}};
}

// ------------------------------------------------------------------------------------------------
// Adapter files

ModelConfig adapter_model() {
  ModelConfig c;
  c.dim = 16;
  c.hidden_dim = 32;
  c.n_layers = 3;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = 64;
  c.max_seq_len = 64;
  return c;
}

std::string file_bytes(const std::string& path) {
  return read_file(path);
}

// An adapter with nonzero gates (create() leaves them 0).
Adapter test_adapter(int64_t len, int64_t layers, GateMode mode, uint64_t seed) {
  Adapter a = Adapter::create(adapter_model(), len, layers, mode, seed);
  auto g = a.gate();
  for (size_t i = 0; i < g.size(); ++i) g[i] = 0.125f * static_cast<float>(i) - 0.5f;
  return a;
}

// Safetensors seeds: save_adapter's files (two shapes and gate modes), and the official
// release's form (no metadata, K = 10, a gate for every layer, as [1], [H] and [1,H,1,1]).
std::vector<Seed> adapter_safetensors_seeds(const TempDir& dir) {
  std::vector<Seed> seeds;
  const std::string p = dir.file("seed.safetensors");
  save_adapter(test_adapter(3, 2, GateMode::Tanh, 1), p);
  seeds.push_back({file_bytes(p), {{0, 8}}});
  save_adapter(test_adapter(2, 3, GateMode::Identity, 2), p);
  seeds.push_back({file_bytes(p), {{0, 8}}});
  {
    const ModelConfig c = adapter_model();
    SafetensorsWriter w;
    std::vector<float> q(static_cast<size_t>(2 * 10 * c.dim));
    fill_normal(q.data(), static_cast<int64_t>(q.size()), 3);
    w.add_f32("adapter_query.weight", {20, c.dim}, q.data());
    const float g[4] = {0.1f, -0.2f, 0.3f, -0.4f};
    w.add_f32("layers.0.attention.gate", {1}, g);
    w.add_f32("layers.1.attention.gate", {c.n_heads}, g);
    w.add_f32("layers.2.attention.gate", {1, c.n_heads, 1, 1}, g);
    seeds.push_back({w.serialize(), {{0, 8}}});
  }
  return seeds;
}

const std::vector<std::string> kAdapterMetaKeys = {"format",    "version", "adapter_len", "adapter_layers",
                                                   "gate_mode", "dim",     "n_layers",    "n_heads"};

// The numbers of a shape, when it is one (non-negative integers), else empty.
std::vector<uint64_t> shape_of(const ojson& t) {
  std::vector<uint64_t> s;
  if (!t.is_object() || !t.contains("shape") || !t["shape"].is_array()) return {};
  for (const auto& x : t["shape"]) {
    if (!x.is_number_unsigned()) return {};
    s.push_back(x.get<uint64_t>());
  }
  return s;
}

// Edits that keep a safetensors adapter a valid container, so they reach the adapter reader:
// metadata values, gate names, reshapes that keep the byte count, fewer rows, other float types.
void mutate_adapter_json(Rng& r, std::string& b) {
  std::string js, data;
  if (!split_safetensors(b, &js, &data)) return;
  ojson j = ojson::parse(js, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return;
  std::vector<std::string> names;
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "__metadata__") names.push_back(it.key());
  switch (r.below(7)) {
    case 0:
    case 1: {  // a metadata value, or the key gone
      if (!j.contains("__metadata__") || !j["__metadata__"].is_object()) j["__metadata__"] = ojson::object();
      const std::string& key = r.pick(kAdapterMetaKeys);
      if (r.chance(25))
        j["__metadata__"].erase(key);
      else
        j["__metadata__"][key] = r.pick(kStrings);
      break;
    }
    case 2: {  // a gate under another layer's name (or a name that is almost one)
      if (names.empty()) break;
      const std::string from = r.pick(names);
      static const std::vector<std::string> kIdx = {
          "-1", "0", "1", "2", "3", "4", "7", "4095", "4096", "99999999999999999999", "01", "", "1x", " 1", "+1"};
      static const std::vector<std::string> kSuffix = {".attention.gate",  ".attention.gate", ".attention.gate",
                                                       ".attention.gate2", ".attention",      ".attention.gate.x"};
      const std::string to = "layers." + r.pick(kIdx) + r.pick(kSuffix);
      if (to == from) break;
      ojson t = j[from];
      j.erase(from);
      j[to] = t;
      break;
    }
    case 3: {  // the same elements in another shape
      if (names.empty()) break;
      ojson& t = j[r.pick(names)];
      const std::vector<uint64_t> s = shape_of(t);
      if (s.empty()) break;
      uint64_t n = 1;
      for (uint64_t x : s) n *= x;
      std::vector<std::vector<uint64_t>> shapes = {{n}, {1, n}, {n, 1}, {1, n, 1, 1}};
      for (uint64_t a = 2; a < n && a <= 64; ++a)
        if (n % a == 0) shapes.push_back({a, n / a});
      if (n == 1) shapes.push_back({});
      t["shape"] = r.pick(shapes);
      break;
    }
    case 4: {  // fewer rows (the bytes at the end left unused)
      if (names.empty()) break;
      ojson& t = j[r.pick(names)];
      std::vector<uint64_t> s = shape_of(t);
      if (s.empty() || s[0] == 0 || !t["data_offsets"].is_array() || t["data_offsets"].size() != 2 ||
          !t["data_offsets"][0].is_number_unsigned())
        break;
      const uint64_t row = [&] {
        uint64_t x = 4;
        for (size_t i = 1; i < s.size(); ++i) x *= s[i];
        return x;
      }();
      s[0] -= 1 + r.below(s[0]);
      t["shape"] = s;
      t["data_offsets"][1] = t["data_offsets"][0].get<uint64_t>() + s[0] * row;
      break;
    }
    case 5: {  // F16 / BF16 with twice the elements (the same bytes)
      if (names.empty()) break;
      ojson& t = j[r.pick(names)];
      std::vector<uint64_t> s = shape_of(t);
      if (s.empty()) break;
      s.back() *= 2;
      t["shape"] = s;
      t["dtype"] = r.chance(50) ? "F16" : "BF16";
      break;
    }
    case 6:  // no metadata at all (the official release's form)
      j.erase("__metadata__");
      break;
  }
  b = join_safetensors(j.dump(-1, ' ', false, ojson::error_handler_t::replace), data);
}

// A NaN or an infinity somewhere in the data section.
void poison_float(Rng& r, std::string& b) {
  std::string js, data;
  if (!split_safetensors(b, &js, &data) || data.size() < 4) return;
  static const uint32_t kBits[] = {0x7FC00000u, 0x7F800000u, 0xFF800000u};
  put_le(data, 4 * r.below(data.size() / 4), kBits[r.below(std::size(kBits))], 4);
  b = join_safetensors(js, data);
}

// What every adapter that loads must satisfy.
uint64_t check_adapter(const Adapter& a, const ModelConfig* c, const std::string& path) {
  EXPECT_TRUE(a.len >= 1 && a.len <= 4096) << path << ": " << a.shape_string();
  EXPECT_TRUE(a.n_layers >= 1 && a.n_layers <= a.model_layers && a.model_layers <= 4096) << a.shape_string();
  EXPECT_TRUE(a.dim >= 1 && a.n_heads >= 1) << a.shape_string();
  EXPECT_EQ(a.query().size(), static_cast<size_t>(a.n_layers * a.len * a.dim)) << a.shape_string();
  EXPECT_EQ(a.gate().size(), static_cast<size_t>(a.n_layers * a.n_heads)) << a.shape_string();
  if (c) {
    EXPECT_EQ(a.dim, c->dim);
    EXPECT_EQ(a.n_heads, c->n_heads);
    EXPECT_EQ(a.model_layers, c->n_layers);
  }
  uint64_t sum = static_cast<uint64_t>(a.len + a.n_layers);
  for (float v : a.query()) {
    EXPECT_TRUE(std::isfinite(v));
    sum += static_cast<uint64_t>(v != 0);
  }
  for (float v : a.gate()) EXPECT_TRUE(std::isfinite(v));
  return sum;
}

// Loads an adapter without and with the model's config; each must load or throw la::Error naming
// the file (the second one's error goes to check_one).
uint64_t load_adapter_both(const std::string& path, const ModelConfig& c) {
  uint64_t sum = 0;
  try {
    sum += check_adapter(load_adapter(path), nullptr, path);
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_TRUE(msg.find(path) != std::string::npos && one_line_outside_quotes(msg)) << "without a config: " << msg;
  }
  return sum + check_adapter(load_adapter(path, &c), &c, path);
}

GDoc adapter_gguf_doc(const Adapter& a) {
  GDoc d;
  d.kvs = {kv_str("general.architecture", "llama_adapter"),
           kv_u32("general.alignment", 32),
           kv_str("llama_adapter.format", "llama-adapter"),
           kv_u32("llama_adapter.version", 1),
           kv_u32("llama_adapter.adapter_len", static_cast<uint32_t>(a.len)),
           kv_u32("llama_adapter.adapter_layers", static_cast<uint32_t>(a.n_layers)),
           kv_str("llama_adapter.gate_mode", gate_mode_name(a.gate_mode)),
           kv_u32("llama_adapter.dim", static_cast<uint32_t>(a.dim)),
           kv_u32("llama_adapter.n_layers", static_cast<uint32_t>(a.model_layers)),
           kv_u32("llama_adapter.n_heads", static_cast<uint32_t>(a.n_heads))};
  d.tensors.push_back(f32_tensor("llama_adapter.adapter_query",
                                 {static_cast<uint64_t>(a.dim), static_cast<uint64_t>(a.n_layers * a.len)},
                                 a.query().data(), a.query().size()));
  for (int64_t i = 0; i < a.n_layers; ++i)
    d.tensors.push_back(f32_tensor("llama_adapter.gate." + std::to_string(a.first_layer() + i),
                                   {static_cast<uint64_t>(a.n_heads)}, a.gate().data() + i * a.n_heads,
                                   static_cast<size_t>(a.n_heads)));
  return d;
}

GgufSeeds adapter_gguf_seeds(const TempDir& dir) {
  GgufSeeds s;
  const Adapter a = test_adapter(3, 2, GateMode::Tanh, 4), b = test_adapter(2, 3, GateMode::Identity, 5);
  s.docs = {adapter_gguf_doc(a), adapter_gguf_doc(b)};
  const std::string p = dir.file("seed.gguf");
  save_adapter(a, p);
  s.bytes.push_back(writer_seed(file_bytes(p)));
  for (const GKv& k : s.docs[0].kvs) s.dict.keys.push_back(k.key);
  for (int l = 0; l < 5; ++l) s.dict.tensors.push_back("llama_adapter.gate." + std::to_string(l));
  s.dict.tensors.push_back("llama_adapter.adapter_query");
  return s;
}

// ------------------------------------------------------------------------------------------------
// Alpaca data

std::vector<AlpacaRecord> data_records() {
  std::vector<AlpacaRecord> v = synthetic_instructions(4, 11);
  v.push_back(
      {"Translate: h\xC3\xA9llo \xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x99\x82", "", "ok\n\"quoted\"\t\\ \xE2\x96\x81"});
  v.push_back({"Say   nothing.", "  ", " "});
  return v;
}

ojson record_json(const AlpacaRecord& r, int variant) {
  ojson o = {{"instruction", r.instruction}};
  if (variant == 0) o["input"] = r.input;
  if (variant == 1 && !r.input.empty()) o["input"] = r.input;
  if (variant == 2) o["input"] = nullptr;
  o["output"] = r.output;
  return o;
}

// JSON array seeds (write_alpaca_json's, and a compact one with a BOM); JSONL seeds (LF, and
// CRLF with blank lines).
std::vector<std::string> alpaca_json_seeds(const TempDir& dir) {
  const std::string p = dir.file("seed.json");
  write_alpaca_json(data_records(), p);
  ojson arr = ojson::array();
  int k = 0;
  for (const auto& r : data_records()) arr.push_back(record_json(r, k++ % 3));
  return {file_bytes(p), "\xEF\xBB\xBF" + arr.dump()};
}

std::vector<std::string> alpaca_jsonl_seeds() {
  std::string lf, crlf = "\r\n";
  int k = 0;
  for (const auto& r : data_records()) {
    lf += record_json(r, k % 3).dump() + "\n";
    crlf += record_json(r, (k + 1) % 3).dump() + (k % 2 ? "\r\n\r\n" : "\r\n");
    ++k;
  }
  return {lf, crlf};
}

// Malformed UTF-8 in a string becomes U+FFFD (raw bad bytes come from mutate_json_text).
std::string dump(const ojson& j, int indent = -1) {
  return j.dump(indent, ' ', false, ojson::error_handler_t::replace);
}

// JSON values a field or a record may become.
ojson random_json(Rng& r) {
  switch (r.below(16)) {
    case 0: return nullptr;
    case 1: return 1;
    case 2: return -1.5;
    case 3: return true;
    case 4: return ojson::array();
    case 5: return ojson::object();
    case 6: return ojson::array({1, "x"});
    case 7: return ojson{{"instruction", "x"}};
    case 8: return std::string(1000, 'w');
    case 9: return std::string("a\0b", 3);
    case 10: return "\xF0\x9F\x99\x82 \xE2\x96\x81\xE2\x96\x81 \x7F\x1B[31m";
    case 11: {
      ojson v = "deep";
      for (int i = 0; i < 40; ++i) v = ojson::array({v});
      return v;
    }
    case 12: return 18446744073709551615ull;
    default: return r.pick(kStrings);
  }
}

const std::vector<std::string> kFieldNames = {"instruction",  "input", "output", "Instruction",
                                              "instruction ", "",      "extra",  std::string("output\0", 7)};

// Edits one record (object) as a tree.
void mutate_record(Rng& r, ojson& rec) {
  if (!rec.is_object()) {
    rec = r.chance(50) ? random_json(r) : ojson{{"instruction", "i"}, {"output", "o"}};
    return;
  }
  static const char* kFields[] = {"instruction", "input", "output"};
  const char* f = kFields[r.below(3)];
  switch (r.below(5)) {
    case 0:
    case 1: rec[f] = random_json(r); break;
    case 2: rec.erase(f); break;
    case 3:
      if (rec.contains(f)) {
        ojson v = rec[f];
        rec.erase(f);
        rec[r.pick(kFieldNames)] = v;
      }
      break;
    case 4: rec[r.pick(kFieldNames)] = random_json(r); break;
  }
}

// Text inserted into the file: escapes that are not characters, malformed UTF-8, structure.
const std::vector<std::string> kJsonText = {"\\ud800",
                                            "\\udc00\\ud800",
                                            "\\ud83d\\ude42",
                                            "\\u0000",
                                            "\\uZZZZ",
                                            "\\x41",
                                            "\\",
                                            "\xC0\x80",
                                            "\xED\xA0\x80",
                                            "\xF4\x90\x80\x80",
                                            "\xFF",
                                            "\xE2\x96",
                                            "\xEF\xBB\xBF",
                                            "\n",
                                            "\r\n",
                                            "\n\n",
                                            "\r",
                                            "[",
                                            "]",
                                            "{",
                                            "}",
                                            "\"",
                                            ",",
                                            ":",
                                            "null",
                                            "1e999",
                                            "-",
                                            "/*",
                                            "\t",
                                            " ",
                                            "[[[[[[[[[[[[[[[[",
                                            "}]",
                                            "\"input\":1,",
                                            "\x00"};

void mutate_json_text(Rng& r, std::string& b) {
  if (r.chance(60)) {
    const std::string& t = r.pick(kJsonText);
    b.insert(r.below(b.size() + 1), t == "\x00" ? std::string(1, '\0') : t);
  } else {
    mutate_bytes(r, b, {});
  }
}

std::string alpaca_array_mutant(Rng& r, const std::vector<std::string>& seeds) {
  std::string b = r.pick(seeds);
  const size_t n = 1 + r.below(3);
  for (size_t m = 0; m < n; ++m) {
    if (r.chance(60)) {
      const bool bom = b.starts_with("\xEF\xBB\xBF");
      ojson j = ojson::parse(bom ? b.substr(3) : b, nullptr, false);
      if (j.is_discarded() || !j.is_array()) {
        mutate_json_text(r, b);
        continue;
      }
      switch (r.below(6)) {
        case 0:
        case 1:
        case 2:
          if (!j.empty()) mutate_record(r, j[r.below(j.size())]);
          break;
        case 3:
          if (!j.empty()) j.erase(r.below(j.size()));
          break;
        case 4:
          if (!j.empty()) {
            const ojson copy = j[r.below(j.size())];
            j.insert(j.begin() + static_cast<std::ptrdiff_t>(r.below(j.size() + 1)), copy);
          }
          break;
        case 5: j = r.chance(50) ? ojson::array() : random_json(r); break;
      }
      b = (bom ? "\xEF\xBB\xBF" : "") + dump(j, r.chance(50) ? 1 : -1);
    } else {
      mutate_json_text(r, b);
    }
  }
  return b;
}

std::vector<std::string> split_lines(const std::string& b) {
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos <= b.size()) {
    size_t end = b.find('\n', pos);
    if (end == std::string::npos) end = b.size();
    lines.push_back(b.substr(pos, end - pos));
    pos = end + 1;
  }
  return lines;
}

std::string alpaca_jsonl_mutant(Rng& r, const std::vector<std::string>& seeds) {
  std::string b = r.pick(seeds);
  const size_t n = 1 + r.below(3);
  for (size_t m = 0; m < n; ++m) {
    if (r.chance(60)) {
      std::vector<std::string> lines = split_lines(b);
      const size_t i = r.below(lines.size());
      std::string line = lines[i];
      const bool cr = line.ends_with("\r");
      if (cr) line.pop_back();
      switch (r.below(5)) {
        case 0:
        case 1: {
          ojson rec = ojson::parse(line, nullptr, false);
          if (rec.is_discarded()) rec = ojson::object();
          mutate_record(r, rec);
          line = dump(rec);
          break;
        }
        case 2: line.clear(); break;  // a blank line (or a record gone)
        case 3: lines.insert(lines.begin() + static_cast<std::ptrdiff_t>(r.below(lines.size() + 1)), line); break;
        case 4: line = dump(ojson::parse(line, nullptr, false), 1); break;  // pretty-printed over lines
      }
      lines[i] = line + (cr ? "\r" : "");
      b.clear();
      for (size_t k = 0; k < lines.size(); ++k) b += lines[k] + (k + 1 < lines.size() ? "\n" : "");
    } else {
      mutate_json_text(r, b);
    }
  }
  return b;
}

BpeVocab trained_vocab(int64_t size) {
  std::vector<std::string> texts;
  for (const auto& rec : synthetic_instructions(40, 1)) {
    texts.push_back(alpaca_prompt(rec.instruction, rec.input));
    texts.push_back(rec.output);
  }
  texts.push_back("h\xC3\xA9llo \xE4\xB8\x96\xE7\x95\x8C caf\xC3\xA9 na\xC3\xAFve");
  return train_bpe_vocab(texts, size);
}

const BpeTokenizer& data_tokenizer() {
  static const BpeTokenizer tok(trained_vocab(400), "data vocabulary");
  return tok;
}

uint64_t load_and_tokenize(const std::string& path) {
  const std::vector<AlpacaRecord> recs = load_alpaca(path);
  EXPECT_FALSE(recs.empty());
  uint64_t sum = recs.size();
  for (const auto& rec : recs) {
    EXPECT_TRUE(valid_utf8(rec.instruction) && valid_utf8(rec.input) && valid_utf8(rec.output)) << path;
    sum += rec.instruction.size() + rec.input.size() + rec.output.size();
  }
  const BpeTokenizer& tok = data_tokenizer();
  for (int64_t max_len : {2, 64, 4096}) {
    const TokenizedDataset ds = tokenize_alpaca(recs, tok, max_len);
    EXPECT_EQ(ds.examples.size(), recs.size());
    int64_t total = 0;
    for (const Example& ex : ds.examples) {
      EXPECT_GE(ex.tokens.size(), 2u);
      EXPECT_LE(static_cast<int64_t>(ex.tokens.size()), max_len);
      EXPECT_EQ(ex.tokens.front(), tok.bos_id());
      EXPECT_GE(ex.prompt_len, 1);
      for (int id : ex.tokens) EXPECT_TRUE(id >= 0 && id < tok.vocab_size()) << id;
      total += static_cast<int64_t>(ex.tokens.size());
    }
    EXPECT_EQ(ds.total_tokens, total);
    sum += static_cast<uint64_t>(total + ds.supervised_tokens);
  }
  return sum;
}

// ------------------------------------------------------------------------------------------------
// Tokenizers

// llama2.c tokenizer.bin with its max_token_length and every score and length recorded.
Seed llama2c_seed(const BpeVocab& v) {
  Seed s;
  s.bytes = serialize_llama2c_vocab(v);
  s.fields.push_back({0, 4});
  for (size_t pos = 4; pos + 8 <= s.bytes.size();) {
    s.fields.push_back({pos, 4});
    s.fields.push_back({pos + 4, 4});
    int32_t len;
    std::memcpy(&len, s.bytes.data() + pos + 4, 4);
    pos += 8 + static_cast<size_t>(len);
  }
  return s;
}

// A vocabulary without byte pieces (unknown characters become <unk>).
BpeVocab without_bytes(const BpeVocab& v) {
  BpeVocab out;
  for (size_t i = 0; i < v.pieces.size(); ++i) {
    if (v.types[i] == PieceType::Byte) continue;
    const int id = static_cast<int>(out.pieces.size());
    if (static_cast<int>(i) == v.bos_id) out.bos_id = id;
    if (static_cast<int>(i) == v.eos_id) out.eos_id = id;
    if (static_cast<int>(i) == v.unk_id) out.unk_id = id;
    out.pieces.push_back(v.pieces[i]);
    out.scores.push_back(v.scores[i]);
    out.types.push_back(v.types[i]);
  }
  return out;
}

// The same with unused and user-defined pieces, which only a GGUF vocabulary can say.
BpeVocab with_special_types(BpeVocab v) {
  int unused = 0;
  for (size_t i = v.pieces.size(); i-- > 0 && unused < 3;) {
    if (v.types[i] == PieceType::Normal && v.pieces[i].size() > 2) {
      v.types[i] = PieceType::Unused;
      ++unused;
    }
  }
  for (const char* p : {"<|x|>", "\xE2\x96\x81the"}) {
    v.pieces.push_back(p);
    v.scores.push_back(0.f);
    v.types.push_back(PieceType::UserDefined);
  }
  return v;
}

GDoc vocab_gguf_doc(const BpeVocab& v, bool space_prefix) {
  GDoc d;
  std::vector<int32_t> types;
  for (PieceType t : v.types) types.push_back(static_cast<int32_t>(t) + 1);  // GGUF: 1 normal ... 6 byte
  d.kvs = {kv_str("general.architecture", "llama"),
           kv_str("tokenizer.ggml.model", "llama"),
           kv_arr("tokenizer.ggml.tokens", kStr, v.pieces),
           kv_arr("tokenizer.ggml.scores", kF32, v.scores),
           kv_arr("tokenizer.ggml.token_type", kI32, types),
           kv_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(v.bos_id)),
           kv_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(v.eos_id)),
           kv_u32("tokenizer.ggml.unknown_token_id", static_cast<uint32_t>(v.unk_id)),
           kv_bool("tokenizer.ggml.add_bos_token", true),
           kv_bool("tokenizer.ggml.add_space_prefix", space_prefix)};
  const float x[2] = {1.f, 2.f};
  d.tensors.push_back(f32_tensor("t", {2}, x, 2));  // a model file has tensors too
  return d;
}

// A small byte-level vocabulary (GGUF "gpt2"): the 256 byte characters, a few merges, a control
// and a user-defined piece.
BpeVocab byte_level_vocab() {
  BpeVocab v;
  v.byte_level = true;
  v.add_dummy_prefix = false;
  v.pre = "llama-bpe";
  v.ignore_merges = true;
  for (int b = 0; b < 256; ++b) v.pieces.emplace_back(ByteBpeTokenizer::byte_char(static_cast<uint8_t>(b)));
  const std::string sp(ByteBpeTokenizer::byte_char(' '));
  for (const auto& [l, r] : std::vector<std::pair<std::string, std::string>>{
           {sp, "t"}, {"h", "e"}, {sp + "t", "he"}, {"l", "l"}, {"e", "r"}, {sp, "w"}, {"o", "r"}, {"ll", "o"}}) {
    v.merges.push_back(l + " " + r);
    if (std::find(v.pieces.begin(), v.pieces.end(), l + r) == v.pieces.end()) v.pieces.push_back(l + r);
  }
  v.types.assign(v.pieces.size(), PieceType::Normal);
  v.pieces.push_back("<|begin_of_text|>");
  v.types.push_back(PieceType::Control);
  v.pieces.push_back("<|x|>");
  v.types.push_back(PieceType::UserDefined);
  v.scores.assign(v.pieces.size(), 0.0f);
  v.bos_id = static_cast<int>(v.pieces.size()) - 2;
  v.eos_id = v.bos_id;
  v.add_bos = true;
  return v;
}

GDoc byte_vocab_gguf_doc(const BpeVocab& v) {
  GDoc d;
  std::vector<int32_t> types;
  for (PieceType t : v.types) types.push_back(static_cast<int32_t>(t) + 1);
  d.kvs = {kv_str("general.architecture", "llama"),
           kv_str("tokenizer.ggml.model", "gpt2"),
           kv_str("tokenizer.ggml.pre", v.pre),
           kv_arr("tokenizer.ggml.tokens", kStr, v.pieces),
           kv_arr("tokenizer.ggml.token_type", kI32, types),
           kv_arr("tokenizer.ggml.merges", kStr, v.merges),
           kv_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(v.bos_id)),
           kv_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(v.eos_id)),
           kv_bool("tokenizer.ggml.add_bos_token", true)};
  const float x[2] = {1.f, 2.f};
  d.tensors.push_back(f32_tensor("t", {2}, x, 2));
  return d;
}

// The same vocabulary as a Hugging Face tokenizer.json.
std::string byte_vocab_json(const BpeVocab& v) {
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object(), added = nlohmann::ordered_json::array();
  for (size_t i = 0; i < v.pieces.size(); ++i) {
    if (v.types[i] == PieceType::Normal)
      vocab[v.pieces[i]] = i;
    else
      added.push_back({{"id", i}, {"content", v.pieces[i]}, {"special", v.types[i] == PieceType::Control}});
  }
  nlohmann::ordered_json j = {
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern", {{"Regex", PreTokenizer::regexes_of("llama-bpe")->front()}}},
           {"behavior", "Isolated"},
           {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}},
      {"post_processor",
       {{"type", "TemplateProcessing"}, {"single", {{{"SpecialToken", {{"id", "<|begin_of_text|>"}}}}}}}},
      {"model", {{"type", "BPE"}, {"ignore_merges", true}, {"vocab", vocab}, {"merges", v.merges}}}};
  return j.dump(1);
}

// Mutants of vocabularies in GGUF: the documents as structures, our writer's file of `written`
// as bytes.
GgufSeeds vocab_seeds(std::vector<GDoc> docs, const BpeVocab& written) {
  GgufSeeds seeds;
  seeds.docs = std::move(docs);
  GgufWriter w;
  write_gguf_vocab(w, written);
  seeds.bytes.push_back(writer_seed(w.serialize()));
  for (const GKv& k : seeds.docs[0].kvs) seeds.dict.keys.push_back(k.key);
  seeds.dict.tensors = {"t"};
  return seeds;
}

const std::vector<std::string> kTexts = {"",
                                         "Reverse the letters of the word.",
                                         "  two  spaces,\ttab\nnewline  ",
                                         "h\xC3\xA9llo \xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x99\x82 <|x|> <s> </s> <unk>",
                                         "bad \xFF\xC0\x80\xED\xA0\x80 bytes \xE2\x96\x81\xE2\x96\x81",
                                         std::string("nul\0byte", 8)};

// Encodes and decodes with a tokenizer that loaded: ids in range, decode valid UTF-8, a streamed
// decode equal to the whole one.
uint64_t exercise(const Tokenizer& tok) {
  const int n = tok.vocab_size();
  EXPECT_GT(n, 0);
  uint64_t sum = static_cast<uint64_t>(n);
  auto check_decode = [&](const std::vector<int>& ids) {
    const std::string text = tok.decode(ids);
    EXPECT_TRUE(valid_utf8(text));
    StreamDecoder sd(tok);
    std::string streamed;
    for (int id : ids) streamed += sd.push(id);
    streamed += sd.flush();
    EXPECT_EQ(streamed, text);
    sum += text.size();
  };
  for (const std::string& t : kTexts) {
    std::vector<int> ids = tok.encode(t, false, false);
    for (int id : ids) EXPECT_TRUE(id >= 0 && id < n) << id << " of " << n;
    check_decode(ids);
    // A byte-level vocabulary adds BOS only where it says so (GPT-2's does not).
    const auto* byte_level = dynamic_cast<const ByteBpeTokenizer*>(&tok);
    if (byte_level && !byte_level->vocab().add_bos) {
      ids = tok.encode(t, true, false);
      EXPECT_EQ(ids, tok.encode(t, false, false));
    } else if (tok.bos_id() >= 0 && tok.eos_id() >= 0) {
      ids = tok.encode(t, true, true);
      EXPECT_EQ(ids.front(), tok.bos_id());
      EXPECT_EQ(ids.back(), tok.eos_id());
      check_decode(ids);
    } else {
      EXPECT_THROW(tok.encode(t, true, true), Error);
    }
  }
  std::vector<int> all;
  for (int id = 0; id < std::min(n, 600); ++id) {
    all.push_back(id);
    sum += tok.piece(id).size() + tok.piece_bytes(id).size();
  }
  check_decode(all);
  return sum;
}

uint64_t load_and_exercise(const std::string& path) {
  return exercise(*load_tokenizer(path));
}

// ------------------------------------------------------------------------------------------------
// Tests

TEST(FuzzInputs, SeedsAreValid) {
  TempDir dir;
  const char* out = std::getenv("LA_FUZZ_WRITE_SEEDS");  // a corpus for tests/fuzz's targets
  const std::string p = dir.file("s");
  const ModelConfig c = adapter_model();
  int k = 0;
  auto emit = [&](const char* prefix, const std::string& bytes) {
    if (out) write_bytes(std::string(out) + "/" + prefix + std::to_string(k++), bytes);
    write_bytes(p, bytes);
  };
  for (const Seed& s : adapter_safetensors_seeds(dir)) {
    emit("adapter-st-", s.bytes);
    check_adapter(load_adapter(p), nullptr, p);
    check_adapter(load_adapter(p, &c), &c, p);
  }
  const GgufSeeds ag = adapter_gguf_seeds(dir);
  for (const GDoc& d : ag.docs) {
    emit("adapter-gguf-", serialize_gguf(d).bytes);
    check_adapter(load_adapter(p, &c), &c, p);
  }
  for (const Seed& s : ag.bytes) {
    emit("adapter-gguf-", s.bytes);
    check_adapter(load_adapter(p, &c), &c, p);
  }
  for (const std::string& s : alpaca_json_seeds(dir)) {
    emit("data-json-", s);
    EXPECT_EQ(load_alpaca(p).size(), data_records().size());
    load_and_tokenize(p);
  }
  for (const std::string& s : alpaca_jsonl_seeds()) {
    emit("data-jsonl-", s);
    const auto recs = load_alpaca(p);
    ASSERT_EQ(recs.size(), data_records().size());
    EXPECT_EQ(recs[4].output, data_records()[4].output);
    load_and_tokenize(p);
  }
  const BpeVocab v = trained_vocab(320);
  for (const BpeVocab& x : {v, without_bytes(v)}) {
    emit("tok-bin-", llama2c_seed(x).bytes);
    load_and_exercise(p);
  }
  for (const GDoc& d : {vocab_gguf_doc(with_special_types(v), true), vocab_gguf_doc(without_bytes(v), false)}) {
    emit("tok-gguf-", serialize_gguf(d).bytes);
    load_and_exercise(p);
  }
  {
    GgufWriter w;
    write_gguf_vocab(w, v);
    emit("tok-gguf-", w.serialize());
    load_and_exercise(p);
  }
  if (test::shared_file_exists("llama2c/tok512.model")) {
    emit("tok-model-", file_bytes(test::shared_path("llama2c/tok512.model")));
    load_and_exercise(p);
  }
  emit("tok-gguf-", serialize_gguf(byte_vocab_gguf_doc(byte_level_vocab())).bytes);
  EXPECT_GT(load_and_exercise(p), 0u);
  emit("tok-json-", byte_vocab_json(byte_level_vocab()));
  EXPECT_GT(load_and_exercise(p), 0u);
  // Both spell the same vocabulary: the same ids.
  write_bytes(dir.file("a.gguf"), serialize_gguf(byte_vocab_gguf_doc(byte_level_vocab())).bytes);
  write_bytes(dir.file("b.json"), byte_vocab_json(byte_level_vocab()));
  for (const std::string& t : kTexts)
    EXPECT_EQ(load_tokenizer(dir.file("a.gguf"))->encode(t, true, false),
              load_tokenizer(dir.file("b.json"))->encode(t, true, false));
}

TEST(FuzzInputs, AdapterSafetensorsMutants) {
  TempDir dir;
  const std::vector<Seed> seeds = adapter_safetensors_seeds(dir);
  const ModelConfig c = adapter_model();
  const std::string path = dir.file("m.safetensors");
  run_mutants(
      "adapter (safetensors)", path, keep_path("adapter_fuzz_failure.safetensors"), 0x6164'6170'0001ull, 5000,
      [&](Rng& r) {
        const Seed& s = seeds[r.below(seeds.size())];
        std::string b = s.bytes;
        const size_t n = 1 + r.below(3);
        for (size_t m = 0; m < n; ++m) {
          const size_t kind = r.below(100);
          if (kind < 50)
            mutate_adapter_json(r, b);
          else if (kind < 75)
            mutate_safetensors_json(r, b);
          else if (kind < 82)
            poison_float(r, b);
          else
            mutate_bytes(r, b, s.fields);
        }
        return b;
      },
      [&] { return load_adapter_both(path, c); });
}

TEST(FuzzInputs, AdapterGgufMutants) {
  TempDir dir;
  const GgufSeeds seeds = adapter_gguf_seeds(dir);
  const ModelConfig c = adapter_model();
  const std::string path = dir.file("m.gguf");
  run_mutants(
      "adapter (gguf)", path, keep_path("adapter_fuzz_failure.gguf"), 0x6164'6170'0002ull, 5000,
      [&](Rng& r) { return seeds.mutant(r); }, [&] { return load_adapter_both(path, c); });
}

// The other tools' adapters (io/adapter_interchange.h): the official layout and litgpt's as .pth
// files our writers make (torch.save's zip and pickle), with bytes mutated; a model with one
// key/value head, on which litgpt's adapter is accepted, so both readers run to the end.
TEST(FuzzInputs, AdapterPthMutants) {
  TempDir dir;
  ModelConfig c = adapter_model();
  c.n_kv_heads = 1;
  std::vector<Seed> seeds;
  const Adapter official = Adapter::create(c, 10, 2, GateMode::Identity, 4);
  save_adapter_as(official, AdapterFormat::Official, dir.file("o.pth"), &c);
  seeds.push_back({file_bytes(dir.file("o.pth")), {}});
  save_adapter_as(test_adapter(3, 2, GateMode::Tanh, 5), AdapterFormat::Litgpt, dir.file("l.pth"), &c);
  seeds.push_back({file_bytes(dir.file("l.pth")), {}});
  const std::string path = dir.file("m.pth");
  run_mutants(
      "adapter (.pth)", path, keep_path("adapter_fuzz_failure.pth"), 0x6164'6170'0003ull, 1500,
      [&](Rng& r) {
        std::string b = seeds[r.below(seeds.size())].bytes;
        const size_t n = 1 + r.below(3);
        for (size_t m = 0; m < n; ++m) mutate_bytes(r, b, {});
        return b;
      },
      [&] { return load_adapter_both(path, c); });
}

// A PEFT AdaptionPrompt folder: adapter_config.json with fields removed, retyped or set to extreme
// values, or its weights' safetensors header edited. Errors must name the folder.
TEST(FuzzInputs, PeftFolderMutants) {
  TempDir dir;
  const ModelConfig c = adapter_model();
  const std::string folder = dir.file("peft");
  Adapter a = test_adapter(3, 2, GateMode::Identity, 6);
  auto gate = a.gate();
  for (size_t i = 0; i < gate.size(); ++i)
    gate[i] = gate[i - i % static_cast<size_t>(c.n_heads)];  // PEFT's one per layer
  save_adapter_as(a, AdapterFormat::Peft, folder, &c);
  const std::string config = file_bytes(folder + "/adapter_config.json");
  const std::string weights = file_bytes(folder + "/adapter_model.safetensors");
  const std::vector<std::string> keys = {"peft_type", "adapter_len", "adapter_layers", "target_modules", "task_type"};
  const std::vector<ojson> values = {nullptr,
                                     0,
                                     1,
                                     2,
                                     3,
                                     -1,
                                     4096,
                                     4097,
                                     int64_t{1} << 40,
                                     1.5,
                                     "3",
                                     "ADAPTION_PROMPT",
                                     "LORA",
                                     "self_attn",
                                     "attn",
                                     ojson::array(),
                                     ojson::object()};
  Rng r(env_u64("LA_FUZZ_SEED", 0x6164'6170'0004ull));
  const uint64_t iters = iterations(1500);
  Stats st;
  const auto t0 = std::chrono::steady_clock::now();
  for (uint64_t it = 0; it < iters; ++it) {
    std::string cfg = config, w = weights;
    const size_t kind = r.below(100);
    if (kind < 45) {
      ojson j = ojson::parse(cfg);
      if (r.chance(30))
        j.erase(r.pick(keys));
      else
        j[r.pick(keys)] = r.pick(values);
      cfg = j.dump();
    } else if (kind < 55) {
      mutate_bytes(r, cfg, {});
    } else if (kind < 80) {
      mutate_adapter_json(r, w);
    } else {
      mutate_safetensors_json(r, w);
    }
    write_bytes(folder + "/adapter_config.json", cfg);
    write_bytes(folder + "/adapter_model.safetensors", w);
    check_one(
        folder, [&] { st.checksum += load_adapter_both(folder, c); }, st, it, cfg + w, keep_path("peft_fuzz_failure"));
    if (::testing::Test::HasFatalFailure()) return;
  }
  st.print("adapter (PEFT folder)", iters,
           std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  EXPECT_GT(st.opened, 0u);
  EXPECT_GT(st.rejected, 0u);
}

TEST(FuzzInputs, AlpacaJsonMutants) {
  TempDir dir;
  const std::vector<std::string> seeds = alpaca_json_seeds(dir);
  const std::string path = dir.file("m.json");
  run_mutants(
      "alpaca (json array)", path, keep_path("alpaca_fuzz_failure.json"), 0x6a73'6f6e'0001ull, 4000,
      [&](Rng& r) { return alpaca_array_mutant(r, seeds); }, [&] { return load_and_tokenize(path); });
}

TEST(FuzzInputs, AlpacaJsonlMutants) {
  TempDir dir;
  const std::vector<std::string> seeds = alpaca_jsonl_seeds();
  const std::string path = dir.file("m.jsonl");
  run_mutants(
      "alpaca (jsonl)", path, keep_path("alpaca_fuzz_failure.jsonl"), 0x6a73'6f6e'0002ull, 4000,
      [&](Rng& r) { return alpaca_jsonl_mutant(r, seeds); }, [&] { return load_and_tokenize(path); });
}

TEST(FuzzInputs, Llama2cTokenizerMutants) {
  TempDir dir;
  const BpeVocab v = trained_vocab(320);
  const std::vector<Seed> seeds = {llama2c_seed(v), llama2c_seed(without_bytes(v))};
  const std::string path = dir.file("m.bin");
  run_mutants(
      "tokenizer (llama2.c)", path, keep_path("tokenizer_fuzz_failure.bin"), 0x746f'6b00'0001ull, 5000,
      [&](Rng& r) { return byte_mutant(r, seeds); }, [&] { return load_and_exercise(path); });
}

TEST(FuzzInputs, GgufVocabMutants) {
  TempDir dir;
  const BpeVocab v = trained_vocab(320);
  const GgufSeeds seeds =
      vocab_seeds({vocab_gguf_doc(with_special_types(v), true), vocab_gguf_doc(without_bytes(v), false)}, v);
  const std::string path = dir.file("m.gguf");
  run_mutants(
      "tokenizer (gguf vocab)", path, keep_path("tokenizer_fuzz_failure.gguf"), 0x746f'6b00'0002ull, 5000,
      [&](Rng& r) { return seeds.mutant(r); }, [&] { return load_and_exercise(path); });
}

TEST(FuzzInputs, ByteLevelVocabMutants) {
  TempDir dir;
  const BpeVocab v = byte_level_vocab();
  const GgufSeeds seeds = vocab_seeds({byte_vocab_gguf_doc(v)}, v);
  const std::string path = dir.file("m.gguf");
  run_mutants(
      "tokenizer (gguf byte-level vocab)", path, keep_path("tokenizer_fuzz_failure_bbpe.gguf"), 0x746f'6b00'0004ull,
      3000, [&](Rng& r) { return seeds.mutant(r); }, [&] { return load_and_exercise(path); });
}

TEST(FuzzInputs, TokenizerJsonMutants) {
  TempDir dir;
  const Seed seed{byte_vocab_json(byte_level_vocab()), {}};
  const std::string path = dir.file("tokenizer.json");
  const nlohmann::ordered_json seed_doc = nlohmann::ordered_json::parse(seed.bytes);
  run_mutants(
      "tokenizer (tokenizer.json)", path, keep_path("tokenizer_fuzz_failure.json"), 0x746f'6b00'0005ull, 600,
      [&](Rng& r) {
        if (r.chance(70)) {  // as a structure: a value replaced by an extreme one, or removed
          using ojson = nlohmann::ordered_json;
          ojson doc = seed_doc;
          const size_t n = 1 + r.below(3);
          for (size_t m = 0; m < n; ++m) {
            // A random node: down from the root, a random child at each level, stopping early
            // now and then (so whole sections get replaced or removed too).
            ojson::json_pointer ptr;
            for (const ojson* node = &doc; node->is_structured() && !node->empty() && !r.chance(15);) {
              if (node->is_array()) {
                const size_t i = r.below(node->size());
                ptr /= i;
                node = &(*node)[i];
              } else {
                auto it = std::next(node->begin(), static_cast<std::ptrdiff_t>(r.below(node->size())));
                ptr /= it.key();
                node = &it.value();
              }
            }
            if (r.chance(30) && !ptr.empty()) {
              const std::string last = ptr.back();
              ojson& parent = doc[ptr.parent_pointer()];
              if (parent.is_object())
                parent.erase(last);
              else if (parent.is_array())
                parent.erase(static_cast<size_t>(std::stoul(last)));
            } else {
              doc[ptr] = extreme_json(r, 1000);
            }
          }
          return doc.dump();
        }
        return byte_mutant(r, {seed});
      },
      [&] { return load_and_exercise(path); });
}

TEST(FuzzInputs, SentencePieceMutants) {
  REQUIRE_SHARED_DATA("llama2c/tok512.model");
  TempDir dir;
  const Seed seed{file_bytes(test::shared_path("llama2c/tok512.model")), {}};
  const std::string path = dir.file("m.model");
  run_mutants(
      "tokenizer (sentencepiece)", path, keep_path("tokenizer_fuzz_failure.model"), 0x746f'6b00'0003ull, 3000,
      [&](Rng& r) { return byte_mutant(r, {seed}); }, [&] { return load_and_exercise(path); });
}

// ------------------------------------------------------------------------------------------------
// Regressions found by the mutants above

// A serialized SentencePiece ModelProto, by hand: pieces (piece, score, type) and a trainer spec
// with the model type (1 unigram, 2 BPE).
std::string sp_model(const std::vector<std::pair<std::string, int>>& pieces, int model_type) {
  auto len = [](size_t n) {
    std::string v;
    do {
      v.push_back(static_cast<char>((n & 0x7F) | (n > 0x7F ? 0x80 : 0)));
      n >>= 7;
    } while (n);
    return v;
  };
  // field 1 (pieces) / 2 (trainer_spec), length-delimited; in a piece: 1 piece, 2 score, 3 type
  auto message = [&](std::string& out, char tag, const std::string& body) {
    out.push_back(tag);
    out.append(len(body.size()));
    out.append(body);
  };
  std::string out;
  for (const auto& [piece, type] : pieces) {
    std::string sp;
    message(sp, '\x0A', piece);
    sp.push_back('\x15');
    sp.append(le(-1.0f));
    sp.push_back('\x18');
    sp.push_back(static_cast<char>(type));
    message(out, '\x0A', sp);
  }
  std::string trainer;
  trainer.push_back('\x18');  // model_type
  trainer.push_back(static_cast<char>(model_type));
  message(out, '\x12', trainer);
  return out;
}

// libsentencepiece quotes a bad byte piece as it is; a newline in it made the error two lines
// (SentencePieceMutants, iteration 622: a piece of tok512.model became "\n<0x").
TEST(FuzzInputsRegressions, SentencePieceErrorQuotingANewlineStaysOneLine) {
  TempDir dir;
  const std::string p = dir.file("bad.model");
  write_bytes(p, sp_model({{"<unk>", 2}, {"<s>", 3}, {"</s>", 3}, {"\n<0x", 6}, {"a", 1}}, 2));
  try {
    load_tokenizer(p);
    ADD_FAILURE() << "loaded";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_NE(msg.find("\\x0a<0x"), std::string::npos) << msg;
  }
}

// A GGUF adapter whose gate mode is missing or not a string: the error named the file twice
// ("m.gguf: m.gguf: metadata 'llama_adapter.gate_mode' has type FLOAT32, expected STRING"),
// since the reader prefixed the path to get_string's message, which has it already
// (AdapterGgufMutants, iteration 197 and many more).
TEST(FuzzInputsRegressions, GgufAdapterGateModeOfAnotherTypeNamesTheFileOnce) {
  TempDir dir;
  const std::string p = dir.file("a.gguf");
  const GDoc base = adapter_gguf_doc(test_adapter(3, 2, GateMode::Tanh, 1));
  // A mode of another type, none, and an unknown one (that message never had the path twice).
  for (const GKv& mode :
       {kv_u32("llama_adapter.gate_mode", 1), kv_u32("not.the.gate_mode", 1), kv_str("llama_adapter.gate_mode", "x")}) {
    GDoc d = base;
    for (GKv& k : d.kvs)
      if (k.key == "llama_adapter.gate_mode") k = mode;
    write_bytes(p, serialize_gguf(d).bytes);
    try {
      load_adapter(p);
      ADD_FAILURE() << "loaded";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.find(p), 0u) << msg;
      EXPECT_EQ(msg.find(p, 1), std::string::npos) << msg;
      EXPECT_NE(msg.find("gate"), std::string::npos) << msg;
    }
  }
}

// token_type values that are not whole numbers 0-6 (NaN, 1e30, 2^40 in a float or int64 array)
// were converted to int before the range check: undefined behaviour (UBSan's
// float-cast-overflow, which clang's -fsanitize=undefined has and g++'s does not; found by
// GgufVocabMutants at LA_FUZZ_ITERS=20000, iteration 18728: a token_type of -3.4e38). Now a
// plain error.
TEST(FuzzInputsRegressions, GgufVocabTokenTypeOutOfIntRange) {
  TempDir dir;
  const std::string p = dir.file("v.gguf");
  const BpeVocab v = without_bytes(trained_vocab(300));
  const GDoc base = vocab_gguf_doc(v, true);
  const std::vector<std::pair<uint32_t, std::string>> bad = {{kF32, le(NAN)},         {kF32, le(1e30f)},
                                                             {kF32, le(-INFINITY)},   {kF32, le(2.5f)},
                                                             {kF64, le(1e300)},       {kI64, le(int64_t{1} << 40)},
                                                             {kI64, le(int64_t{-1})}, {kI32, le(int32_t{7})}};
  for (const auto& [type, value] : bad) {
    GDoc d = base;
    for (GKv& k : d.kvs) {
      if (k.key != "tokenizer.ggml.token_type") continue;
      for (auto& e : k.elems) e = convert_elem(e, k.elem_type, type);
      k.elem_type = type;
      k.elems[3] = value;
    }
    write_bytes(p, serialize_gguf(d).bytes);
    try {
      load_tokenizer(p);
      ADD_FAILURE() << "loaded with token_type type " << type;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("token 3 has unknown token_type"), std::string::npos) << e.what();
    }
  }
  // The whole numbers 0-6 still load, in any numeric array type.
  for (uint32_t type : {uint32_t{kF32}, uint32_t{kF64}, uint32_t{kI64}, uint32_t{kU8}}) {
    GDoc d = base;
    for (GKv& k : d.kvs) {
      if (k.key != "tokenizer.ggml.token_type") continue;
      for (auto& e : k.elems) e = convert_elem(e, k.elem_type, type);
      k.elem_type = type;
    }
    write_bytes(p, serialize_gguf(d).bytes);
    EXPECT_EQ(load_tokenizer(p)->vocab_size(), static_cast<int>(v.pieces.size())) << type;
  }
}

}  // namespace
}  // namespace la
