#include "util/comm.h"

#include <algorithm>
#include <cstdlib>

#include "util/error.h"
#include "util/log.h"

#ifdef TSUMUGI_HAVE_MPI
#include <mpi.h>
#endif

namespace tsumugi {

namespace {
class SingleCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::vector<std::string> all_to_all(std::vector<std::string> send) override { return send; }
  std::vector<std::string> all_gather(const std::string& mine) override { return {mine}; }
  void barrier() override {}
  const char* kind() const override { return "single"; }
};

#ifdef TSUMUGI_HAVE_MPI
void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) fail("MPI call {} failed with code {}", what, rc);
}

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator() {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
      int provided = 0;
      check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
      owns_ = true;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  ~MpiCommunicator() override {
    if (owns_) MPI_Finalize();
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* kind() const override { return "mpi"; }
  void barrier() override { check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }

  std::vector<std::string> all_to_all(std::vector<std::string> send) override {
    if (int(send.size()) != size_) fail("all_to_all: {} buffers for {} ranks", send.size(), size_);
    std::vector<uint64_t> send_sizes(size_), recv_sizes(size_);
    for (int i = 0; i < size_; ++i) send_sizes[i] = send[i].size();
    check(MPI_Alltoall(send_sizes.data(), 1, MPI_UINT64_T, recv_sizes.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD),
          "MPI_Alltoall");
    std::vector<std::string> recv(size_);
    recv[rank_] = std::move(send[rank_]);
    // Pairwise exchange in bounded chunks: MPI counts are int, buffers may exceed 2 GiB.
    constexpr uint64_t kChunk = 1u << 30;
    for (int step = 1; step < size_; ++step) {
      int to = (rank_ + step) % size_, from = (rank_ - step + size_) % size_;
      recv[from].resize(recv_sizes[from]);
      uint64_t sent = 0, got = 0;
      while (sent < send_sizes[to] || got < recv_sizes[from]) {
        int sn = int(std::min<uint64_t>(kChunk, send_sizes[to] - sent));
        int rn = int(std::min<uint64_t>(kChunk, recv_sizes[from] - got));
        check(MPI_Sendrecv(send[to].data() + sent, sn, MPI_BYTE, to, step, recv[from].data() + got, rn, MPI_BYTE,
                           from, step, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
              "MPI_Sendrecv");
        sent += uint64_t(sn);
        got += uint64_t(rn);
      }
    }
    return recv;
  }

  std::vector<std::string> all_gather(const std::string& mine) override {
    std::vector<std::string> send(size_, mine);
    return all_to_all(std::move(send));
  }

 private:
  int rank_ = 0, size_ = 1;
  bool owns_ = false;
};
#endif
}  // namespace

bool launched_under_mpi() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"}) {
    const char* v = std::getenv(var);
    if (v && std::atoi(v) > 1) return true;
  }
  return false;
}

std::unique_ptr<Communicator> make_single_communicator() { return std::make_unique<SingleCommunicator>(); }

std::unique_ptr<Communicator> make_communicator() {
  if (!launched_under_mpi()) return make_single_communicator();
#ifdef TSUMUGI_HAVE_MPI
  return std::make_unique<MpiCommunicator>();
#else
  log::warn("started under an MPI launcher, but this tsumugi was built without MPI: every rank runs alone");
  return make_single_communicator();
#endif
}

}  // namespace tsumugi
