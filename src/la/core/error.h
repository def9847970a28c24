// Errors that reach the user: one line, naming the file and what is wrong.
#pragma once
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace la {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// fail("{}: header length {} exceeds file size {}", path, n, size)
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace la
