// Output paths checked before any work is done: a run that would overwrite one of its own inputs,
// or could not write its result at the end, is refused up front.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace la {

// True when both paths exist and name the same file (same device and inode: through symbolic
// and hard links alike).
bool same_file(const std::string& a, const std::string& b);

// Checks that `path` (given with flag `flag`, e.g. "--out") can be written the way outputs are
// written (a temporary file beside it, then a rename): its folder exists and is writable, its
// name leaves room for the temporary suffix, and if it exists it is a regular file (a rename
// over a FIFO or a device would replace it). Throws la::Error "--out PATH: why".
void check_output_path(const std::string& flag, const std::string& path);

// Refuses (la::Error naming both) an output that is the same file as one of `inputs`
// ({flag, path}; empty paths are skipped) or as an earlier output of `outputs`.
void check_outputs_distinct(const std::vector<std::pair<std::string, std::string>>& outputs,
                            const std::vector<std::pair<std::string, std::string>>& inputs);

}  // namespace la
