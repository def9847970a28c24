#include "la/formats/pth.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <unordered_map>
#include <utility>

#include "la/core/error.h"

namespace la {

namespace {

// ------------------------------------------------------------------------------------------------
// ZIP (APPNOTE.TXT): local headers with the data after them, a central directory listing every
// record with its offset, then the end records (ZIP64's when a count or offset does not fit its
// 16/32-bit field; torch writes the ZIP64 end records always).

constexpr uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEndSig = 0x06054b50;
constexpr uint32_t kEnd64Sig = 0x06064b50, kEnd64LocatorSig = 0x07064b50;
constexpr size_t kLocalSize = 30, kCentralSize = 46, kEndSize = 22, kEnd64Size = 56, kEnd64LocatorSize = 20;
constexpr uint16_t kZip64Extra = 0x0001, kPaddingExtra = 0x4246;  // torch pads with a "FB" field
constexpr uint32_t kSaturated32 = 0xFFFFFFFFu;
constexpr uint16_t kSaturated16 = 0xFFFFu;
constexpr size_t kAlignment = 64;  // torch's storage alignment: mmap'ed data is aligned for any type

uint16_t rd16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
uint32_t rd32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t rd64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// CRC-32 (the ZIP/zlib polynomial, reflected), one table lookup per byte. Checked for the small
// records only: a storage's CRC would cost a read of every weight page at open.
uint32_t crc32(uint32_t crc, const uint8_t* p, size_t n) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

struct Record {
  const uint8_t* data;
  uint64_t size;
  uint32_t crc;
  uint64_t index;  // in the central directory
};

// Every record of the archive by name, each one's bytes checked to lie in the file before the
// central directory.
std::map<std::string, Record> read_zip(const MappedFile& f) {
  const std::string& path = f.path();
  const uint8_t* b = f.data();
  const uint64_t size = f.size();
  // The end record is the last thing in the file, followed only by its comment (< 64 KiB).
  uint64_t end = UINT64_MAX;
  if (size >= kEndSize) {
    const uint64_t lowest = size - kEndSize > 0xFFFF ? size - kEndSize - 0xFFFF : 0;
    for (uint64_t p = size - kEndSize + 1; p-- > lowest;)
      if (rd32(b + p) == kEndSig && p + kEndSize + rd16(b + p + 20) == size) {
        end = p;
        break;
      }
  }
  if (end == UINT64_MAX) {
    // torch.save before 1.6 (or with _use_new_zipfile_serialization=False) wrote a bare pickle
    // stream: protocol 2 opcode, then the magic number as a LONG1.
    if (size >= 2 && b[0] == 0x80 && b[1] == 0x02)
      fail("{}: a PyTorch file in the legacy format (torch.save before 1.6); re-save it with torch >= 1.6", path);
    fail("{}: not a PyTorch checkpoint: no ZIP end-of-central-directory record ({} bytes)", path, size);
  }
  const uint8_t* e = b + end;
  if (rd16(e + 4) != 0 || rd16(e + 6) != 0) fail("{}: a multi-disk ZIP archive is not a PyTorch checkpoint", path);
  uint64_t entries = rd16(e + 10), cd_size = rd32(e + 12), cd_offset = rd32(e + 16);
  uint64_t cd_limit = end;  // the directory ends before the end records
  if (end >= kEnd64LocatorSize && rd32(b + end - kEnd64LocatorSize) == kEnd64LocatorSig) {
    const uint8_t* loc = b + end - kEnd64LocatorSize;
    const uint64_t at = rd64(loc + 8);
    if (rd32(loc + 4) != 0 || rd32(loc + 16) > 1)
      fail("{}: a multi-disk ZIP64 archive is not a PyTorch checkpoint", path);
    if (at > end - kEnd64LocatorSize || end - kEnd64LocatorSize - at < kEnd64Size || rd32(b + at) != kEnd64Sig)
      fail("{}: the ZIP64 end record the locator points to (offset {}) is missing", path, at);
    const uint8_t* z = b + at;
    if (rd32(z + 16) != 0 || rd32(z + 20) != 0)
      fail("{}: a multi-disk ZIP64 archive is not a PyTorch checkpoint", path);
    entries = rd64(z + 32);
    cd_size = rd64(z + 40);
    cd_offset = rd64(z + 48);
    cd_limit = at;
  }
  if (cd_offset > cd_limit || cd_size > cd_limit - cd_offset)
    fail("{}: ZIP central directory (offset {}, {} bytes) runs past its end record at {}", path, cd_offset, cd_size,
         cd_limit);
  if (entries > cd_size / kCentralSize)
    fail("{}: ZIP central directory of {} bytes cannot hold {} records", path, cd_size, entries);

  std::map<std::string, Record> records;
  uint64_t pos = cd_offset;
  const uint64_t cd_end = cd_offset + cd_size;
  for (uint64_t i = 0; i < entries; ++i) {
    if (cd_end - pos < kCentralSize || rd32(b + pos) != kCentralSig)
      fail("{}: ZIP central directory record {} is damaged (offset {})", path, i, pos);
    const uint8_t* c = b + pos;
    const uint16_t flags = rd16(c + 8), method = rd16(c + 10);
    const uint32_t crc = rd32(c + 16);
    uint64_t csize = rd32(c + 20), usize = rd32(c + 24), local = rd32(c + 42);
    const uint16_t name_len = rd16(c + 28), extra_len = rd16(c + 30), comment_len = rd16(c + 32);
    if (cd_end - pos - kCentralSize < uint64_t{name_len} + extra_len + comment_len)
      fail("{}: ZIP central directory record {} runs past the directory", path, i);
    const std::string name(reinterpret_cast<const char*>(c + kCentralSize), name_len);
    // ZIP64: a saturated field's real value is in the 0x0001 extra field, in this order.
    const uint8_t* x = c + kCentralSize + name_len;
    for (size_t k = 0; k + 4 <= extra_len;) {
      const uint16_t id = rd16(x + k), len = rd16(x + k + 2);
      if (len > extra_len - k - 4) fail("{}: ZIP record '{}' has a damaged extra field", path, printable(name));
      if (id == kZip64Extra) {
        size_t q = k + 4;
        for (uint64_t* v : {&usize, &csize, &local}) {
          if (*v != kSaturated32) continue;
          if (q + 8 > k + 4 + len) fail("{}: ZIP record '{}' has a short ZIP64 extra field", path, printable(name));
          *v = rd64(x + q);
          q += 8;
        }
      }
      k += 4 + size_t{len};
    }
    if (flags & 1) fail("{}: ZIP record '{}' is encrypted", path, printable(name));
    if (method != 0)
      fail("{}: ZIP record '{}' is compressed (method {}); torch.save stores records uncompressed", path,
           printable(name), method);
    if (csize != usize)
      fail("{}: ZIP record '{}' is stored with {} bytes but says it holds {}", path, printable(name), csize, usize);
    if (local > cd_offset || cd_offset - local < kLocalSize || rd32(b + local) != kLocalSig)
      fail("{}: ZIP record '{}' has no local header at offset {}", path, printable(name), local);
    const uint8_t* l = b + local;
    const uint64_t data_at = local + kLocalSize + rd16(l + 26) + rd16(l + 28);
    if (data_at > cd_offset || rd16(l + 26) != name_len || std::memcmp(l + kLocalSize, name.data(), name_len) != 0)
      fail("{}: ZIP record '{}' does not match its local header at offset {}", path, printable(name), local);
    if (usize > cd_offset - data_at)
      fail("{}: ZIP record '{}' ({} bytes at offset {}) runs past the data section ({} bytes)", path, printable(name),
           usize, data_at, cd_offset);
    if (!records.emplace(name, Record{b + data_at, usize, crc, i}).second)
      fail("{}: ZIP record '{}' appears twice", path, printable(name));
    pos += kCentralSize + name_len + extra_len + comment_len;
  }
  return records;
}

// The bytes of a small record, its CRC checked.
std::string checked_record(const std::string& path, const std::string& name, const Record& r, uint64_t max_bytes) {
  if (r.size > max_bytes)
    fail("{}: record '{}' has {} bytes (at most {} expected)", path, printable(name), r.size, max_bytes);
  if (crc32(0, r.data, r.size) != r.crc) fail("{}: record '{}' is damaged (CRC mismatch)", path, printable(name));
  return std::string(reinterpret_cast<const char*>(r.data), r.size);
}

// ------------------------------------------------------------------------------------------------
// The pickle machine. Only these globals exist; each is a tag, never a function that is called.

enum class Global : uint8_t { OrderedDict, RebuildTensorV2, RebuildParameter, StorageType };

struct StorageType {
  const char* name;  // torch.<name>
  size_t element_size;
  bool listed;  // a float type PthFile lists (`dtype`); the others are read and left out
  DType dtype;
};
// Float storages are the weights. The integer, double and bool ones appear next to them in
// training checkpoints (step counters, masks); they are only ever tagged and skipped.
constexpr StorageType kStorageTypes[] = {
    {"FloatStorage", 4, true, DType::F32},     {"HalfStorage", 2, true, DType::F16},
    {"BFloat16Storage", 2, true, DType::BF16}, {"DoubleStorage", 8, false, DType::F32},
    {"LongStorage", 8, false, DType::F32},     {"IntStorage", 4, false, DType::F32},
    {"ShortStorage", 2, false, DType::F32},    {"CharStorage", 1, false, DType::F32},
    {"ByteStorage", 1, false, DType::F32},     {"BoolStorage", 1, false, DType::F32}};

// The global `module.name` as our tag (and, for storages, which type), or false.
bool allowed_global(std::string_view module, std::string_view name, Global* g, size_t* storage_type) {
  if (module == "collections" && name == "OrderedDict") {
    *g = Global::OrderedDict;
    return true;
  }
  if (module == "torch._utils" && (name == "_rebuild_tensor_v2" || name == "_rebuild_parameter")) {
    *g = name == "_rebuild_tensor_v2" ? Global::RebuildTensorV2 : Global::RebuildParameter;
    return true;
  }
  if (module == "torch")
    for (size_t i = 0; i < std::size(kStorageTypes); ++i)
      if (name == kStorageTypes[i].name) {
        *g = Global::StorageType;
        *storage_type = i;
        return true;
      }
  return false;
}

// Opcodes (pickletools' names). Protocol 2 is what torch.save writes; the data-only opcodes of
// protocols 3 and 4 are read too. Everything that constructs, calls or imports other than through
// GLOBAL + REDUCE (INST, OBJ, NEWOBJ, NEWOBJ_EX, STACK_GLOBAL, EXT*) is refused by name.
enum Op : uint8_t {
  MARK = '(',
  STOP = '.',
  POP = '0',
  POP_MARK = '1',
  BINFLOAT = 'G',
  BININT = 'J',
  BININT1 = 'K',
  BININT2 = 'M',
  NONE = 'N',
  BINPERSID = 'Q',
  REDUCE = 'R',
  BINSTRING = 'T',
  SHORT_BINSTRING = 'U',
  BINUNICODE = 'X',
  BINBYTES = 'B',
  SHORT_BINBYTES = 'C',
  EMPTY_LIST = ']',
  APPEND = 'a',
  BUILD = 'b',
  GLOBAL = 'c',
  DICT = 'd',
  APPENDS = 'e',
  BINGET = 'h',
  LONG_BINGET = 'j',
  LIST = 'l',
  BINPUT = 'q',
  LONG_BINPUT = 'r',
  SETITEM = 's',
  TUPLE = 't',
  SETITEMS = 'u',
  EMPTY_DICT = '}',
  EMPTY_TUPLE = ')',
  PROTO = 0x80,
  TUPLE1 = 0x85,
  TUPLE2 = 0x86,
  TUPLE3 = 0x87,
  NEWTRUE = 0x88,
  NEWFALSE = 0x89,
  LONG1 = 0x8a,
  LONG4 = 0x8b,
  SHORT_BINUNICODE = 0x8c,
  BINUNICODE8 = 0x8d,
  BINBYTES8 = 0x8e,
  MEMOIZE = 0x94,
  FRAME = 0x95,
};

// Names of the opcodes we refuse, for the message.
const char* refused_opcode_name(uint8_t op) {
  switch (op) {
    case 'i': return "INST";
    case 'o': return "OBJ";
    case 0x81: return "NEWOBJ";
    case 0x92: return "NEWOBJ_EX";
    case 0x93: return "STACK_GLOBAL";
    case 0x82:
    case 0x83:
    case 0x84: return "EXT";
    case 'P': return "PERSID";
    case 'I': return "INT";
    case 'L': return "LONG";
    case 'S': return "STRING";
    case 'V': return "UNICODE";
    case 'F': return "FLOAT";
    case 'g': return "GET";
    case 'p': return "PUT";
    case '2': return "DUP";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    default: return nullptr;
  }
}

constexpr uint64_t kMaxPickleBytes = uint64_t{16} << 20;  // a 70B model's data.pkl is ~100 KB
constexpr size_t kMaxName = 4096;
constexpr size_t kMaxValues = size_t{1} << 21;
constexpr int64_t kMaxDim = int64_t{1} << 48;
constexpr int kMaxDepth = 64;
constexpr size_t kMaxVisits = size_t{1} << 22;

// One opcode and where its argument bytes are.
struct Instruction {
  uint8_t op;
  size_t at;   // offset of the opcode
  size_t arg;  // offset of the argument
  size_t len;  // argument bytes (for strings: the string's bytes, after its length)
};

class PickleMachine {
 public:
  PickleMachine(const std::string& path, const std::string& pkl, const std::map<std::string, Record>& records,
                const std::string& prefix)
      : path_(path), pkl_(pkl), records_(records), prefix_(prefix) {}

