#include "la/core/paths.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>

#include "la/core/error.h"

namespace la {

namespace {

// The temporary name an atomic write uses beside the output: "<name>.tmp.<pid>".
constexpr size_t kTempSuffix = 16;

bool lexically_same(const std::string& a, const std::string& b) {
  std::error_code ea, eb;
  const auto pa = std::filesystem::weakly_canonical(a, ea), pb = std::filesystem::weakly_canonical(b, eb);
  return !ea && !eb && pa == pb;
}

}  // namespace

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {
  }, sb{};
  if (::stat(a.c_str(), &sa) != 0 || ::stat(b.c_str(), &sb) != 0) return false;
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

void check_output_path(const std::string& flag, const std::string& path) {
  if (path.empty()) fail("{}: empty path", flag);
  namespace fs = std::filesystem;
  const fs::path p(path);
  const std::string name = p.filename().string();
  if (name.empty() || name == "." || name == "..") fail("{} {}: names a folder, not a file", flag, path);
  if (name.size() + kTempSuffix > NAME_MAX)
    fail("{} {}: the file name has {} bytes; at most {} are allowed here", flag, path, name.size(),
         NAME_MAX - kTempSuffix);
  if (path.size() + kTempSuffix > PATH_MAX) fail("{} {}: the path is too long", flag, path);
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) fail("{} {}: is a folder, not a file", flag, path);
    if (!S_ISREG(st.st_mode)) fail("{} {}: exists and is not a regular file; it would be replaced", flag, path);
  }
  const std::string dir = p.has_parent_path() ? p.parent_path().string() : std::string(".");
  struct stat sd {};
  if (::stat(dir.c_str(), &sd) != 0) fail("{} {}: the folder {} does not exist", flag, path, dir);
  if (!S_ISDIR(sd.st_mode)) fail("{} {}: {} is not a folder", flag, path, dir);
  if (::access(dir.c_str(), W_OK | X_OK) != 0) fail("{} {}: the folder {} is not writable", flag, path, dir);
}

void check_outputs_distinct(const std::vector<std::pair<std::string, std::string>>& outputs,
                            const std::vector<std::pair<std::string, std::string>>& inputs) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    const auto& [oflag, out] = outputs[i];
    if (out.empty()) continue;
    for (const auto& [iflag, in] : inputs)
      if (!in.empty() && (same_file(out, in) || lexically_same(out, in)))
        fail("{} {}: is the same file as the input {} {}; refusing to overwrite it", oflag, out, iflag, in);
    for (size_t j = 0; j < i; ++j)
      if (!outputs[j].second.empty() && (same_file(out, outputs[j].second) || lexically_same(out, outputs[j].second)))
        fail("{} {}: is the same file as {} {}", oflag, out, outputs[j].first, outputs[j].second);
  }
}

}  // namespace la
