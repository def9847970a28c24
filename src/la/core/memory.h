// Process memory as the kernel counts it, and how fast it reads (for benchmarks and `info`).
#pragma once
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>

namespace la {

// A 64-byte aligned buffer that only grows: kernels' per-thread scratch (thread_local, so that a
// server running several models on several threads never shares one).
struct AlignedScratch {
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  std::unique_ptr<void, Free> buf;
  size_t bytes = 0;
  template <class T>
  T* get(size_t n) {
    if (n * sizeof(T) > bytes) {
      bytes = (n * sizeof(T) + 63) / 64 * 64;
      buf.reset(std::aligned_alloc(64, bytes));
      if (!buf) throw std::bad_alloc();
    }
    return static_cast<T*>(buf.get());
  }
};

size_t peak_rss_bytes();     // high-water mark of resident memory (getrusage ru_maxrss)
size_t current_rss_bytes();  // resident now (/proc/self/statm)
// Memory this process could still take: MemAvailable, and no more than what is left under a
// cgroup v2 limit when one is set. 0 when neither can be read.
size_t available_memory_bytes();

// Memory read bandwidth in bytes/s: all threads summing a buffer of `bytes` (far larger than the
// caches) in two ways, with and without software prefetch, `passes` timed passes each after one
// untimed; the faster way's median. The roofline of decode, which reads every weight once per token.
double measure_read_bandwidth(size_t bytes = size_t{512} << 20, int passes = 5);

}  // namespace la
