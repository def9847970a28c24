#include "la/formats/gguf.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>

#include "la/core/error.h"

namespace la {

namespace {

constexpr char kMagic[4] = {'G', 'G', 'U', 'F'};
constexpr uint32_t kMaxDims = 4;            // GGML_MAX_DIMS
constexpr uint32_t kDefaultAlignment = 32;  // GGUF_DEFAULT_ALIGNMENT
constexpr size_t kMaxNameLength = 63;       // ggml names are char[64] with the NUL
constexpr uint32_t kLastType = static_cast<uint32_t>(GgufType::FLOAT64);

// The smallest possible encodings, used to bound counts before anything is allocated.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;                  // empty key, type, 1-byte value
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;  // empty name, n_dims, 1 dim, type, offset

constexpr struct {
  DType type;
  uint32_t id;
} kGgmlTypes[] = {{DType::F32, 0},   {DType::F16, 1},   {DType::Q4_0, 2}, {DType::Q8_0, 8},
                  {DType::Q4_K, 12}, {DType::Q6_K, 14}, {DType::BF16, 30}};

bool is_pow2(uint64_t v) {
  return v != 0 && (v & (v - 1)) == 0;
}

uint64_t align_up(uint64_t v, uint64_t a) {
  return (v + a - 1) / a * a;
}

// Bytes of one scalar of type t; 0 for STRING, ARRAY and unknown ids.
size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::UINT8:
    case GgufType::INT8:
    case GgufType::BOOL: return 1;
    case GgufType::UINT16:
    case GgufType::INT16: return 2;
    case GgufType::UINT32:
    case GgufType::INT32:
    case GgufType::FLOAT32: return 4;
    case GgufType::UINT64:
    case GgufType::INT64:
    case GgufType::FLOAT64: return 8;
    case GgufType::STRING:
    case GgufType::ARRAY: return 0;
  }
  return 0;
}

bool is_integer(GgufType t) {
  switch (t) {
    case GgufType::UINT8:
    case GgufType::INT8:
    case GgufType::UINT16:
    case GgufType::INT16:
    case GgufType::UINT32:
    case GgufType::INT32:
    case GgufType::UINT64:
    case GgufType::INT64: return true;
    default: return false;
  }
}

bool is_unsigned(GgufType t) {
  return t == GgufType::UINT8 || t == GgufType::UINT16 || t == GgufType::UINT32 || t == GgufType::UINT64;
}

// Bounds-checked little-endian cursor over the mapping. Every read names the file, the item and
// the byte position when it would run past the end.
class Cursor {
 public:
  Cursor(const std::string& path, const uint8_t* data, size_t size) : path_(path), data_(data), size_(size) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  template <typename Ctx>
  void need(size_t n, const Ctx& what) const {
    if (n > remaining())
      fail("{}: truncated: {} at byte {} needs {} bytes but the file ends after {}", path_, what(), pos_, n,
           remaining());
  }

