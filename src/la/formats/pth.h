// PyTorch checkpoints as torch.save writes them since 1.6: a ZIP archive of stored (uncompressed)
// records under one folder, `<prefix>/`:
//   data.pkl      the object, pickled (protocol 2); each tensor is
//                 torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)
//                 and each storage a persistent id ('storage', torch.FloatStorage, key, 'cpu', numel)
//   data/<key>    the storage's bytes, little-endian, 64-byte aligned in the file
//   byteorder     "little" (torch >= 2.1; older files are little-endian without saying so)
//   version       the record format, "3"
// We read this with our own pickle machine that knows only the opcodes and the globals that
// rebuild tensors and dicts: any other global (os.system, builtins.eval, ...) or opcode is an
// error naming the file, found by a scan of the whole pickle before any value is built. Nothing
// of the file is ever executed. Storages stay in the file's mapping (zero-copy).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "la/core/mapped_file.h"
#include "la/tensor/dtype.h"

namespace la {

// One tensor of the checkpoint, a view into its storage: element (i, j, ...) lies at
// data + (i*strides[0] + j*strides[1] + ...) * element size. Strides are in elements.
struct PthTensor {
  std::string name;  // keys of nested dicts joined by '.', as torch names state-dict entries
  DType dtype = DType::F32;
  std::vector<int64_t> shape, strides;
  const void* data = nullptr;  // inside the mapping; element-aligned
  // Row-major with no gaps (strides of size-1 dimensions do not matter), so `data` holds the
  // tensor as numel() consecutive values.
  bool contiguous() const;
  int64_t numel() const;
  size_t nbytes() const;  // numel() * element size
};

class PthFile {
 public:
  // Maps and validates the archive (every offset and size against the file), scans and runs
  // data.pkl, checks every tensor's extent against its storage. Throws la::Error naming the file.
  static std::unique_ptr<PthFile> open(const std::string& path);

  // The float tensors (F32, F16, BF16) in the order the pickle names them. Tensors of other
  // types (int64 step counters, masks) are checked like the rest but not listed; so are
  // non-tensor values (numbers, strings, lists).
  const std::vector<PthTensor>& tensors() const { return tensors_; }
  const PthTensor* find(std::string_view name) const;
  const std::string& path() const { return file_->path(); }
  // The mapping every tensor points into: keep it (ModelWeights::files) to outlive this object.
  const std::shared_ptr<MappedFile>& file() const { return file_; }

 private:
  std::shared_ptr<MappedFile> file_;
  std::vector<PthTensor> tensors_;
};

// Writes what torch.save(OrderedDict) writes for contiguous CPU tensors, so torch.load (also with
// weights_only=True) reads it. Data is not copied: every pointer given must stay valid until
// write() has returned.
class PthWriter {
 public:
  // A tensor of its own storage: numel(shape) consecutive values of `dtype` (F32, F16 or BF16).
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data);
  // A view of the storage of the earlier tensor `base` (torch keeps views as views: a slice, a
  // transpose): `shape` with `strides` (in elements) from element `offset` of base's storage.
  void add_view(const std::string& name, const std::string& base, int64_t offset, std::vector<int64_t> shape,
                std::vector<int64_t> strides);
  // Writes {root_key: {name: tensor, ...}} instead of the state dict itself, as litgpt's
  // checkpoints ({"model": ...}) are laid out. Empty (the default): the state dict.
  void set_root_key(std::string key) { root_key_ = std::move(key); }
  // Atomic (temporary file + rename). Throws la::Error naming the path.
  void write(const std::string& path) const;

 private:
  struct Storage {
    DType dtype;
    int64_t numel;
    const void* data;
  };
  struct Entry {
    std::string name;
    size_t storage;
    int64_t offset;
    std::vector<int64_t> shape, strides;
  };
  std::string pickle() const;
  void check_entry(const std::string& name, int64_t storage_numel, int64_t offset, const std::vector<int64_t>& shape,
                   const std::vector<int64_t>& strides) const;
  std::vector<Storage> storages_;
  std::vector<Entry> entries_;
  std::string root_key_;
};

// The ZIP container alone, for tests and tools that build archives record by record (a
// hand-written data.pkl). Records are stored uncompressed, each one's data 64-byte aligned as
// torch aligns them, and the ZIP64 end records are written as torch writes them; `zip64` also
// puts every size and offset in ZIP64 extra fields, which are otherwise used only past 4 GiB.
struct ZipRecord {
  std::string name;
  std::string bytes;
};
std::string stored_zip(const std::vector<ZipRecord>& records, bool zip64 = false);
// The records of an archive in directory order, validated as PthFile::open validates them (the
// CRCs too). Throws la::Error naming the path.
std::vector<ZipRecord> read_stored_zip(const std::string& path);

}  // namespace la
