#include "serve/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

namespace tsumugi::serve {

void Summary::observe(double v) {
  recent_.push_back(v);
  if (recent_.size() > window_) recent_.pop_front();
  sum_ += v;
  ++count_;
}

std::string Summary::render(const std::string& name, const std::string& help) const {
  std::string out = fmt::format("# HELP {} {}\n# TYPE {} summary\n", name, help, name);
  std::vector<double> sorted(recent_.begin(), recent_.end());
  std::sort(sorted.begin(), sorted.end());
  for (double q : {0.5, 0.9, 0.99}) {
    const double v =
        sorted.empty() ? 0.0 : sorted[std::min(sorted.size() - 1, static_cast<std::size_t>(q * sorted.size()))];
    out += fmt::format("{}{{quantile=\"{}\"}} {}\n", name, q,
                       sorted.empty() ? std::string("NaN") : fmt::format("{:.6g}", v));
  }
  out += fmt::format("{}_sum {:.6g}\n{}_count {}\n", name, sum_, name, count_);
  return out;
}

void Metrics::count_request(const std::string& endpoint, int status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[{endpoint, status}];
}

void Metrics::add_tokens(int prompt_tokens, int completion_tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  prompt_tokens_ += prompt_tokens;
  completion_tokens_ += completion_tokens;
}

void Metrics::observe_ttft(double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  ttft_.observe(seconds);
}

void Metrics::observe_decode_rate(double tokens_per_second) {
  std::lock_guard<std::mutex> lock(mu_);
  decode_rate_.observe(tokens_per_second);
}

void Metrics::set_queue(int in_flight, int queued) {
  std::lock_guard<std::mutex> lock(mu_);
  in_flight_ = in_flight;
  queued_ = queued;
}

void Metrics::set_decode_steps(uint64_t steps, uint64_t tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  decode_steps_ = steps;
  decode_step_tokens_ = tokens;
}

std::string Metrics::render() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out =
      "# HELP tsumugi_requests_total HTTP requests by endpoint and status code.\n"
      "# TYPE tsumugi_requests_total counter\n";
  for (const auto& [key, n] : requests_)
    out += fmt::format("tsumugi_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n", key.first, key.second, n);
  out += fmt::format(
      "# HELP tsumugi_prompt_tokens_total Prompt tokens processed.\n# TYPE tsumugi_prompt_tokens_total counter\n"
      "tsumugi_prompt_tokens_total {}\n"
      "# HELP tsumugi_generated_tokens_total Tokens generated.\n# TYPE tsumugi_generated_tokens_total counter\n"
      "tsumugi_generated_tokens_total {}\n"
      "# HELP tsumugi_requests_in_flight Generations running now.\n# TYPE tsumugi_requests_in_flight gauge\n"
      "tsumugi_requests_in_flight {}\n"
      "# HELP tsumugi_requests_queued Generations waiting for a slot.\n# TYPE tsumugi_requests_queued gauge\n"
      "tsumugi_requests_queued {}\n"
      "# HELP tsumugi_decode_steps_total Single-token forward passes (concurrent streams share them).\n"
      "# TYPE tsumugi_decode_steps_total counter\ntsumugi_decode_steps_total {}\n"
      "# HELP tsumugi_decode_step_tokens_total Tokens those passes carried (per pass: the mean batch).\n"
      "# TYPE tsumugi_decode_step_tokens_total counter\ntsumugi_decode_step_tokens_total {}\n",
      prompt_tokens_, completion_tokens_, in_flight_, queued_, decode_steps_, decode_step_tokens_);
  out += ttft_.render("tsumugi_time_to_first_token_seconds", "Seconds from admission to the first generated token.");
  out += decode_rate_.render("tsumugi_decode_tokens_per_second", "Decode speed of each finished generation.");
  return out;
}

}  // namespace tsumugi::serve
