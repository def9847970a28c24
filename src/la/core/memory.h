// Process memory as the kernel counts it (for benchmarks and `info`).
#pragma once
#include <cstddef>

namespace la {

size_t peak_rss_bytes();     // high-water mark of resident memory (getrusage ru_maxrss)
size_t current_rss_bytes();  // resident now (/proc/self/statm)

}  // namespace la