  // Pass 1: every opcode known and allowed, every GLOBAL on the list, a STOP at the end. Nothing
  // is built before this has seen the whole pickle.
  void scan() {
    size_t pos = 0;
    for (;;) {
      const Instruction in = next(pos);
      if (in.op == GLOBAL) {
        auto [module, name] = global_name(in);
        Global g = Global::OrderedDict;
        size_t st = 0;
        if (!allowed_global(module, name, &g, &st))
          fail(
              "{}: data.pkl names the global '{}.{}' (byte {}): refusing to load; only tensors, their storages and "
              "collections.OrderedDict are read",
              path_, printable(std::string(module)), printable(std::string(name)), in.at);
      }
      if (in.op == STOP) return;
    }
  }

  // Pass 2: builds the values. Returns the tensors, named by their dict keys.
  void run(std::vector<PthTensor>* out) {
    size_t pos = 0;
    for (;;) {
      const Instruction in = next(pos);
      if (in.op == STOP) break;
      step(in);
    }
    if (stack_.size() != 1 || !marks_.empty())
      fail("{}: data.pkl ends with {} values on its stack instead of one", path_, stack_.size());
    Value* root = stack_.back();
    if (root->kind != Kind::Dict) fail("{}: data.pkl holds a {}, not a dict of tensors", path_, kind_name(root->kind));
    std::set<std::string> names;
    flatten(root, "", 0, out, &names);
  }

