// The transport's alpha (latency) and beta (seconds per byte) as the trainer uses it: one
// MPI_Allgatherv of a buffer per rank, timed over message sizes from 8 B to 64 MiB (median of
// repeats), then a least-squares line t = alpha + beta * bytes over the sizes >= 64 KiB.
// Feeds the projection table of docs/PERFORMANCE.md (issue 16).
//   mpicxx -O2 -o /tmp/mpi_alpha_beta bench/mpi_alpha_beta.cpp
//   mpirun -np 2 /tmp/mpi_alpha_beta                      # shared memory on one host
//   mpirun -np 2 --mca btl self,tcp ... /tmp/mpi_alpha_beta   # TCP (see bench/README.md)
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <vector>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  std::vector<double> xs, ys;
  if (rank == 0) std::printf("| bytes per rank | median s | GB/s received per rank |\n|---:|---:|---:|\n");
  for (size_t bytes = 8; bytes <= (size_t{64} << 20); bytes *= 8) {
    std::vector<char> mine(bytes, static_cast<char>(rank)), all(bytes * static_cast<size_t>(size));
    std::vector<int> counts(static_cast<size_t>(size), static_cast<int>(bytes)), displs(static_cast<size_t>(size));
    for (int r = 0; r < size; ++r) displs[static_cast<size_t>(r)] = static_cast<int>(bytes) * r;
    const int reps = bytes < (size_t{1} << 20) ? 50 : 7;
    std::vector<double> t;
    for (int i = 0; i < reps; ++i) {
      MPI_Barrier(MPI_COMM_WORLD);
      const double t0 = MPI_Wtime();
      MPI_Allgatherv(mine.data(), static_cast<int>(bytes), MPI_BYTE, all.data(), counts.data(), displs.data(), MPI_BYTE,
                     MPI_COMM_WORLD);
      t.push_back(MPI_Wtime() - t0);
    }
    std::sort(t.begin(), t.end());
    const double med = t[t.size() / 2];
    if (bytes >= (size_t{64} << 10)) {
      xs.push_back(static_cast<double>(bytes));
      ys.push_back(med);
    }
    if (rank == 0)
      std::printf("| %zu | %.6f | %.3f |\n", bytes, med, static_cast<double>(bytes) * (size - 1) / med / 1e9);
  }
  if (rank == 0 && xs.size() >= 2) {
    double mx = 0, my = 0;
    for (size_t i = 0; i < xs.size(); ++i) mx += xs[i], my += ys[i];
    mx /= static_cast<double>(xs.size());
    my /= static_cast<double>(xs.size());
    double sxy = 0, sxx = 0;
    for (size_t i = 0; i < xs.size(); ++i) sxy += (xs[i] - mx) * (ys[i] - my), sxx += (xs[i] - mx) * (xs[i] - mx);
    const double beta = sxy / sxx, alpha = my - beta * mx;
    std::printf("ranks %d: alpha %.1f us, beta %.3f ns/byte (%.2f GB/s)\n", size, alpha * 1e6, beta * 1e9,
                1.0 / beta / 1e9);
  }
  MPI_Finalize();
}
