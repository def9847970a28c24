// Shared by the libFuzzer targets of tests/fuzz (adapter_fuzzer, data_fuzzer, tokenizer_fuzzer):
// the readers take a path, so each input is written to one private temporary file; and the
// checks on a reader's la::Error (it names the file once, on one line apart from what it
// quotes). A broken rule prints the message and aborts, which libFuzzer reports as a crash.
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "la/core/error.h"

namespace la_fuzz {

inline const std::string& temp_path() {
  static const std::string path = [] {
    const char* dir = std::getenv("TMPDIR");
    std::string tmpl = std::string(dir && *dir ? dir : "/tmp") + "/la-fuzz-XXXXXX";
    const int fd = mkstemp(tmpl.data());
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

// Writes the input to temp_path() (a fresh file: rewriting a truncated one makes ext4 flush it
// to disk) and returns the path.
inline const std::string& write_input(const uint8_t* data, size_t size) {
  const std::string& path = temp_path();
  unlink(path.c_str());
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) std::abort();
  for (size_t off = 0; off < size;) {
    const ssize_t n = write(fd, data + off, size - off);
    if (n <= 0) std::abort();
    off += static_cast<size_t>(n);
  }
  close(fd);
  return path;
}

[[noreturn]] inline void finding(const char* what, std::string_view detail) {
  std::fprintf(stderr, "FINDING: %s: %.*s\n", what, static_cast<int>(detail.size()), detail.data());
  std::abort();
}

inline void check(bool ok, const char* what) {
  if (!ok) finding(what, "");
}

// An la::Error from a reader on `input`: names the file exactly once and is one line apart from
// what it quotes ('...'). libFuzzer learns the temporary path from the readers' comparisons and
// writes it into inputs, which a message may then quote: the path twice is a finding only when
// the input does not hold it; and a ' in the input can fool the quote tracking, so lines are only
// checked without one.
inline void check_error(const la::Error& e, const std::string& path, std::string_view input) {
  const std::string msg = e.what();
  const size_t at = msg.find(path);
  if (at == std::string::npos) finding("error does not name the file", msg);
  if (msg.find(path, at + 1) != std::string::npos && input.find(path) == std::string_view::npos)
    finding("error names the file twice", msg);
  if (input.find('\'') != std::string_view::npos) return;
  bool quoted = false;
  for (char c : msg) {
    if (c == '\'') quoted = !quoted;
    if (!quoted && (c == '\n' || c == '\r')) finding("error spans lines", msg);
  }
}

}  // namespace la_fuzz