 private:
  enum class Kind : uint8_t { None, Bool, Int, Float, Str, Bytes, Tuple, List, Dict, Global, Storage, Tensor, BigInt };
  static const char* kind_name(Kind k) {
    constexpr const char* names[] = {"None", "bool", "int",    "float",   "str",    "bytes",  "tuple",
                                     "list", "dict", "global", "storage", "tensor", "big int"};
    return names[static_cast<size_t>(k)];
  }
  struct Value {
    Kind kind = Kind::None;
    int64_t i = 0;              // Bool, Int; Global: the Global tag; Storage, Tensor: index into storages_ / tensors_
    size_t storage_type = 0;    // Global::StorageType
    std::string s;              // Str, Bytes
    std::vector<Value*> items;  // Tuple, List; Dict: key, value, key, value, ...
  };
  struct StorageRef {
    size_t type;  // kStorageTypes
    const uint8_t* data;
    int64_t numel;
    std::string key;
  };
  struct TensorVal {
    size_t type;
    std::vector<int64_t> shape, strides;
    const uint8_t* data;
  };

  Instruction next(size_t& pos) const {
    if (pos >= pkl_.size()) fail("{}: data.pkl ends without a STOP opcode (truncated pickle)", path_);
    Instruction in{static_cast<uint8_t>(pkl_[pos]), pos, pos + 1, 0};
    auto need = [&](size_t n) {
      if (pkl_.size() - in.arg < n) fail("{}: data.pkl is truncated inside an opcode at byte {}", path_, in.at);
    };
    auto length_prefixed = [&](size_t width) {
      need(width);
      uint64_t n = 0;
      std::memcpy(&n, pkl_.data() + in.arg, width);  // little-endian, as the host
      in.arg += width;
      need(0);
      if (n > pkl_.size() - in.arg) fail("{}: data.pkl is truncated inside an opcode at byte {}", path_, in.at);
      in.len = static_cast<size_t>(n);
    };
    switch (in.op) {
      case MARK:
      case STOP:
      case POP:
      case POP_MARK:
      case NONE:
      case BINPERSID:
      case REDUCE:
      case EMPTY_LIST:
      case APPEND:
      case BUILD:
      case DICT:
      case APPENDS:
      case LIST:
      case SETITEM:
      case TUPLE:
      case SETITEMS:
      case EMPTY_DICT:
      case EMPTY_TUPLE:
      case TUPLE1:
      case TUPLE2:
      case TUPLE3:
      case NEWTRUE:
      case NEWFALSE:
      case MEMOIZE: break;
      case PROTO:
      case BININT1:
      case BINGET:
      case BINPUT: in.len = 1; break;
      case BININT2: in.len = 2; break;
      case BININT:
      case LONG_BINGET:
      case LONG_BINPUT: in.len = 4; break;
      case BINFLOAT:
      case FRAME: in.len = 8; break;
      case SHORT_BINSTRING:
      case SHORT_BINBYTES:
      case SHORT_BINUNICODE:
      case LONG1: length_prefixed(1); break;
      case BINSTRING:
      case BINUNICODE:
      case BINBYTES:
      case LONG4: length_prefixed(4); break;
      case BINUNICODE8:
      case BINBYTES8: length_prefixed(8); break;
      case GLOBAL: {
        // "module\nname\n"
        const size_t a = pkl_.find('\n', in.arg);
        const size_t b = a == std::string::npos ? a : pkl_.find('\n', a + 1);
        if (b == std::string::npos) fail("{}: data.pkl is truncated inside a GLOBAL at byte {}", path_, in.at);
        in.len = b + 1 - in.arg;
        break;
      }
      default: {
        const char* name = refused_opcode_name(in.op);
        if (name)
          fail("{}: data.pkl uses the pickle opcode {} (byte {}): refusing to load; only what rebuilds tensors is read",
               path_, name, in.at);
        fail("{}: data.pkl has the unknown pickle opcode 0x{:02x} at byte {}", path_, in.op, in.at);
      }
    }
    need(in.len);
    pos = in.arg + in.len;
    return in;
  }