  template <typename T, typename Ctx>
  T read(const Ctx& what) {
    static_assert(std::is_trivially_copyable_v<T>);
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  template <typename Ctx>
  std::string read_string(const Ctx& what) {
    const uint64_t n = read<uint64_t>(what);
    if (n > remaining())
      fail("{}: string length {} of {} at byte {} runs past the end of the file ({} bytes remain)", path_, n, what(),
           pos_ - 8, remaining());
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return s;
  }

 private:
  const std::string& path_;
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// Reads one scalar of numeric/bool type t as a double (for arrays).
template <typename Ctx>
double read_number(Cursor& c, GgufType t, const Ctx& what) {
  switch (t) {
    case GgufType::UINT8: return c.read<uint8_t>(what);
    case GgufType::INT8: return c.read<int8_t>(what);
    case GgufType::UINT16: return c.read<uint16_t>(what);
    case GgufType::INT16: return c.read<int16_t>(what);
    case GgufType::UINT32: return c.read<uint32_t>(what);
    case GgufType::INT32: return c.read<int32_t>(what);
    case GgufType::FLOAT32: return c.read<float>(what);
    case GgufType::BOOL: return c.read<uint8_t>(what) != 0 ? 1.0 : 0.0;
    case GgufType::UINT64: return static_cast<double>(c.read<uint64_t>(what));
    case GgufType::INT64: return static_cast<double>(c.read<int64_t>(what));
    case GgufType::FLOAT64: return c.read<double>(what);
    case GgufType::STRING:
    case GgufType::ARRAY: break;
  }
  return 0.0;
}

void read_value(const std::string& path, Cursor& c, const std::string& key, GgufType type, GgufValue& v) {
  auto what = [&] { return fmt::format("the value of metadata '{}'", key); };
  v.type = type;
  switch (type) {
    case GgufType::UINT8: v.scalar = uint64_t{c.read<uint8_t>(what)}; return;
    case GgufType::UINT16: v.scalar = uint64_t{c.read<uint16_t>(what)}; return;
    case GgufType::UINT32: v.scalar = uint64_t{c.read<uint32_t>(what)}; return;
    case GgufType::UINT64: v.scalar = c.read<uint64_t>(what); return;
    case GgufType::INT8: v.scalar = int64_t{c.read<int8_t>(what)}; return;
    case GgufType::INT16: v.scalar = int64_t{c.read<int16_t>(what)}; return;
    case GgufType::INT32: v.scalar = int64_t{c.read<int32_t>(what)}; return;
    case GgufType::INT64: v.scalar = c.read<int64_t>(what); return;
    case GgufType::FLOAT32: v.scalar = double{c.read<float>(what)}; return;
    case GgufType::FLOAT64: v.scalar = c.read<double>(what); return;
    case GgufType::BOOL: {
      const uint8_t b = c.read<uint8_t>(what);
      if (b > 1) fail("{}: metadata '{}' is a bool with byte value {}, expected 0 or 1", path, key, b);
      v.scalar = b != 0;
      return;
    }
    case GgufType::STRING: v.scalar = c.read_string(what); return;
    case GgufType::ARRAY: break;
  }
  // ARRAY: element type, count, elements.
  auto hdr = [&] { return fmt::format("the array header of metadata '{}'", key); };
  const uint32_t et = c.read<uint32_t>(hdr);
  if (et > kLastType) fail("{}: metadata '{}' is an array of unknown metadata type {}", path, key, et);
  v.array_type = static_cast<GgufType>(et);
  if (v.array_type == GgufType::ARRAY)
    fail("{}: metadata '{}' is a nested array (arrays of arrays are not supported)", path, key);
  const uint64_t count = c.read<uint64_t>(hdr);
  const uint64_t min_elem = v.array_type == GgufType::STRING ? 8 : scalar_size(v.array_type);
  if (count > c.remaining() / min_elem)
    fail("{}: metadata '{}' array count {} runs past the end of the file ({} bytes remain, {} per element at least)",
         path, key, count, c.remaining(), min_elem);
  auto elem = [&] { return fmt::format("an element of metadata array '{}'", key); };
  if (v.array_type == GgufType::STRING) {
    v.strings.reserve(static_cast<size_t>(count));
    for (uint64_t i = 0; i < count; ++i) v.strings.push_back(c.read_string(elem));
  } else {
    v.numbers.reserve(static_cast<size_t>(count));
    for (uint64_t i = 0; i < count; ++i) {
      double d = read_number(c, v.array_type, elem);
      v.numbers.push_back(d);
    }
  }
}

// --- writer encoding ---

void put_u32(std::string& out, uint32_t v) {
  out.append(reinterpret_cast<const char*>(&v), 4);
}
void put_u64(std::string& out, uint64_t v) {
  out.append(reinterpret_cast<const char*>(&v), 8);
}
void put_str(std::string& out, const std::string& s) {
  put_u64(out, s.size());
  out += s;
}
template <typename T>
void put_raw(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
void put_type(std::string& out, GgufType t) {
  put_u32(out, static_cast<uint32_t>(t));
}

constexpr const char* kAlignmentKey = "general.alignment";

}  // namespace

const char* gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::UINT8: return "UINT8";
    case GgufType::INT8: return "INT8";
    case GgufType::UINT16: return "UINT16";
    case GgufType::INT16: return "INT16";
    case GgufType::UINT32: return "UINT32";
    case GgufType::INT32: return "INT32";
    case GgufType::FLOAT32: return "FLOAT32";
    case GgufType::BOOL: return "BOOL";
    case GgufType::STRING: return "STRING";
    case GgufType::ARRAY: return "ARRAY";
    case GgufType::UINT64: return "UINT64";
    case GgufType::INT64: return "INT64";
    case GgufType::FLOAT64: return "FLOAT64";
  }
  return "?";
}

