#include "train/collective.h"

#include <fmt/format.h>
#include <xxhash.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "util/comm.h"
#include "util/error.h"

#ifdef TSUMUGI_HAVE_MPI
#include <mpi.h>
#endif

namespace tsumugi::train {

std::pair<std::size_t, std::size_t> shard_range(std::size_t n, int world, int r) {
  // Slices start on 16-float (64-byte) boundaries so vector kernels see aligned starts.
  std::size_t per = (n + world - 1) / world;
  per = (per + 15) / 16 * 16;
  std::size_t b = std::min(n, per * static_cast<std::size_t>(r));
  std::size_t e = std::min(n, b + per);
  return {b, e};
}

namespace {

class SingleCollective final : public Collective {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const char* kind() const override { return "single process"; }
  void allreduce_sum(float*, std::size_t) override {}
  void allreduce_sum(double*, std::size_t) override {}
  void reduce_scatter_sum(float*, const std::vector<std::size_t>&) override {}
  void allgather(float*, const std::vector<std::size_t>&) override {}
  void broadcast_from_rank0(void*, std::size_t) override {}
  void check_same(const std::string&, const std::string&) override {}
  [[noreturn]] void abort(const std::string& message) override { throw Error(message); }
};

#ifdef TSUMUGI_HAVE_MPI
class MpiCollective final : public Collective {
 public:
  MpiCollective() {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
      int provided = 0;
      if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        throw Error("MPI_Init_thread failed");
      owns_ = true;
    }
    // Errors come back as codes so they can be reported before the whole job is aborted.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  ~MpiCollective() override {
    if (owns_) MPI_Finalize();
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* kind() const override { return "MPI"; }

  void allreduce_sum(float* data, std::size_t n) override {
    for (std::size_t off = 0; off < n; off += kChunk)
      check(MPI_Allreduce(MPI_IN_PLACE, data + off, static_cast<int>(std::min(kChunk, n - off)), MPI_FLOAT, MPI_SUM,
                          MPI_COMM_WORLD),
            "MPI_Allreduce");
  }
  void allreduce_sum(double* data, std::size_t n) override {
    check(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
  }
  void reduce_scatter_sum(float* data, const std::vector<std::size_t>& counts) override {
    std::vector<int> c = int_counts(counts);
    std::size_t mine_off = 0;
    for (int r = 0; r < rank_; ++r) mine_off += counts[r];
    scratch_.resize(counts[rank_]);
    check(MPI_Reduce_scatter(data, scratch_.data(), c.data(), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD), "MPI_Reduce_scatter");
    std::memcpy(data + mine_off, scratch_.data(), counts[rank_] * sizeof(float));
  }
  void allgather(float* data, const std::vector<std::size_t>& counts) override {
    std::vector<int> c = int_counts(counts), displ(size_);
    int acc = 0;
    for (int r = 0; r < size_; ++r) {
      displ[r] = acc;
      acc += c[r];
    }
    check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, c.data(), displ.data(), MPI_FLOAT, MPI_COMM_WORLD),
          "MPI_Allgatherv");
  }
  void broadcast_from_rank0(void* data, std::size_t n) override {
    if (n > static_cast<std::size_t>(INT32_MAX)) fail("MPI: a broadcast of {} bytes exceeds MPI's int counts", n);
    check(MPI_Bcast(data, static_cast<int>(n), MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Bcast");
  }
  void check_same(const std::string& what, const std::string& value) override {
    unsigned long long h = XXH64(value.data(), value.size(), 0), lo = h, hi = h;
    check(MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, MPI_COMM_WORLD), "MPI_Allreduce");
    check(MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce");
    if (lo != hi) fail("ranks disagree about the {} (rank {} has hash {:016x}); start every rank with the same settings", what, rank_, h);
  }
  [[noreturn]] void abort(const std::string& message) override {
    std::fprintf(stderr, "tsumugi: error: rank %d of %d: %s\ntsumugi: aborting all ranks\n", rank_, size_, message.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    std::_Exit(1);
  }

 private:
  static constexpr std::size_t kChunk = std::size_t{1} << 30;
  std::vector<int> int_counts(const std::vector<std::size_t>& counts) const {
    std::vector<int> c;
    for (auto x : counts) {
      if (x > static_cast<std::size_t>(INT32_MAX)) fail("MPI: a shard of {} elements exceeds MPI's int counts", x);
      c.push_back(static_cast<int>(x));
    }
    return c;
  }
  void check(int rc, const char* what) {
    if (rc != MPI_SUCCESS) {
      char msg[MPI_MAX_ERROR_STRING];
      int len = 0;
      MPI_Error_string(rc, msg, &len);
      abort(fmt::format("{} failed: {}", what, std::string(msg, len)));
    }
  }
  int rank_ = 0, size_ = 1;
  bool owns_ = false;
  std::vector<float> scratch_;
};
#endif

}  // namespace

std::unique_ptr<Collective> make_collective() {
#ifdef TSUMUGI_HAVE_MPI
  if (launched_under_mpi()) return std::make_unique<MpiCollective>();
#endif
  return std::make_unique<SingleCollective>();
}

}  // namespace tsumugi::train
