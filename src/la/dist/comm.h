// The ranks of a data-parallel run (SPEC §11): Open MPI's MPI_COMM_WORLD when the program was
// started by mpirun and built with MPI (LA_WITH_MPI), else one rank. The trainer deals each step's
// micro-batches to the ranks and combines what they computed in micro-batch order (train/
// trainer.cpp), so the numbers are the same for any number of ranks; this layer only moves bytes.
#pragma once
#include <string>
#include <vector>

namespace la {

class Comm {
 public:
  // Joins the job when started by mpirun (MPI_Init), once, before anything else runs; without
  // mpirun, or without MPI in this build, the world is this process alone. finalize() leaves it.
  static void init(int* argc, char*** argv);
  static void finalize();
  static const Comm& world();

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }
  bool distributed() const { return size_ > 1; }
  // Whether work item j (a micro-batch) is this rank's: j % size == rank.
  bool owns(size_t j) const { return static_cast<int>(j % static_cast<size_t>(size_)) == rank_; }

  // Every rank's `mine` (any length) in rank order, on every rank. One rank: {mine}.
  std::vector<std::string> allgather(const std::string& mine) const;
  // True on every rank when `mine` is true on any.
  bool any(bool mine) const;
  // Every rank must pass the same `fingerprint`; otherwise each rank throws la::Error naming
  // `what` and the ranks that differ from rank 0.
  void check_same(const std::string& what, const std::string& fingerprint) const;
  // Bytes this rank has sent through allgather so far (for the measurements of PERFORMANCE.md).
  size_t bytes_sent() const { return bytes_sent_; }

  // Ends the whole job from this rank after an error it cannot share (the others may be waiting
  // in a collective): the message goes to stderr naming this rank, then MPI_Abort. One rank: exit.
  [[noreturn]] void abort(const std::string& message, int code) const;

 private:
  int rank_ = 0, size_ = 1;
  mutable size_t bytes_sent_ = 0;
};

// Whether this build can run over MPI (LA_WITH_MPI).
bool built_with_mpi();

}  // namespace la