bool dtype_from_ggml(uint32_t ggml_type, DType* out) {
  for (const auto& g : kGgmlTypes)
    if (g.id == ggml_type) {
      *out = g.type;
      return true;
    }
  return false;
}

uint32_t ggml_type_id(DType t) {
  for (const auto& g : kGgmlTypes)
    if (g.type == t) return g.id;
  fail("ggml_type_id: DType {} has no ggml type id", static_cast<int>(t));
}

int64_t GgufTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

// ------------------------------------------------------------------------------------------------
// Reader

GgufFile GgufFile::open(const std::string& path) {
  GgufFile f;
  f.file_ = MappedFile::open(path);
  const uint8_t* data = f.file_->data();
  const size_t size = f.file_->size();
  Cursor c(path, data, size);

  if (size < 4 || std::memcmp(data, kMagic, 4) != 0)
    fail("{}: not a GGUF file: bad magic (expected \"GGUF\" in the first 4 bytes)", path);
  c.read<uint32_t>([] { return "the magic"; });
  f.version_ = c.read<uint32_t>([] { return "the version"; });
  if (f.version_ != 2 && f.version_ != 3) {
    if (f.version_ == 1)
      fail("{}: unsupported GGUF version 1 (only versions 2 and 3 are supported; re-convert the model)", path);
    if ((f.version_ & 0xFFFF) == 0 && f.version_ != 0)
      fail("{}: unsupported GGUF version {} (a big-endian file? only little-endian versions 2 and 3 are supported)",
           path, f.version_);
    fail("{}: unsupported GGUF version {} (only versions 2 and 3 are supported)", path, f.version_);
  }
  const uint64_t n_tensors = c.read<uint64_t>([] { return "the tensor count"; });
  const uint64_t n_kv = c.read<uint64_t>([] { return "the metadata count"; });
  // Bound both counts by what the rest of the file could possibly hold before allocating.
  if (n_tensors > c.remaining() / kMinTensorInfoBytes)
    fail("{}: tensor count {} cannot fit in the remaining {} bytes of the file", path, n_tensors, c.remaining());
  if (n_kv > c.remaining() / kMinKvBytes)
    fail("{}: metadata count {} cannot fit in the remaining {} bytes of the file", path, n_kv, c.remaining());
  if (n_tensors * kMinTensorInfoBytes + n_kv * kMinKvBytes > c.remaining())
    fail("{}: tensor count {} and metadata count {} cannot fit in the remaining {} bytes of the file", path, n_tensors,
         n_kv, c.remaining());

  // Metadata.
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.read_string([&] { return fmt::format("metadata key #{}", i); });
    const uint32_t t = c.read<uint32_t>([&] { return fmt::format("the type of metadata '{}'", key); });
    if (t > kLastType) fail("{}: metadata '{}' has unknown metadata type {}", path, key, t);
    if (f.kv_.count(key)) fail("{}: duplicate metadata key '{}'", path, key);
    GgufValue v;
    read_value(path, c, key, static_cast<GgufType>(t), v);
    f.kv_.emplace(std::move(key), std::move(v));
  }

  // Alignment.
  if (const GgufValue* a = f.find(kAlignmentKey)) {
    if (a->type != GgufType::UINT32)
      fail("{}: metadata '{}' has type {}, expected UINT32", path, kAlignmentKey, gguf_type_name(a->type));
    const uint64_t al = std::get<uint64_t>(a->scalar);
    if (!is_pow2(al)) fail("{}: general.alignment {} is not a power of two", path, al);
    f.alignment_ = static_cast<uint32_t>(al);
  } else {
    f.alignment_ = kDefaultAlignment;
  }

  // Tensor infos.
  f.tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensor t;
    t.name = c.read_string([&] { return fmt::format("the name of tensor #{}", i); });
    auto what = [&] { return fmt::format("the info of tensor '{}'", t.name); };
    if (f.index_.count(t.name)) fail("{}: duplicate tensor name '{}'", path, t.name);
    const uint32_t n_dims = c.read<uint32_t>(what);
    if (n_dims == 0 || n_dims > kMaxDims)
      fail("{}: tensor '{}' has n_dims {}, expected 1 to {} dimensions", path, t.name, n_dims, kMaxDims);
    int64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t dim = c.read<uint64_t>(what);
      if (dim == 0) fail("{}: tensor '{}' dimension {} is 0", path, t.name, d);
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          __builtin_mul_overflow(numel, static_cast<int64_t>(dim), &numel))
        fail("{}: tensor '{}' dimensions overflow: the element count does not fit in 64 bits", path, t.name);
      t.dims.push_back(static_cast<int64_t>(dim));
    }
    const uint32_t gt = c.read<uint32_t>(what);
    if (!dtype_from_ggml(gt, &t.type))
      fail(
          "{}: tensor '{}' has unknown or unsupported tensor type (ggml type {}); supported: F32, F16, BF16, Q8_0, "
          "Q4_0, Q4_K, Q6_K",
          path, t.name, gt);
    const int64_t bs = dtype_block_size(t.type);
    if (t.dims[0] % bs != 0)
      fail("{}: tensor '{}' row length {} is not a multiple of the {} block size {}", path, t.name, t.dims[0],
           dtype_name(t.type), bs);
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(static_cast<uint64_t>(numel / bs), static_cast<uint64_t>(dtype_block_bytes(t.type)),
                               &nbytes) ||
        nbytes > size)
      fail("{}: tensor '{}' needs more bytes than the whole file has ({} elements of {})", path, t.name, numel,
           dtype_name(t.type));
    t.nbytes = static_cast<size_t>(nbytes);
    t.offset = c.read<uint64_t>(what);
    if (t.offset % f.alignment_ != 0)
      fail("{}: tensor '{}' data offset {} is misaligned (not a multiple of the alignment {})", path, t.name, t.offset,
           f.alignment_);
    f.index_.emplace(t.name, f.tensors_.size());
    f.tensors_.push_back(std::move(t));
  }

  // Data section: after the infos, rounded up to the alignment.
  f.data_offset_ = align_up(c.pos(), f.alignment_);
  if (!f.tensors_.empty()) {
    if (f.data_offset_ > size)
      fail("{}: truncated: the data section would start at byte {} but the file has only {} bytes", path,
           f.data_offset_, size);
    const uint64_t data_size = size - f.data_offset_;
    for (auto& t : f.tensors_) {
      if (t.offset > data_size || t.nbytes > data_size - t.offset)
        fail("{}: tensor '{}' data [{}, {}) is out of range: the data section has {} bytes", path, t.name, t.offset,
             t.offset + t.nbytes, data_size);
      t.data = data + f.data_offset_ + t.offset;
    }
    std::vector<const GgufTensor*> order;
    order.reserve(f.tensors_.size());
    for (const auto& t : f.tensors_) order.push_back(&t);
    std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < order.size(); ++i)
      if (order[i]->offset < order[i - 1]->offset + order[i - 1]->nbytes)
        fail("{}: tensors '{}' and '{}' overlap: data [{}, {}) and [{}, {})", path, order[i - 1]->name, order[i]->name,
             order[i - 1]->offset, order[i - 1]->offset + order[i - 1]->nbytes, order[i]->offset,
             order[i]->offset + order[i]->nbytes);
  }
  return f;
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

