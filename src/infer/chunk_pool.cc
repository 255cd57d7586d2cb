#include "infer/chunk_pool.h"

#include <chrono>
#include <map>
#include <utility>
#include <memory>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace tsumugi::infer {

namespace {
inline void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}
}  // namespace

ChunkPool::ChunkPool(int helpers) : slots_(helpers + 1) {
  for (int i = 0; i < helpers; ++i) threads_.emplace_back([this] { helper_loop(); });
}

ChunkPool::~ChunkPool() {
  stop_.store(true);
  generation_.fetch_add(1);
  generation_.notify_all();
  for (auto& t : threads_) t.join();
}

int64_t ChunkPool::claim(int s, bool front) {
  std::atomic<uint64_t>& range = slots_[s].range;
  uint64_t v = range.load(std::memory_order_relaxed);
  for (;;) {
    const uint64_t f = v & 0xffffffffu, b = v >> 32;
    if (f >= b) return -1;
    const uint64_t next = front ? (f + 1) | (b << 32) : f | ((b - 1) << 32);
    if (range.compare_exchange_weak(v, next, std::memory_order_acq_rel, std::memory_order_relaxed))
      return static_cast<int64_t>(front ? f : b - 1);
  }
}

// Works through slot `own` front to back, then takes chunks from the backs of the other slots.
void ChunkPool::work(int own) {
  // Finished chunks are reported once at the end: every atomic on a line both cores write costs a
  // cache-line transfer, and a token has thousands of chunks.
  int64_t finished = 0;
  const int S = static_cast<int>(slots_.size());
  // A throwing chunk still counts as finished, so that the job ends and run() can rethrow.
  auto call = [&](int64_t c) {
    try {
      (*fn_)(c);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mu_);
      if (!error_) error_ = std::current_exception();
    }
  };
  if (own < S)
    for (int64_t c; (c = claim(own, true)) >= 0; ++finished) call(c);
  for (int k = 1; k <= S; ++k) {
    const int s = (own + k) % S;
    for (int64_t c; (c = claim(s, false)) >= 0; ++finished) call(c);
  }
  if (finished) done_.fetch_add(finished, std::memory_order_seq_cst);
}

void ChunkPool::helper_loop() {
  uint64_t seen = 0;
  for (;;) {
    // Spin a little (tokens come back to back), then sleep until the next job.
    const auto t0 = std::chrono::steady_clock::now();
    int spins = 0;
    while (generation_.load(std::memory_order_seq_cst) == seen) {
      cpu_relax();
      if (++spins % 1024 == 0 && std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(200)) {
        generation_.wait(seen, std::memory_order_seq_cst);
      }
    }
    if (stop_.load()) return;
    // Register before touching the job, then check it is still the one announced: run() does not
    // return (and reuse the fields) while a registered helper may be inside work().
    active_.fetch_add(1, std::memory_order_seq_cst);
    const uint64_t g = generation_.load(std::memory_order_seq_cst);
    if (g % 2 == 1) work(next_slot_.fetch_add(1, std::memory_order_relaxed));  // odd generation: a job is open
    active_.fetch_sub(1, std::memory_order_seq_cst);
    seen = g;
  }
}

void ChunkPool::run(int64_t n, const std::function<void(int64_t)>& fn) {
  std::unique_lock<std::mutex> lock(busy_, std::try_to_lock);
  // Slots hold chunk indices in 32 bits; no caller comes near (a token has thousands of chunks).
  if (!lock.owns_lock() || threads_.empty() || n <= 1 || n > 0xffffffffLL) {
    for (int64_t c = 0; c < n; ++c) fn(c);
    return;
  }
  fn_ = &fn;
  done_.store(0);
  const int S = static_cast<int>(slots_.size());
  for (int i = 0; i < S; ++i) {
    const uint64_t lo = static_cast<uint64_t>(n * i / S), hi = static_cast<uint64_t>(n * (i + 1) / S);
    slots_[i].range.store(lo | (hi << 32), std::memory_order_relaxed);
  }
  next_slot_.store(1, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_seq_cst);  // now odd: open
  generation_.notify_all();
  work(0);
  while (done_.load(std::memory_order_seq_cst) < n) cpu_relax();
  generation_.fetch_add(1, std::memory_order_seq_cst);  // even: closed; late helpers see no job
  while (active_.load(std::memory_order_seq_cst) != 0) cpu_relax();
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

ChunkPool& ChunkPool::shared(int threads) {
  // One pool per size, kept for the process: a pool may be in use by another engine's decoder.
  static std::mutex mu;
  static std::map<int, std::unique_ptr<ChunkPool>> pools;
  std::lock_guard<std::mutex> lock(mu);
  auto& pool = pools[std::max(0, threads - 1)];
  if (!pool) pool = std::make_unique<ChunkPool>(std::max(0, threads - 1));
  return *pool;
}

}  // namespace tsumugi::infer
