// Threads for the decoding kernels. Work is split into chunks that threads claim one at a time;
// the calling thread works too and finishes whatever no helper has claimed, so a helper the OS has
// parked (a busy machine) never holds up a token: it costs at most the chunk it holds. OpenMP's
// fork/join waits for every thread of the team at each of the ~60 regions of a token instead,
// which on a loaded 2-core machine made 2 threads 10x slower than 1.
#pragma once

#include <atomic>
#include <cstdint>
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
  // Calls fn(c) for every c in [0, n) and returns when all calls have returned. When another
  // thread is using the pool, the caller runs all chunks itself (concurrent sequences each keep a
  // core busy instead of queueing).
  void run(int64_t n, const std::function<void(int64_t)>& fn);

  // The process-wide pool with `threads - 1` helpers.
  static ChunkPool& shared(int threads);

 private:
  void helper_loop();
  void work();

  std::vector<std::thread> threads_;
  std::mutex busy_;
  const std::function<void(int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  std::atomic<int64_t> next_{0}, done_{0};
  std::atomic<int> active_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace tsumugi::infer
