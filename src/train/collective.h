// Collectives over the ranks of a training job, on host fp32 buffers: one process, or MPI ranks
// started by mpirun/srun. Data parallelism needs only these: all-reduce (plain DP), and
// reduce-scatter + all-gather (ZeRO-1: each rank owns a slice of the optimizer state). On GPUs
// the trainer sums on the device with backend::DeviceComm (NCCL), which is bootstrapped and
// aborted through this one.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace tsumugi::train {

class Collective {
 public:
  virtual ~Collective() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const char* kind() const = 0;
  virtual void allreduce_sum(float* data, std::size_t n) = 0;
  virtual void allreduce_sum(double* data, std::size_t n) = 0;
  // `data` holds size() consecutive segments of counts[r] floats. Afterwards this rank's segment
  // holds the element-wise sum over ranks (other segments are unspecified).
  virtual void reduce_scatter_sum(float* data, const std::vector<std::size_t>& counts) = 0;
  // Every rank's own segment of `data` (as above) copied to every rank.
  virtual void allgather(float* data, const std::vector<std::size_t>& counts) = 0;
  // `n` bytes of rank 0's `data` copied to every rank (NCCL's bootstrap id).
  virtual void broadcast_from_rank0(void* data, std::size_t n) = 0;
  // Throws Error on every rank when ranks disagree about `value` (e.g. the run configuration).
  virtual void check_same(const std::string& what, const std::string& value) = 0;
  // Ends every rank of the job with this message (a failing rank must not leave others waiting).
  [[noreturn]] virtual void abort(const std::string& message) = 0;
};

// MPI when launched by mpirun/srun with more than one rank (and built with MPI), else one process.
std::unique_ptr<Collective> make_collective();

// The contiguous slice [begin, end) of n elements that rank r of `world` owns (ZeRO-1).
std::pair<std::size_t, std::size_t> shard_range(std::size_t n, int world, int r);

}  // namespace tsumugi::train
