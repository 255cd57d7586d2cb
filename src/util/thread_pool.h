#pragma once
// A fixed pool of worker threads running submitted tasks; futures carry results and
// exceptions back to the caller, which keeps ordering decisions on its side.
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

namespace tsumugi {

class ThreadPool {
 public:
  // threads == 0 means one per hardware thread.
  explicit ThreadPool(unsigned threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  unsigned size() const { return unsigned(workers_.size()); }

  template <typename F>
  auto submit(F&& f) -> std::future<std::invoke_result_t<F>> {
    using R = std::invoke_result_t<F>;
    auto task = std::make_shared<std::packaged_task<R()>>(std::forward<F>(f));
    auto fut = task->get_future();
    {
      std::lock_guard lock(mu_);
      queue_.emplace_back([task] { (*task)(); });
    }
    cv_.notify_one();
    return fut;
  }

  static unsigned default_threads();

 private:
  void run();
  std::vector<std::thread> workers_;
  std::deque<std::function<void()>> queue_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
};

}  // namespace tsumugi

namespace tsumugi {

// Runs tasks on a pool and hands their results to `consume` on the submitting thread in
// submission order, with at most `max_inflight` outstanding: output order (and so every
// file written) does not depend on the thread count, and memory stays bounded.
template <typename R>
class OrderedResults {
 public:
  OrderedResults(ThreadPool& pool, std::function<void(R&&)> consume, size_t max_inflight = 0)
      : pool_(pool), consume_(std::move(consume)), max_(max_inflight ? max_inflight : size_t(pool.size()) * 3) {}
  // Tasks usually reference the caller's state: never leave one running past this object.
  ~OrderedResults() {
    for (auto& f : inflight_)
      if (f.valid()) f.wait();
  }
  template <typename F>
  void submit(F&& task) {
    while (inflight_.size() >= max_) pop_one();
    inflight_.push_back(pool_.submit(std::forward<F>(task)));
  }
  void finish() {
    while (!inflight_.empty()) pop_one();
  }

 private:
  void pop_one() {
    auto f = std::move(inflight_.front());
    inflight_.pop_front();
    consume_(f.get());
  }
  ThreadPool& pool_;
  std::function<void(R&&)> consume_;
  size_t max_;
  std::deque<std::future<R>> inflight_;
};

}  // namespace tsumugi