const GgufTensor* GgufFile::find_tensor(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::string GgufFile::get_string(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) fail("{}: metadata '{}' missing", path(), key);
  if (v->type != GgufType::STRING)
    fail("{}: metadata '{}' has type {}, expected STRING", path(), key, gguf_type_name(v->type));
  return std::get<std::string>(v->scalar);
}

int64_t GgufFile::get_int(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) fail("{}: metadata '{}' missing", path(), key);
  if (!is_integer(v->type))
    fail("{}: metadata '{}' has type {}, expected an integer", path(), key, gguf_type_name(v->type));
  if (is_unsigned(v->type)) {
    const uint64_t u = std::get<uint64_t>(v->scalar);
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail("{}: metadata '{}' value {} does not fit in a signed 64-bit integer", path(), key, u);
    return static_cast<int64_t>(u);
  }
  return std::get<int64_t>(v->scalar);
}

double GgufFile::get_float(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) fail("{}: metadata '{}' missing", path(), key);
  if (v->type == GgufType::FLOAT32 || v->type == GgufType::FLOAT64) return std::get<double>(v->scalar);
  if (is_integer(v->type)) {
    if (is_unsigned(v->type)) return static_cast<double>(std::get<uint64_t>(v->scalar));
    return static_cast<double>(std::get<int64_t>(v->scalar));
  }
  fail("{}: metadata '{}' has type {}, expected a number", path(), key, gguf_type_name(v->type));
}

