// Server counters in the Prometheus text exposition format (GET /metrics).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace tsumugi::serve {

// Quantiles over the most recent observations (a sliding window), count and sum over all.
class Summary {
 public:
  explicit Summary(std::size_t window = 1024) : window_(window) {}
  void observe(double v);
  // Prometheus lines for metric `name` (quantile 0.5, 0.9, 0.99, _sum, _count).
  std::string render(const std::string& name, const std::string& help) const;

 private:
  std::size_t window_;
  std::deque<double> recent_;
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  void count_request(const std::string& endpoint, int status);
  void add_tokens(int prompt_tokens, int completion_tokens);
  void observe_ttft(double seconds);
  void observe_decode_rate(double tokens_per_second);
  void set_queue(int in_flight, int queued);
  // The engine's single-token forward passes and the tokens they carried (concurrent streams share
  // passes: tokens / steps is the mean batch).
  void set_decode_steps(uint64_t steps, uint64_t tokens);
  std::string render() const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  uint64_t prompt_tokens_ = 0, completion_tokens_ = 0;
  int in_flight_ = 0, queued_ = 0;
  uint64_t decode_steps_ = 0, decode_step_tokens_ = 0;
  Summary ttft_, decode_rate_;
};

}  // namespace tsumugi::serve