  std::pair<std::string_view, std::string_view> global_name(const Instruction& in) const {
    const std::string_view s(pkl_.data() + in.arg, in.len);
    const size_t nl = s.find('\n');
    return {s.substr(0, nl), s.substr(nl + 1, s.size() - nl - 2)};
  }

  Value* make(Kind k) {
    if (values_.size() >= kMaxValues) fail("{}: data.pkl builds more than {} objects", path_, kMaxValues);
    values_.emplace_back();
    values_.back().kind = k;
    return &values_.back();
  }
  Value* make_int(int64_t v) {
    Value* x = make(Kind::Int);
    x->i = v;
    return x;
  }
  // The stack, the marks and the memo grow by at most one entry per opcode, but are bounded on
  // their own too: a pickle of nothing but BINGETs would otherwise fill memory with pointers.
  void push(Value* v) {
    if (stack_.size() >= kMaxValues) fail("{}: data.pkl stacks more than {} values", path_, kMaxValues);
    stack_.push_back(v);
  }
  Value* pop(const Instruction& in) {
    if (stack_.empty() || (!marks_.empty() && marks_.back() == stack_.size()))
      fail("{}: data.pkl pops an empty stack at byte {}", path_, in.at);
    Value* v = stack_.back();
    stack_.pop_back();
    return v;
  }
  Value* top(const Instruction& in) {
    if (stack_.empty() || (!marks_.empty() && marks_.back() == stack_.size()))
      fail("{}: data.pkl reads an empty stack at byte {}", path_, in.at);
    return stack_.back();
  }
  // The values above the last MARK, which is removed.
  std::vector<Value*> pop_mark(const Instruction& in) {
    if (marks_.empty()) fail("{}: data.pkl has no MARK for the opcode at byte {}", path_, in.at);
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Value*> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  Value* expect(Value* v, Kind k, const Instruction& in, const char* what) {
    if (v->kind != k)
      fail("{}: data.pkl at byte {}: {} is a {}, expected a {}", path_, in.at, what, kind_name(v->kind), kind_name(k));
    return v;
  }
  void set_items(Value* dict, const std::vector<Value*>& kv, const Instruction& in) {
    expect(dict, Kind::Dict, in, "the target of SETITEM(S)");
    if (kv.size() % 2) fail("{}: data.pkl at byte {}: SETITEMS with an odd number of values", path_, in.at);
    dict->items.insert(dict->items.end(), kv.begin(), kv.end());
  }
  void memo_put(uint32_t k, const Instruction& in) {
    if (memo_.size() >= kMaxValues && !memo_.count(k))
      fail("{}: data.pkl memoizes more than {} values", path_, kMaxValues);
    memo_[k] = top(in);
  }
  Value* memo_get(uint32_t k, const Instruction& in) {
    auto it = memo_.find(k);
    if (it == memo_.end()) fail("{}: data.pkl at byte {}: memo {} was never stored", path_, in.at, k);
    return it->second;
  }
  int64_t little_endian_int(const Instruction& in) {
    // LONG1/LONG4: two's complement, little-endian, any length; we keep those that fit 64 bits.
    if (in.len > 8) return INT64_MIN;
    uint64_t u = 0;
    for (size_t k = 0; k < in.len; ++k) u |= uint64_t{static_cast<uint8_t>(pkl_[in.arg + k])} << (8 * k);
    if (in.len > 0 && in.len < 8 && (static_cast<uint8_t>(pkl_[in.arg + in.len - 1]) & 0x80))
      u |= ~uint64_t{0} << (8 * in.len);  // sign-extend
    return static_cast<int64_t>(u);
  }

  void step(const Instruction& in) {
    const uint8_t* a = reinterpret_cast<const uint8_t*>(pkl_.data()) + in.arg;
    switch (in.op) {
      case PROTO:
        if (a[0] > 5) fail("{}: data.pkl uses pickle protocol {}", path_, a[0]);
        break;
      case FRAME: break;  // framing only groups opcodes
      case MARK:
        if (marks_.size() >= kMaxValues) fail("{}: data.pkl sets more than {} marks", path_, kMaxValues);
        marks_.push_back(stack_.size());
        break;
      case POP: pop(in); break;
      case POP_MARK: pop_mark(in); break;
      case NONE: push(make(Kind::None)); break;
      case NEWTRUE:
      case NEWFALSE: {
        Value* v = make(Kind::Bool);
        v->i = in.op == NEWTRUE;
        push(v);
        break;
      }
      case BININT1: push(make_int(a[0])); break;
      case BININT2: push(make_int(rd16(a))); break;
      case BININT: push(make_int(static_cast<int32_t>(rd32(a)))); break;
      case LONG1:
      case LONG4: {
        const int64_t v = little_endian_int(in);
        Value* x = make_int(v);
        if (in.len > 8) x->kind = Kind::BigInt;  // a value no shape holds
        push(x);
        break;
      }
      case BINFLOAT: {
        uint64_t u = 0;
        for (int k = 0; k < 8; ++k) u = (u << 8) | a[k];  // big-endian
        Value* v = make(Kind::Float);
        std::memcpy(&v->i, &u, 8);
        push(v);
        break;
      }
      case SHORT_BINSTRING:
      case BINSTRING:
      case SHORT_BINUNICODE:
      case BINUNICODE:
      case BINUNICODE8:
      case SHORT_BINBYTES:
      case BINBYTES:
      case BINBYTES8: {
        const bool bytes = in.op == SHORT_BINBYTES || in.op == BINBYTES || in.op == BINBYTES8;
        Value* v = make(bytes ? Kind::Bytes : Kind::Str);
        v->s.assign(pkl_.data() + in.arg, in.len);
        push(v);
        break;
      }
      case EMPTY_TUPLE: push(make(Kind::Tuple)); break;
      case TUPLE1:
      case TUPLE2:
      case TUPLE3: {
        const size_t n = in.op - TUPLE1 + 1u;
        std::vector<Value*> items(n);
        for (size_t k = n; k-- > 0;) items[k] = pop(in);
        Value* t = make(Kind::Tuple);
        t->items = std::move(items);
        push(t);
        break;
      }
      case TUPLE:
      case LIST: {
        std::vector<Value*> items = pop_mark(in);
        Value* t = make(in.op == TUPLE ? Kind::Tuple : Kind::List);
        t->items = std::move(items);
        push(t);
        break;
      }
      case EMPTY_LIST: push(make(Kind::List)); break;
      case APPEND: {
        Value* v = pop(in);
        expect(top(in), Kind::List, in, "the target of APPEND")->items.push_back(v);
        break;
      }
      case APPENDS: {
        std::vector<Value*> items = pop_mark(in);
        Value* list = expect(top(in), Kind::List, in, "the target of APPENDS");
        list->items.insert(list->items.end(), items.begin(), items.end());
        break;
      }
      case EMPTY_DICT: push(make(Kind::Dict)); break;
      case DICT: {
        std::vector<Value*> kv = pop_mark(in);
        Value* d = make(Kind::Dict);
        set_items(d, kv, in);
        push(d);
        break;
      }
      case SETITEM: {
        Value* v = pop(in);
        Value* k = pop(in);
        set_items(top(in), {k, v}, in);
        break;
      }
      case SETITEMS: {
        std::vector<Value*> kv = pop_mark(in);
        set_items(top(in), kv, in);
        break;
      }
      case BINPUT: memo_put(a[0], in); break;
      case LONG_BINPUT: memo_put(rd32(a), in); break;
      case MEMOIZE: memo_put(static_cast<uint32_t>(memo_.size()), in); break;
      case BINGET: push(memo_get(a[0], in)); break;
      case LONG_BINGET: push(memo_get(rd32(a), in)); break;
      case GLOBAL: {
        auto [module, name] = global_name(in);
        Global g = Global::OrderedDict;
        size_t st = 0;
        allowed_global(module, name, &g, &st);  // scan() has refused every other name
        Value* v = make(Kind::Global);
        v->i = static_cast<int64_t>(g);
        v->storage_type = st;
        push(v);
        break;
      }
      case BINPERSID: push(persistent_storage(pop(in), in)); break;
      case REDUCE: {
        Value* args = expect(pop(in), Kind::Tuple, in, "REDUCE's arguments");
        push(reduce(pop(in), args->items, in));
        break;
      }
      case BUILD: {
        // Only an OrderedDict's state (a state dict's `_metadata` attribute): dropped.
        pop(in);
        expect(top(in), Kind::Dict, in, "the target of BUILD");
        break;
      }
      default: fail("{}: data.pkl: opcode 0x{:02x} at byte {} is not handled", path_, in.op, in.at);
    }
  }

  // ('storage', torch.<T>Storage, key, location, numel) -> the record <prefix>/data/<key>.
  Value* persistent_storage(Value* pid, const Instruction& in) {
    const auto& t = pid->items;
    if (pid->kind != Kind::Tuple || t.size() != 5 || t[0]->kind != Kind::Str || t[0]->s != "storage" ||
        t[1]->kind != Kind::Global || static_cast<Global>(t[1]->i) != Global::StorageType || t[2]->kind != Kind::Str ||
        t[4]->kind != Kind::Int)
      fail("{}: data.pkl at byte {}: a persistent id that is not ('storage', type, key, location, numel)", path_,
           in.at);
    const StorageType& type = kStorageTypes[t[1]->storage_type];
    const std::string& key = t[2]->s;
    const int64_t numel = t[4]->i;
    auto it = records_.find(prefix_ + "data/" + key);
    if (it == records_.end()) fail("{}: storage '{}' is missing from the archive", path_, printable(key));
    const Record& r = it->second;
    if (numel < 0 || static_cast<uint64_t>(numel) > r.size / type.element_size)
      fail("{}: storage '{}' holds {} bytes, too few for {} values of torch.{}", path_, printable(key), r.size, numel,
           type.name);
    if (reinterpret_cast<uintptr_t>(r.data) % type.element_size != 0)
      fail("{}: storage '{}' is not aligned to its {}-byte elements in the file", path_, printable(key),
           type.element_size);
    storages_.push_back({t[1]->storage_type, r.data, numel, key});
    Value* v = make(Kind::Storage);
    v->i = static_cast<int64_t>(storages_.size() - 1);
    return v;
  }

  std::vector<int64_t> int_tuple(Value* v, const Instruction& in, const char* what) {
    if (v->kind != Kind::Tuple) fail("{}: data.pkl at byte {}: a tensor's {} is not a tuple", path_, in.at, what);
    std::vector<int64_t> out;
    for (Value* x : v->items) {
      if (x->kind != Kind::Int || x->i < 0 || x->i > kMaxDim)
        fail("{}: data.pkl at byte {}: a tensor's {} holds a value that is not a size", path_, in.at, what);
      out.push_back(x->i);
    }
    return out;
  }

  Value* reduce(Value* callable, const std::vector<Value*>& args, const Instruction& in) {
    if (callable->kind != Kind::Global)
      fail("{}: data.pkl at byte {}: REDUCE calls a {}; only tensors and OrderedDicts are rebuilt", path_, in.at,
           kind_name(callable->kind));
    switch (static_cast<Global>(callable->i)) {
      case Global::OrderedDict:
        if (!args.empty()) fail("{}: data.pkl at byte {}: OrderedDict built from arguments", path_, in.at);
        return make(Kind::Dict);
      case Global::RebuildParameter:
        // (data, requires_grad, backward_hooks): the tensor itself.
        if (args.size() != 3 || args[0]->kind != Kind::Tensor)
          fail("{}: data.pkl at byte {}: _rebuild_parameter without a tensor", path_, in.at);
        return args[0];
      case Global::RebuildTensorV2: return rebuild_tensor(args, in);
      case Global::StorageType: break;
    }
    fail("{}: data.pkl at byte {}: REDUCE calls torch.{}: storages are only read as persistent ids", path_, in.at,
         kStorageTypes[callable->storage_type].name);
  }

  // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
  Value* rebuild_tensor(const std::vector<Value*>& args, const Instruction& in) {
    if ((args.size() != 6 && args.size() != 7) || args[0]->kind != Kind::Storage || args[1]->kind != Kind::Int)
      fail("{}: data.pkl at byte {}: _rebuild_tensor_v2 without (storage, offset, size, stride, ...)", path_, in.at);
    const StorageRef& s = storages_[static_cast<size_t>(args[0]->i)];
    const int64_t offset = args[1]->i;
    TensorVal t{s.type, int_tuple(args[2], in, "size"), int_tuple(args[3], in, "stride"), nullptr};
    if (t.shape.size() != t.strides.size())
      fail("{}: data.pkl at byte {}: a tensor with {} sizes and {} strides", path_, in.at, t.shape.size(),
           t.strides.size());
    // The last element it reaches, offset + sum (size_i - 1) * stride_i, must lie in the storage.
    int64_t numel = 1, last = offset;
    bool overflow = offset < 0;
    for (size_t d = 0; d < t.shape.size(); ++d) {
      overflow |= __builtin_mul_overflow(numel, t.shape[d], &numel) || numel > kMaxDim;
      int64_t reach = 0;
      if (t.shape[d] > 0) overflow |= __builtin_mul_overflow(t.shape[d] - 1, t.strides[d], &reach);
      overflow |= __builtin_add_overflow(last, reach, &last);
      if (overflow) break;
    }
    if (overflow || offset > s.numel || (numel > 0 && last >= s.numel))
      fail("{}: tensor of shape [{}] at offset {} runs past its storage '{}' of {} values", path_,
           fmt::join(t.shape, ", "), offset, printable(s.key), s.numel);
    t.data = s.data + static_cast<size_t>(offset) * kStorageTypes[s.type].element_size;
    tensors_.push_back(std::move(t));
    Value* v = make(Kind::Tensor);
    v->i = static_cast<int64_t>(tensors_.size() - 1);
    return v;
  }

  // Dicts inside dicts become "outer.inner" names; tensors are the leaves, anything else is left.
  void flatten(const Value* dict, const std::string& prefix, int depth, std::vector<PthTensor>* out,
               std::set<std::string>* names) {
    if (depth > kMaxDepth) fail("{}: data.pkl nests dicts more than {} deep", path_, kMaxDepth);
    for (size_t k = 0; k + 1 < dict->items.size(); k += 2) {
      if (++visits_ > kMaxVisits) fail("{}: data.pkl's dicts hold more than {} entries in all", path_, kMaxVisits);
      const Value* key = dict->items[k];
      const Value* val = dict->items[k + 1];
      std::string name;
      if (key->kind == Kind::Str) {
        // Checked before joining: a long key shared by many entries would otherwise be copied for each.
        if (prefix.size() + key->s.size() > kMaxName)
          fail("{}: data.pkl has a key path longer than {} bytes", path_, kMaxName);
        name = prefix + key->s;
      } else if (key->kind == Kind::Int) {
        name = prefix + std::to_string(key->i);  // an optimizer's state is keyed by parameter index
      } else {
        continue;
      }
      if (val->kind == Kind::Dict) {
        flatten(val, name + ".", depth + 1, out, names);
      } else if (val->kind == Kind::Tensor) {
        const TensorVal& t = tensors_[static_cast<size_t>(val->i)];
        if (!names->insert(name).second) fail("{}: tensor name '{}' appears twice", path_, printable(name));
        const StorageType& type = kStorageTypes[t.type];
        if (!type.listed) continue;
        out->push_back(PthTensor{name, type.dtype, t.shape, t.strides, t.data});
      }
    }
  }

  const std::string& path_;
  const std::string& pkl_;
  const std::map<std::string, Record>& records_;
  const std::string& prefix_;
  std::deque<Value> values_;  // every value; the stack and the memo point here (cycles are harmless)
  std::vector<Value*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint32_t, Value*> memo_;
  std::vector<StorageRef> storages_;
  std::vector<TensorVal> tensors_;
  size_t visits_ = 0;
};

size_t element_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F16:
    case DType::BF16: return 2;
    default: return 0;
  }
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// PthTensor / PthFile

int64_t PthTensor::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

size_t PthTensor::nbytes() const {
  return static_cast<size_t>(numel()) * element_size(dtype);
}

bool PthTensor::contiguous() const {
  int64_t expected = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    if (shape[d] == 0) return true;
    if (shape[d] != 1 && strides[d] != expected) return false;
    expected *= shape[d];
  }
  return true;
}

std::unique_ptr<PthFile> PthFile::open(const std::string& path) {
  auto f = std::unique_ptr<PthFile>(new PthFile());
  f->file_ = MappedFile::open(path);
  const std::map<std::string, Record> records = read_zip(*f->file_);
  // torch names every record <prefix>/<name>, the prefix being the first path component.
  std::string prefix;
  for (const auto& [name, r] : records) {
    const size_t slash = name.find('/');
    if (slash != std::string::npos && name.compare(slash, std::string::npos, "/data.pkl") == 0) {
      if (!prefix.empty())
        fail("{}: the archive holds two pickles ({}data.pkl and {})", path, printable(prefix), printable(name));
      prefix = name.substr(0, slash + 1);
    }
  }
  if (prefix.empty()) fail("{}: a ZIP archive without <name>/data.pkl: not a torch.save checkpoint", path);
  if (auto it = records.find(prefix + "byteorder"); it != records.end()) {
    const std::string order = checked_record(path, it->first, it->second, 16);
    if (order != "little")
      fail("{}: byteorder is '{}'; only little-endian checkpoints are read", path, printable(order));
  }
  if (auto it = records.find(prefix + "version"); it != records.end()) {
    const std::string v = checked_record(path, it->first, it->second, 16);
    const size_t digits = std::min(v.find_first_not_of("0123456789"), v.size());
    if (digits == 0 || digits > 4 || v.find_first_not_of("\n", digits) != std::string::npos)
      fail("{}: record 'version' is '{}', not a number", path, printable(v));
  }
  const std::string pkl = checked_record(path, prefix + "data.pkl", records.at(prefix + "data.pkl"), kMaxPickleBytes);
  PickleMachine vm(path, pkl, records, prefix);
  vm.scan();
  vm.run(&f->tensors_);
  return f;
}

const PthTensor* PthFile::find(std::string_view name) const {
  for (const PthTensor& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

// ------------------------------------------------------------------------------------------------
// Writing

namespace {

void put16(std::string& b, uint16_t v) {
  b.append(reinterpret_cast<const char*>(&v), 2);
}
void put32(std::string& b, uint32_t v) {
  b.append(reinterpret_cast<const char*>(&v), 4);
}
void put64(std::string& b, uint64_t v) {
  b.append(reinterpret_cast<const char*>(&v), 8);
}

// Writes records one after another through `out`, then the directory and end records.
class ZipWriter {
 public:
  ZipWriter(std::function<void(const void*, size_t)> out, bool zip64) : out_(std::move(out)), force64_(zip64) {}

  void record(const std::string& name, const void* data, uint64_t n) {
    const uint32_t crc = crc32(0, static_cast<const uint8_t*>(data), n);
    const bool z64 = force64_ || n >= kSaturated32;
    std::string h;
    put32(h, kLocalSig);
    put16(h, z64 ? 45 : 20);  // version needed: 4.5 for ZIP64
    put16(h, 0x0800);         // names are UTF-8
    put16(h, 0);              // stored
    put16(h, 0);              // time
    put16(h, 0x21);           // date: 1980-01-01
    put32(h, crc);
    put32(h, z64 ? kSaturated32 : static_cast<uint32_t>(n));
    put32(h, z64 ? kSaturated32 : static_cast<uint32_t>(n));
    put16(h, static_cast<uint16_t>(name.size()));
    std::string extra;
    if (z64) {
      put16(extra, kZip64Extra);
      put16(extra, 16);
      put64(extra, n);
      put64(extra, n);
    }
    // Pad with torch's "FB" field so that the data starts at a multiple of 64.
    const uint64_t unpadded = offset_ + kLocalSize + name.size() + extra.size() + 4;
    const size_t pad = static_cast<size_t>((kAlignment - unpadded % kAlignment) % kAlignment);
    put16(extra, kPaddingExtra);
    put16(extra, static_cast<uint16_t>(pad));
    extra.append(pad, 'Z');
    put16(h, static_cast<uint16_t>(extra.size()));
    h += name;
    h += extra;
    entries_.push_back({name, crc, n, offset_});
    emit(h.data(), h.size());
    emit(data, n);
  }

  void finish() {
    const uint64_t cd_offset = offset_;
    for (const Entry& e : entries_) {
      const bool big_size = force64_ || e.size >= kSaturated32, big_offset = force64_ || e.offset >= kSaturated32;
      std::string extra;
      if (big_size || big_offset) {
        put16(extra, kZip64Extra);
        put16(extra, static_cast<uint16_t>((big_size ? 16 : 0) + (big_offset ? 8 : 0)));
        if (big_size) {
          put64(extra, e.size);
          put64(extra, e.size);
        }
        if (big_offset) put64(extra, e.offset);
      }
      std::string c;
      put32(c, kCentralSig);
      put16(c, 45);  // made by: 4.5
      put16(c, big_size || big_offset ? 45 : 20);
      put16(c, 0x0800);
      put16(c, 0);
      put16(c, 0);
      put16(c, 0x21);
      put32(c, e.crc);
      put32(c, big_size ? kSaturated32 : static_cast<uint32_t>(e.size));
      put32(c, big_size ? kSaturated32 : static_cast<uint32_t>(e.size));
      put16(c, static_cast<uint16_t>(e.name.size()));
      put16(c, static_cast<uint16_t>(extra.size()));
      put16(c, 0);  // comment
      put16(c, 0);  // disk
      put16(c, 0);  // internal attributes
      put32(c, 0);  // external attributes
      put32(c, big_offset ? kSaturated32 : static_cast<uint32_t>(e.offset));
      c += e.name;
      c += extra;
      emit(c.data(), c.size());
    }
    const uint64_t cd_size = offset_ - cd_offset, end64 = offset_, n = entries_.size();
    const bool big = force64_ || n >= kSaturated16 || cd_size >= kSaturated32 || cd_offset >= kSaturated32;
    std::string e;
    // The ZIP64 end record and its locator always, as torch writes them.
    put32(e, kEnd64Sig);
    put64(e, kEnd64Size - 12);
    put16(e, 45);
    put16(e, 45);
    put32(e, 0);
    put32(e, 0);
    put64(e, n);
    put64(e, n);
    put64(e, cd_size);
    put64(e, cd_offset);
    put32(e, kEnd64LocatorSig);
    put32(e, 0);
    put64(e, end64);
    put32(e, 1);
    put32(e, kEndSig);
    put16(e, 0);
    put16(e, 0);
    put16(e, big ? kSaturated16 : static_cast<uint16_t>(n));
    put16(e, big ? kSaturated16 : static_cast<uint16_t>(n));
    put32(e, big ? kSaturated32 : static_cast<uint32_t>(cd_size));
    put32(e, big ? kSaturated32 : static_cast<uint32_t>(cd_offset));
    put16(e, 0);
    emit(e.data(), e.size());
  }

 private:
  struct Entry {
    std::string name;
    uint32_t crc;
    uint64_t size, offset;
  };
  void emit(const void* p, uint64_t n) {
    if (n) out_(p, static_cast<size_t>(n));
    offset_ += n;
  }
  std::function<void(const void*, size_t)> out_;
  bool force64_;
  uint64_t offset_ = 0;
  std::vector<Entry> entries_;
};

// Protocol-2 opcodes for the few values a state dict is made of.
struct PickleWriter {
  std::string b;
  void op(uint8_t o) { b.push_back(static_cast<char>(o)); }
  void global(const char* module, const char* name) {
    op(GLOBAL);
    b += module;
    b += '\n';
    b += name;
    b += '\n';
  }
  void str(const std::string& s) {
    op(BINUNICODE);
    put32(b, static_cast<uint32_t>(s.size()));
    b += s;
  }
  void integer(int64_t v) {
    if (v >= 0 && v < 256) {
      op(BININT1);
      op(static_cast<uint8_t>(v));
    } else if (v >= 0 && v < 65536) {
      op(BININT2);
      put16(b, static_cast<uint16_t>(v));
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      op(BININT);
      put32(b, static_cast<uint32_t>(static_cast<int32_t>(v)));
    } else {
      op(LONG1);
      op(8);
      put64(b, static_cast<uint64_t>(v));
    }
  }
  void tuple(const std::vector<int64_t>& v) {
    if (v.empty()) return op(EMPTY_TUPLE);
    if (v.size() > 3) op(MARK);
    for (int64_t x : v) integer(x);
    op(v.size() > 3 ? static_cast<uint8_t>(TUPLE) : static_cast<uint8_t>(TUPLE1 + v.size() - 1));
  }
  void empty_ordered_dict() {
    global("collections", "OrderedDict");
    op(EMPTY_TUPLE);
    op(REDUCE);
  }
};

const char* storage_class(DType t) {
  for (const StorageType& s : kStorageTypes)
    if (s.listed && s.dtype == t) return s.name;
  return nullptr;
}

int64_t checked_numel(const std::string& name, const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape)
    if (s < 0 || s > kMaxDim || __builtin_mul_overflow(n, s, &n) || n > kMaxDim)
      fail("pth writer: tensor '{}' has an invalid shape [{}]", name, fmt::join(shape, ", "));
  return n;
}

}  // namespace

void PthWriter::add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data) {
  if (!storage_class(dtype))
    fail("pth writer: tensor '{}' has type {}; only F32, F16 and BF16 are written", name, dtype_name(dtype));
  const int64_t n = checked_numel(name, shape);
  if (n > 0 && data == nullptr) fail("pth writer: tensor '{}' has no data", name);
  std::vector<int64_t> strides(shape.size());
  int64_t s = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    strides[d] = s;
    s *= shape[d];
  }
  check_entry(name, n, 0, shape, strides);
  storages_.push_back({dtype, n, data});
  entries_.push_back({name, storages_.size() - 1, 0, std::move(shape), std::move(strides)});
}

