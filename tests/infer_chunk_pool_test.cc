// The decoding kernels' thread pool: every chunk runs exactly once, whichever thread claims it,
// when a thread stalls inside a chunk, and when two callers share the pool.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "infer/chunk_pool.h"

namespace tsumugi::infer {
namespace {

// Runs n chunks and returns how often each ran.
std::vector<int> run_counts(ChunkPool& pool, int64_t n, const std::function<void(int64_t)>& extra = {}) {
  std::vector<std::atomic<int>> count(static_cast<std::size_t>(n));
  pool.run(n, [&](int64_t c) {
    ASSERT_GE(c, 0);
    ASSERT_LT(c, n);
    if (extra) extra(c);
    count[c].fetch_add(1);
  });
  std::vector<int> out;
  for (auto& c : count) out.push_back(c.load());
  return out;
}

TEST(ChunkPool, EveryChunkRunsOnceForAnyCountAndPoolSize) {
  for (int helpers : {0, 1, 3}) {
    ChunkPool pool(helpers);
    EXPECT_EQ(pool.helpers(), helpers);
    for (int64_t n : {0, 1, 2, 3, 4, 5, 17, 64, 1001}) {
      for (int rep = 0; rep < 20; ++rep) {
        const std::vector<int> counts = run_counts(pool, n);
        for (int64_t c = 0; c < n; ++c)
          ASSERT_EQ(counts[c], 1) << "helpers " << helpers << " n " << n << " chunk " << c;
      }
    }
  }
}

TEST(ChunkPool, AStalledThreadsSlotIsFinishedByTheOthers) {
  // The first chunk a helper takes sleeps, as a helper the OS has parked would; the caller takes
  // the rest of that helper's slot from its back, and no chunk runs twice.
  ChunkPool pool(1);
  const std::thread::id caller = std::this_thread::get_id();
  for (int rep = 0; rep < 5; ++rep) {
    std::atomic<bool> slept{false};
    std::atomic<int> by_caller{0};
    const std::vector<int> counts = run_counts(pool, 40, [&](int64_t) {
      if (std::this_thread::get_id() == caller) {
        by_caller.fetch_add(1);
      } else if (!slept.exchange(true)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(30));
      }
    });
    for (int c : counts) ASSERT_EQ(c, 1);
    // When the helper took part and stalled, the caller ran more than its own half.
    if (slept.load()) EXPECT_GT(by_caller.load(), 20);
  }
}

TEST(ChunkPool, AThrowingChunkIsRethrownAndThePoolKeepsWorking) {
  ChunkPool pool(1);
  for (int64_t bad : {0, 7, 39}) {  // the caller's first chunk, one in its slot, the helper's last
    std::vector<std::atomic<int>> count(40);
    EXPECT_THROW(pool.run(40,
                          [&](int64_t c) {
                            count[c].fetch_add(1);
                            if (c == bad) throw std::runtime_error("chunk failed");
                          }),
                 std::runtime_error);
    for (auto& c : count) EXPECT_EQ(c.load(), 1) << "every other chunk still runs, once";
    const std::vector<int> after = run_counts(pool, 40);
    for (int c : after) ASSERT_EQ(c, 1);
  }
}

TEST(ChunkPool, ConcurrentCallersEachGetEveryChunkOnce) {
  ChunkPool pool(1);
  std::atomic<int> bad{0};
  auto caller = [&] {
    for (int rep = 0; rep < 200; ++rep) {
      const std::vector<int> counts = run_counts(pool, 33);
      for (int c : counts)
        if (c != 1) bad.fetch_add(1);
    }
  };
  std::thread a(caller), b(caller);
  a.join();
  b.join();
  EXPECT_EQ(bad.load(), 0);
}

}  // namespace
}  // namespace tsumugi::infer