// ------------------------------------------------------------------------------------------------
// Writer

// Setting a key again replaces its value in place: keys stay in first-insertion order and unique.
void GgufWriter::set_encoded(const std::string& key, std::string encoded) {
  for (auto& [k, v] : kv_bytes_)
    if (k == key) {
      v = std::move(encoded);
      return;
    }
  kv_bytes_.emplace_back(key, std::move(encoded));
}

namespace {
void reject_alignment_key(const std::string& key, const char* type) {
  if (key == kAlignmentKey) fail("gguf writer: metadata '{}' must be UINT32, not {}", key, type);
}
}  // namespace

void GgufWriter::set_string(const std::string& key, const std::string& v) {
  reject_alignment_key(key, "STRING");
  std::string e;
  put_type(e, GgufType::STRING);
  put_str(e, v);
  set_encoded(key, std::move(e));
}

void GgufWriter::set_u32(const std::string& key, uint32_t v) {
  if (key == kAlignmentKey) {
    if (!is_pow2(v)) fail("gguf writer: general.alignment {} is not a power of two", v);
    alignment_ = v;
  }
  std::string e;
  put_type(e, GgufType::UINT32);
  put_raw(e, v);
  set_encoded(key, std::move(e));
}

void GgufWriter::set_i32(const std::string& key, int32_t v) {
  reject_alignment_key(key, "INT32");
  std::string e;
  put_type(e, GgufType::INT32);
  put_raw(e, v);
  set_encoded(key, std::move(e));
}

void GgufWriter::set_f32(const std::string& key, float v) {
  reject_alignment_key(key, "FLOAT32");
  std::string e;
  put_type(e, GgufType::FLOAT32);
  put_raw(e, v);
  set_encoded(key, std::move(e));
}

void GgufWriter::set_bool(const std::string& key, bool v) {
  reject_alignment_key(key, "BOOL");
  std::string e;
  put_type(e, GgufType::BOOL);
  put_raw(e, static_cast<uint8_t>(v ? 1 : 0));
  set_encoded(key, std::move(e));
}

void GgufWriter::set_strings(const std::string& key, const std::vector<std::string>& v) {
  reject_alignment_key(key, "ARRAY");
  std::string e;
  put_type(e, GgufType::ARRAY);
  put_type(e, GgufType::STRING);
  put_u64(e, v.size());
  for (const auto& s : v) put_str(e, s);
  set_encoded(key, std::move(e));
}

void GgufWriter::set_f32s(const std::string& key, const std::vector<float>& v) {
  reject_alignment_key(key, "ARRAY");
  std::string e;
  put_type(e, GgufType::ARRAY);
  put_type(e, GgufType::FLOAT32);
  put_u64(e, v.size());
  e.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
  set_encoded(key, std::move(e));
}