void PthWriter::add_view(const std::string& name, const std::string& base, int64_t offset, std::vector<int64_t> shape,
                         std::vector<int64_t> strides) {
  auto it = std::find_if(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.name == base; });
  if (it == entries_.end()) fail("pth writer: view '{}' of '{}', which was not added", name, base);
  const size_t storage = it->storage;
  check_entry(name, storages_[storage].numel, offset, shape, strides);
  entries_.push_back({name, storage, offset, std::move(shape), std::move(strides)});
}

void PthWriter::check_entry(const std::string& name, int64_t storage_numel, int64_t offset,
                            const std::vector<int64_t>& shape, const std::vector<int64_t>& strides) const {
  for (const Entry& e : entries_)
    if (e.name == name) fail("pth writer: tensor '{}' added twice", name);
  if (strides.size() != shape.size())
    fail("pth writer: tensor '{}' has {} sizes and {} strides", name, shape.size(), strides.size());
  const int64_t n = checked_numel(name, shape);
  int64_t last = offset;
  for (size_t d = 0; d < shape.size(); ++d) {
    int64_t reach = 0;
    if (strides[d] < 0 || (shape[d] > 0 && (__builtin_mul_overflow(shape[d] - 1, strides[d], &reach) ||
                                            __builtin_add_overflow(last, reach, &last))))
      fail("pth writer: tensor '{}' has an invalid stride", name);
  }
  if (offset < 0 || offset > storage_numel || (n > 0 && last >= storage_numel))
    fail("pth writer: tensor '{}' runs past its storage of {} values", name, storage_numel);
}

