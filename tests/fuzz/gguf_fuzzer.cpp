// libFuzzer target for the GGUF reader (and, built with -DLA_FUZZ_SAFETENSORS, the safetensors
// reader; with -DLA_FUZZ_PTH, the PyTorch .pth reader). Not part of the CMake build: see tests/fuzz/README.md for the
// command line.
//
// The readers take a path (they mmap the file), so each input is written to one private
// temporary file and opened from there. Every input must either open, with every tensor's bytes
// inside the mapping (they are all read, so ASan / a fault catches anything outside), or throw
// la::Error; any other exception escapes and libFuzzer reports it as a crash.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "la/core/error.h"
#include "la/formats/gguf.h"
#include "la/formats/pth.h"
#include "la/formats/safetensors.h"

namespace {

std::string& temp_path() {
  static std::string path = [] {
    const char* dir = std::getenv("TMPDIR");
    std::string tmpl = std::string(dir && *dir ? dir : "/tmp") + "/la-fuzz-XXXXXX";
    int fd = mkstemp(tmpl.data());
    if (fd < 0) {
      std::perror("mkstemp");
      std::abort();
    }
    close(fd);
    std::atexit([] { unlink(temp_path().c_str()); });
    return tmpl;
  }();
  return path;
}

void write_input(const uint8_t* data, size_t size) {
  const std::string& path = temp_path();
  unlink(path.c_str());  // a fresh file: rewriting a truncated one makes ext4 flush it to disk
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) std::abort();
  for (size_t off = 0; off < size;) {
    ssize_t n = write(fd, data + off, size - off);
    if (n <= 0) std::abort();
    off += static_cast<size_t>(n);
  }
  close(fd);
}

// Reads every byte of [p, p + n) after checking that it lies inside the mapping.
uint64_t touch(const la::MappedFile& m, const uint8_t* p, size_t n) {
  if (n == 0) return 0;
  if (p < m.data() || p > m.data() + m.size() || n > static_cast<size_t>(m.data() + m.size() - p)) std::abort();
  uint64_t sum = 0;
  for (size_t i = 0; i < n; ++i) sum += p[i];
  return sum;
}

volatile uint64_t g_sink;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  write_input(data, size);
  uint64_t sum = 0;
  try {
#if defined(LA_FUZZ_PTH)
    auto f = la::PthFile::open(temp_path());
    for (const auto& t : f->tensors()) {
      // Every element the strides reach.
      int64_t last = 0;
      for (size_t d = 0; d < t.shape.size(); ++d)
        if (t.shape[d] > 0) last += (t.shape[d] - 1) * t.strides[d];
      const size_t es = t.dtype == la::DType::F32 ? 4 : 2;
      if (t.numel() > 0)
        sum += touch(*f->file(), static_cast<const uint8_t*>(t.data), static_cast<size_t>(last + 1) * es);
    }
#elif defined(LA_FUZZ_SAFETENSORS)
    la::SafetensorsFile f = la::SafetensorsFile::open(temp_path());
    for (const auto& t : f.tensors()) {
      if (t.nbytes != static_cast<size_t>(t.numel()) * la::safe_dtype_size(t.dtype)) std::abort();
      sum += touch(*f.file(), t.data, t.nbytes);
    }
#else
    la::GgufFile f = la::GgufFile::open(temp_path());
    for (const auto& t : f.tensors()) {
      if (t.offset % f.alignment() != 0) std::abort();
      sum += touch(*f.file(), t.data, t.nbytes);
    }
    for (const auto& [k, v] : f.metadata()) sum += k.size() + v.strings.size() + v.numbers.size();
#endif
  } catch (const la::Error&) {
    // rejected with a clear error: fine
  }
  g_sink = sum;
  return 0;
}
