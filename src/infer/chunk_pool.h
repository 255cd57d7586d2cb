// Threads for the decoding kernels. Work is split into chunks that threads claim one at a time; the
// calling thread works too and finishes whatever no helper has claimed, so a helper the OS has
// parked (a busy machine) never holds up a token: it costs at most the chunk it holds.
//
// Each thread owns an equal, contiguous slot of the chunks and claims them front to back; a thread
// done with its own slot takes chunks from the backs of the others'. The rows a thread reads thus
// stay one forward stream, which the kernels' prefetch (one row group ahead, past a chunk's end)
// and the hardware's follow. Claiming from one shared counter instead interleaved the threads'
// chunks, so every chunk started on cold memory: alternating the two in one process on the project
// machine, that was 5% slower at f32 and 13-15% at f16 and q8_0. OpenMP's fork/join waits
// for every thread of the team at each of the ~60 regions of a token instead, which on a loaded
// 2-core machine made 2 threads 10x slower than 1.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tsumugi::infer {

class ChunkPool {
 public:
  explicit ChunkPool(int helpers);
  ~ChunkPool();
  ChunkPool(const ChunkPool&) = delete;
  ChunkPool& operator=(const ChunkPool&) = delete;

  int helpers() const { return static_cast<int>(threads_.size()); }
  // Calls fn(c) for every c in [0, n) and returns when all calls have returned. When another thread
  // is using the pool, the caller runs all chunks itself (concurrent sequences each keep a core
  // busy instead of queueing). An exception from fn (on any thread) is rethrown here once the job
  // has ended; the other chunks still run.
  void run(int64_t n, const std::function<void(int64_t)>& fn);

  // The process-wide pool with `threads - 1` helpers.
  static ChunkPool& shared(int threads);

 private:
  void helper_loop();
  void work(int slot);
  // Claims chunk indices from slot s: its front (the owner walking forward) or its back (a thread
  // that has finished its own slot). Returns -1 when the slot is empty.
  int64_t claim(int s, bool front);

  // One per thread of a job: the chunks [front, back) not yet claimed, packed as front | back << 32
  // so both ends move with one compare-and-swap; a cache line each, as each is its owner's.
  struct alignas(64) Slot {
    std::atomic<uint64_t> range{0};
  };

  std::vector<std::thread> threads_;
  std::mutex busy_;
  const std::function<void(int64_t)>* fn_ = nullptr;
  std::vector<Slot> slots_;
  std::atomic<int> next_slot_{0};
  std::atomic<int64_t> done_{0};
  std::mutex error_mu_;
  std::exception_ptr error_;  // the job's first exception
  std::atomic<int> active_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace tsumugi::infer