std::string PthWriter::pickle() const {
  PickleWriter p;
  p.op(PROTO);
  p.op(2);
  if (!root_key_.empty()) {
    p.op(EMPTY_DICT);
    p.str(root_key_);
  }
  p.empty_ordered_dict();
  if (!entries_.empty()) {
    p.op(MARK);
    for (const Entry& e : entries_) {
      const Storage& s = storages_[e.storage];
      p.str(e.name);
      p.global("torch._utils", "_rebuild_tensor_v2");
      p.op(MARK);
      p.op(MARK);  // the persistent id: ('storage', torch.FloatStorage, key, location, numel)
      p.str("storage");
      p.global("torch", storage_class(s.dtype));
      p.str(std::to_string(e.storage));
      p.str("cpu");
      p.integer(s.numel);
      p.op(TUPLE);
      p.op(BINPERSID);
      p.integer(e.offset);
      p.tuple(e.shape);
      p.tuple(e.strides);
      p.op(NEWFALSE);          // requires_grad
      p.empty_ordered_dict();  // backward hooks
      p.op(TUPLE);
      p.op(REDUCE);
    }
    p.op(SETITEMS);
  }
  if (!root_key_.empty()) p.op(SETITEM);
  p.op(STOP);
  return p.b;
}

void PthWriter::write(const std::string& path) const {
  AtomicFileWriter file(path);
  ZipWriter zip([&](const void* p, size_t n) { file.write(p, n); }, false);
  const std::string pkl = pickle();
  zip.record("archive/data.pkl", pkl.data(), pkl.size());
  zip.record("archive/byteorder", "little", 6);
  for (size_t k = 0; k < storages_.size(); ++k) {
    const Storage& s = storages_[k];
    zip.record("archive/data/" + std::to_string(k), s.data, static_cast<uint64_t>(s.numel) * element_size(s.dtype));
  }
  zip.record("archive/version", "3\n", 2);
  zip.finish();
  file.commit();
}

std::vector<ZipRecord> read_stored_zip(const std::string& path) {
  auto f = MappedFile::open(path);
  const std::map<std::string, Record> records = read_zip(*f);
  std::vector<ZipRecord> out(records.size());
  for (const auto& [name, r] : records) {
    if (crc32(0, r.data, r.size) != r.crc) fail("{}: record '{}' is damaged (CRC mismatch)", path, printable(name));
    out[r.index] = {name, std::string(reinterpret_cast<const char*>(r.data), r.size)};
  }
  return out;
}

std::string stored_zip(const std::vector<ZipRecord>& records, bool zip64) {
  std::string out;
  ZipWriter zip([&](const void* p, size_t n) { out.append(static_cast<const char*>(p), n); }, zip64);
  for (const ZipRecord& r : records) zip.record(r.name, r.bytes.data(), r.bytes.size());
  zip.finish();
  return out;
}

}  // namespace la
