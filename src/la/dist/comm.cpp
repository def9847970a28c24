#include "la/dist/comm.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "la/core/error.h"

#ifdef LA_WITH_MPI
#include <mpi.h>
#endif

namespace la {
namespace {

Comm& the_world() {
  static Comm world;
  return world;
}

bool started_by_mpirun() {
  // Open MPI (and PMIx launchers) put these in every rank's environment.
  return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMIX_RANK");
}

#ifdef LA_WITH_MPI
bool g_initialised = false;

void check_mpi(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    fail("MPI: {} failed: {}", what, std::string(msg, static_cast<size_t>(len)));
  }
}
#endif

}  // namespace

bool built_with_mpi() {
#ifdef LA_WITH_MPI
  return true;
#else
  return false;
#endif
}

void Comm::init(int* argc, char*** argv) {
#ifdef LA_WITH_MPI
  if (g_initialised || !started_by_mpirun()) return;
  int provided = 0;
  // Only the main thread talks to MPI; OpenMP threads compute between the collectives.
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    std::fprintf(stderr, "error: MPI_Init failed\n");
    std::exit(1);
  }
  g_initialised = true;
  // Errors come back as codes (turned into la::Error) rather than ending the job silently.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  Comm& w = the_world();
  MPI_Comm_rank(MPI_COMM_WORLD, &w.rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &w.size_);
#else
  (void)argc;
  (void)argv;
  if (started_by_mpirun() && std::getenv("OMPI_COMM_WORLD_SIZE") &&
      std::atoi(std::getenv("OMPI_COMM_WORLD_SIZE")) > 1) {
    std::fprintf(stderr,
                 "error: started by mpirun with %s ranks, but this llama-adapter was built without MPI "
                 "(install libopenmpi-dev and rebuild)\n",
                 std::getenv("OMPI_COMM_WORLD_SIZE"));
    std::exit(1);
  }
#endif
}

void Comm::finalize() {
#ifdef LA_WITH_MPI
  if (g_initialised) {
    MPI_Finalize();
    g_initialised = false;
  }
#endif
}

const Comm& Comm::world() {
  return the_world();
}

std::vector<std::string> Comm::allgather(const std::string& mine) const {
  if (size_ == 1) return {mine};
#ifdef LA_WITH_MPI
  if (mine.size() > static_cast<size_t>(std::numeric_limits<int>::max()))
    fail("MPI: {} bytes from one rank in one exchange is more than MPI's int counts allow", mine.size());
  int mine_n = static_cast<int>(mine.size());
  std::vector<int> counts(static_cast<size_t>(size_)), displs(static_cast<size_t>(size_));
  check_mpi(MPI_Allgather(&mine_n, 1, MPI_INT, counts.data(), 1, MPI_INT, MPI_COMM_WORLD), "MPI_Allgather");
  int64_t total = 0;
  for (int r = 0; r < size_; ++r) {
    displs[static_cast<size_t>(r)] = static_cast<int>(total);
    total += counts[static_cast<size_t>(r)];
  }
  if (total > std::numeric_limits<int>::max())
    fail("MPI: {} bytes in one exchange is more than MPI's int counts allow", total);
  std::string all(static_cast<size_t>(total), '\0');
  check_mpi(
      MPI_Allgatherv(mine.data(), mine_n, MPI_BYTE, all.data(), counts.data(), displs.data(), MPI_BYTE, MPI_COMM_WORLD),
      "MPI_Allgatherv");
  bytes_sent_ += mine.size();
  std::vector<std::string> out(static_cast<size_t>(size_));
  for (int r = 0; r < size_; ++r)
    out[static_cast<size_t>(r)] = all.substr(static_cast<size_t>(displs[static_cast<size_t>(r)]),
                                             static_cast<size_t>(counts[static_cast<size_t>(r)]));
  return out;
#else
  fail("MPI: more than one rank without MPI support");
#endif
}

bool Comm::any(bool mine) const {
  if (size_ == 1) return mine;
  for (const std::string& s : allgather(std::string(1, mine ? '1' : '0')))
    if (s == "1") return true;
  return false;
}

void Comm::check_same(const std::string& what, const std::string& fingerprint) const {
  if (size_ == 1) return;
  const std::vector<std::string> all = allgather(fingerprint);
  std::string differ;
  for (int r = 1; r < size_; ++r)
    if (all[static_cast<size_t>(r)] != all[0]) differ += (differ.empty() ? "" : ", ") + std::to_string(r);
  if (!differ.empty())
    fail("ranks {} have other {} than rank 0 (every rank of the job must be started with the same)", differ, what);
}

void Comm::abort(const std::string& message, int code) const {
  if (size_ > 1)
    std::fprintf(stderr, "error: rank %d of %d: %s\n", rank_, size_, message.c_str());
  else
    std::fprintf(stderr, "error: %s\n", message.c_str());
  std::fflush(stderr);
#ifdef LA_WITH_MPI
  if (g_initialised) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::exit(code);
}

}  // namespace la
