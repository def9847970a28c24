#include "la/core/memory.h"

#include <omp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

namespace la {

size_t peak_rss_bytes() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<size_t>(ru.ru_maxrss) * 1024;
}

size_t current_rss_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long size = 0, resident = 0;
  const int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  return n == 2 ? static_cast<size_t>(resident) * static_cast<size_t>(sysconf(_SC_PAGESIZE)) : 0;
}

namespace {
// The first number in `path` (after `key` when given), or 0.
size_t read_number(const char* path, const char* key, size_t unit) {
  std::FILE* f = std::fopen(path, "r");
  if (!f) return 0;
  char line[256];
  size_t v = 0;
  while (std::fgets(line, sizeof line, f)) {
    const size_t klen = key ? std::strlen(key) : 0;
    if (key && std::strncmp(line, key, klen) != 0) continue;
    unsigned long long x = 0;
    if (std::sscanf(line + klen, " %llu", &x) == 1) v = static_cast<size_t>(x) * unit;
    break;
  }
  std::fclose(f);
  return v;
}
}  // namespace

size_t available_memory_bytes() {
  size_t avail = read_number("/proc/meminfo", "MemAvailable:", 1024);
  const size_t limit = read_number("/sys/fs/cgroup/memory.max", nullptr, 1);  // "max" reads as 0
  const size_t used = read_number("/sys/fs/cgroup/memory.current", nullptr, 1);
  if (limit > 0 && limit > used && (avail == 0 || limit - used < avail)) avail = limit - used;
  return avail;
}

double measure_read_bandwidth(size_t bytes, int passes) {
  const int64_t n = static_cast<int64_t>(bytes / sizeof(float));
  std::vector<float> buf(static_cast<size_t>(n));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i)
    buf[static_cast<size_t>(i)] = static_cast<float>(i & 7);  // each thread faults its own pages
  // Two ways to read, taking turns pass by pass, and the faster one's median: each thread reads its
  // slice as 4 interleaved streams, the way the decode kernels read weights, with software prefetch
  // 8 KiB ahead (the hardware prefetcher alone left ~1/3 unused on one machine) and without (on
  // another the prefetches cost ~10%).
  std::vector<double> rates[2];
  volatile float sink = 0;
  for (int p = 0; p < 2 * (passes + 1); ++p) {
    const bool prefetch = p % 2 == 0;
    const auto t0 = std::chrono::steady_clock::now();
    float total = 0;
#pragma omp parallel reduction(+ : total)
    {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      const int64_t lo = n * t / nt, hi = n * (t + 1) / nt, q = (hi - lo) / 4 / 16 * 16;
      const float* s0 = buf.data() + lo;
      float acc[4][16] = {};
      for (int64_t i = 0; i < q; i += 16)
        for (int k = 0; k < 4; ++k) {
          const float* src = s0 + k * q + i;
          if (prefetch) __builtin_prefetch(src + 2048);
#pragma omp simd
          for (int j = 0; j < 16; ++j) acc[k][j] += src[j];
        }
      for (int k = 0; k < 4; ++k)
        for (int j = 0; j < 16; ++j) total += acc[k][j];
      for (int64_t i = lo + 4 * q; i < hi; ++i) total += buf[static_cast<size_t>(i)];
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    sink = sink + total;
    if (p >= 2) rates[p % 2].push_back(static_cast<double>(bytes) / s);  // the first of each warms up
  }
  double best = 0;
  for (auto& r : rates) {
    std::sort(r.begin(), r.end());
    best = std::max(best, r[r.size() / 2]);
  }
  return best;
}

}  // namespace la
