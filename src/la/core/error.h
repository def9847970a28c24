// Errors that reach the user: one line, naming the file and what is wrong.
#pragma once
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace la {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// `s` with every control byte (below 0x20, and 0x7f) written as \xNN: messages quote file
// names, tensor names, metadata and token pieces that come from files, and a raw escape sequence
// or newline there could forge or hide lines on the user's terminal.
std::string printable(const std::string& s);

// fail("{}: header length {} exceeds file size {}", path, n, size)
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace la
