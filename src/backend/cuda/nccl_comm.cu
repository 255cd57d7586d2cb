// backend::DeviceComm over NCCL: the data-parallel collectives on the CUDA backend's own buffers
// and stream. Rank 0 makes the ncclUniqueId and the job's host communicator (MPI) broadcasts it.
// Under the emulator (TSUMUGI_CUDA_EMULATION) the same code runs against nccl_emu.h, NCCL's
// calls carried out over MPI on host memory.
#include "backend/cuda/kernels.h"

#ifdef TSU_NCCL

#ifdef TSUMUGI_CUDA_EMULATION
#include "backend/cuda/nccl_emu.h"
#else
#include <nccl.h>
#endif

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

namespace tsumugi::backend::TSU_CUDA_NS {
namespace {

class NcclComm final : public DeviceComm {
 public:
  NcclComm(cudaStream_t stream, const CommBootstrap& boot) : stream_(stream), boot_(boot) {
    if (const char* t = std::getenv("TSUMUGI_NCCL_TIMEOUT_S"); t && *t) timeout_s_ = std::atof(t);
    ncclUniqueId id{};
    if (boot_.rank == 0) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    boot_.broadcast_from_rank0(&id, sizeof(id));
    check(ncclCommInitRank(&comm_, boot_.size, id, boot_.rank), "ncclCommInitRank");
  }
  ~NcclComm() override {
    if (comm_) (void)ncclCommDestroy(comm_);
  }

  std::string describe() const override {
#ifdef TSUMUGI_CUDA_EMULATION
    return "NCCL (emulated over MPI)";
#else
    return "NCCL " + std::to_string(NCCL_MAJOR) + "." + std::to_string(NCCL_MINOR) + "." +
           std::to_string(NCCL_PATCH);
#endif
  }

  void allreduce_sum(const Buf& b, std::size_t n) override {
    if (n == 0) return;
    const ncclDataType_t t = type_of(b, n, "all-reduce");
    check(ncclAllReduce(b.ptr, b.ptr, n, t, ncclSum, comm_, stream_), "ncclAllReduce");
    wait("all-reduce");
  }

  void reduce_scatter_sum(const Buf& b, const std::vector<std::size_t>& counts) override {
    const Segments s = segments(b, counts, "reduce-scatter");
    if (s.equal) {
      // In place: this rank's result lands on its own segment of the input.
      check(ncclReduceScatter(b.ptr, at(b, s.offset[boot_.rank]), counts[0], s.type, ncclSum, comm_, stream_),
            "ncclReduceScatter");
    } else {
      // ZeRO-1's last shard is usually shorter (shard_range rounds to 16 elements) and
      // ncclReduceScatter takes one count: one in-place reduce per owner, grouped so NCCL runs
      // them together. No padded copy of the gradients is needed.
      check(ncclGroupStart(), "ncclGroupStart");
      for (int r = 0; r < boot_.size; ++r)
        if (counts[r])
          check(ncclReduce(at(b, s.offset[r]), at(b, s.offset[r]), counts[r], s.type, ncclSum, r, comm_, stream_),
                "ncclReduce");
      check(ncclGroupEnd(), "ncclGroupEnd");
    }
    wait("reduce-scatter");
  }

  void allgather(const Buf& b, const std::vector<std::size_t>& counts) override {
    const Segments s = segments(b, counts, "all-gather");
    if (s.equal) {
      check(ncclAllGather(at(b, s.offset[boot_.rank]), b.ptr, counts[0], s.type, comm_, stream_), "ncclAllGather");
    } else {
      check(ncclGroupStart(), "ncclGroupStart");
      for (int r = 0; r < boot_.size; ++r)
        if (counts[r])
          check(ncclBroadcast(at(b, s.offset[r]), at(b, s.offset[r]), counts[r], s.type, r, comm_, stream_),
                "ncclBroadcast");
      check(ncclGroupEnd(), "ncclGroupEnd");
    }
    wait("all-gather");
  }

 private:
  struct Segments {
    std::vector<std::size_t> offset;
    ncclDataType_t type;
    bool equal = true;
  };

  Segments segments(const Buf& b, const std::vector<std::size_t>& counts, const char* what) {
    if (static_cast<int>(counts.size()) != boot_.size)
      fail(std::string(what) + ": " + std::to_string(counts.size()) + " segments for " + std::to_string(boot_.size) +
           " ranks");
    Segments s;
    std::size_t total = 0;
    for (std::size_t c : counts) {
      s.offset.push_back(total);
      total += c;
      s.equal = s.equal && c == counts[0];
    }
    s.type = type_of(b, total, what);
    return s;
  }

  ncclDataType_t type_of(const Buf& b, std::size_t n, const char* what) {
    if (!b || b.count < n)
      fail(std::string(what) + ": the buffer holds " + std::to_string(b.count) + " elements, " + std::to_string(n) +
           " are needed");
    switch (dtype_of(b.kind)) {
      case DType::BF16: return ncclBfloat16;
      case DType::F32: return ncclFloat32;
      default: fail(std::string(what) + ": int32 buffers are not summed");
    }
  }

  void* at(const Buf& b, std::size_t elements) const {
    return static_cast<char*>(b.ptr) + elements * dtype_size(dtype_of(b.kind));
  }

  // Waits for the collective here rather than at the trainer's next synchronisation, polling
  // NCCL's asynchronous error state: a peer that fails or stops answering then ends the job with
  // a message instead of leaving this rank blocked in cudaStreamSynchronize for ever.
  void wait(const char* what) {
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
      const cudaError_t e = cudaStreamQuery(stream_);
      if (e == cudaSuccess) return;
      if (e != cudaErrorNotReady) fail(std::string(what) + ": CUDA error " + cudaGetErrorString(e));
      ncclResult_t async = ncclSuccess;
      check(ncclCommGetAsyncError(comm_, &async), "ncclCommGetAsyncError");
      if (async != ncclSuccess && async != ncclInProgress)
        fail(std::string(what) + " failed: " + ncclGetErrorString(async));
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (timeout_s_ > 0 && waited > timeout_s_)
        fail(std::string(what) + " did not finish in " + std::to_string(static_cast<long>(timeout_s_)) +
             " s (a rank has stopped or is stuck; TSUMUGI_NCCL_TIMEOUT_S sets the limit)");
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  void check(ncclResult_t r, const char* call) {
    if (r != ncclSuccess) fail(std::string(call) + " failed: " + ncclGetErrorString(r));
  }

  // Aborts the communicator (its pending work and connections) and then the whole job through
  // the host communicator, so no rank is left waiting in a collective.
  [[noreturn]] void fail(const std::string& message) {
    if (comm_) (void)ncclCommAbort(comm_);
    comm_ = nullptr;
    boot_.abort("NCCL: " + message);  // the host communicator's message names the rank
    std::abort();  // boot_.abort does not return; this keeps [[noreturn]] honest if it did
  }

  cudaStream_t stream_;
  CommBootstrap boot_;
  ncclComm_t comm_ = nullptr;
  double timeout_s_ = 1800;  // half an hour: longer than any one collective of a sane run
};

}  // namespace

std::unique_ptr<DeviceComm> make_nccl_comm(cudaStream_t stream, const CommBootstrap& boot) {
  return std::make_unique<NcclComm>(stream, boot);
}

}  // namespace tsumugi::backend::TSU_CUDA_NS

#endif  // TSU_NCCL
