// Read-only memory-mapped file: weights are used in place, never copied.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace la {

class MappedFile {
 public:
  // Throws la::Error naming the path when it cannot be opened or mapped.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Releases the resident pages wholly inside [p, p + n) when that lies in this mapping (else
  // nothing): a later read maps them in again from the file. For data kept in another form.
  void drop_pages(const void* p, size_t n) const;

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Reads a whole (small) file into a string; throws la::Error naming the path. Only regular files
// are opened (MappedFile::open too): a FIFO or a device is an error, never a hang or an endless
// read. A file of more than `max_bytes` is an error.
std::string read_file(const std::string& path, size_t max_bytes = size_t{1} << 32);

// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename.
void write_file_atomic(const std::string& path, const void* bytes, size_t n);

// The same, for a file written piece by piece (a converted model, one tensor at a time): the
// pieces go to a temporary file beside `path`; commit() fsyncs it and renames it over `path`.
// Destroyed without commit() (an error on the way), it removes the temporary file and `path` is
// untouched. Throws la::Error naming the path.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(const std::string& path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* bytes, size_t n);
  void commit();
  uint64_t written() const { return written_; }

 private:
  void discard();
  std::string path_, tmp_;
  int fd_ = -1;
  uint64_t written_ = 0;
};

bool file_exists(const std::string& path);
bool is_directory(const std::string& path);

}  // namespace la