void GgufWriter::set_i32s(const std::string& key, const std::vector<int32_t>& v) {
  reject_alignment_key(key, "ARRAY");
  std::string e;
  put_type(e, GgufType::ARRAY);
  put_type(e, GgufType::INT32);
  put_u64(e, v.size());
  e.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(int32_t));
  set_encoded(key, std::move(e));
}

void GgufWriter::add_tensor(const std::string& name, const std::vector<int64_t>& dims, DType type, const void* data,
                            size_t nbytes) {
  auto bytes = std::make_shared<std::vector<uint8_t>>(static_cast<const uint8_t*>(data),
                                                      static_cast<const uint8_t*>(data) + nbytes);
  add_tensor(name, dims, type, nbytes, [bytes](uint8_t* dst) {
    if (!bytes->empty()) std::memcpy(dst, bytes->data(), bytes->size());
  });
}

void GgufWriter::add_tensor(const std::string& name, const std::vector<int64_t>& dims, DType type, size_t nbytes,
                            Fill fill) {
  if (name.size() > kMaxNameLength)
    fail("gguf writer: tensor name '{}' is {} bytes long; ggml allows at most {}", name, name.size(), kMaxNameLength);
  for (const auto& t : tensors_)
    if (t.name == name) fail("gguf writer: duplicate tensor name '{}'", name);
  if (dims.empty() || dims.size() > kMaxDims)
    fail("gguf writer: tensor '{}' has {} dimensions, expected 1 to {}", name, dims.size(), kMaxDims);
  int64_t numel = 1;
  for (int64_t d : dims)
    if (d <= 0 || __builtin_mul_overflow(numel, d, &numel))
      fail("gguf writer: tensor '{}' has a non-positive or overflowing dimension {}", name, d);
  const int64_t bs = dtype_block_size(type);
  if (dims[0] % bs != 0)
    fail("gguf writer: tensor '{}' row length {} is not a multiple of the {} block size {}", name, dims[0],
         dtype_name(type), bs);
  const size_t want = static_cast<size_t>(numel / bs) * dtype_block_bytes(type);
  if (nbytes != want)
    fail("gguf writer: tensor '{}' has {} bytes but {} {} elements need {}", name, nbytes, numel, dtype_name(type),
         want);
  tensors_.push_back({name, dims, type, nbytes, std::move(fill)});
}

std::string GgufWriter::header() const {
  std::string out;
  out.append(kMagic, 4);
  put_u32(out, 3);
  put_u64(out, tensors_.size());
  put_u64(out, kv_bytes_.size());
  for (const auto& [k, v] : kv_bytes_) {
    put_str(out, k);
    out += v;
  }
  uint64_t off = 0;
  for (const auto& t : tensors_) {
    put_str(out, t.name);
    put_u32(out, static_cast<uint32_t>(t.dims.size()));
    for (int64_t d : t.dims) put_u64(out, static_cast<uint64_t>(d));
    put_u32(out, ggml_type_id(t.type));
    put_u64(out, off);
    off = align_up(off + t.nbytes, alignment_);
  }
  if (!tensors_.empty()) out.resize(align_up(out.size(), alignment_), '\0');
  return out;
}

std::string GgufWriter::serialize() const {
  std::string out = header();
  for (const auto& t : tensors_) {
    const size_t at = out.size();
    out.resize(at + t.nbytes);
    t.fill(reinterpret_cast<uint8_t*>(out.data() + at));
    out.resize(align_up(out.size(), alignment_), '\0');
  }
  return out;
}

void GgufWriter::write(const std::string& path) const {
  AtomicFileWriter f(path);
  const std::string head = header();
  f.write(head.data(), head.size());
  std::vector<uint8_t> buf;  // one tensor at a time
  const std::vector<uint8_t> zeros(alignment_, 0);
  for (const auto& t : tensors_) {
    buf.resize(t.nbytes);
    t.fill(buf.data());
    f.write(buf.data(), buf.size());
    f.write(zeros.data(), align_up(f.written(), alignment_) - f.written());
  }
  f.commit();
}

}  // namespace la
