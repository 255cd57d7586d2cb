#pragma once
// Byte-level communicator for multi-process jobs: one process, or MPI ranks started by
// mpirun/srun. Corpus jobs use it to split inputs and to exchange dedup keys.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tsumugi {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // send[i] goes to rank i; returns what each rank i sent to this one.
  virtual std::vector<std::string> all_to_all(std::vector<std::string> send) = 0;
  // Every rank's `mine`, in rank order, on every rank.
  virtual std::vector<std::string> all_gather(const std::string& mine) = 0;
  virtual void barrier() = 0;
  virtual const char* kind() const = 0;
};

// MPI when this process was started by an MPI launcher and the build has MPI; else one process.
std::unique_ptr<Communicator> make_communicator();
std::unique_ptr<Communicator> make_single_communicator();
// True if the environment says we were launched by mpirun/srun with more than one rank.
bool launched_under_mpi();

}  // namespace tsumugi
