#pragma once
// A progress line on stderr (rate and ETA) for long jobs. Redrawn at most a few times a
// second; silent when stderr is not a terminal unless forced, so logs stay clean.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace tsumugi {

class Progress {
 public:
  // total_bytes == 0 means unknown: no percentage or ETA is shown.
  Progress(std::string label, uint64_t total_bytes, bool enabled);
  ~Progress();
  void add(uint64_t bytes, uint64_t items);
  void finish();

  // Whether stderr is an interactive terminal.
  static bool stderr_is_tty();
  // Logging calls this so a log line does not get mixed into a half-drawn bar.
  static void clear_line_for_log();

 private:
  void maybe_draw(bool force);
  std::string label_;
  uint64_t total_;
  bool enabled_;
  std::atomic<uint64_t> bytes_{0}, items_{0};
  std::chrono::steady_clock::time_point start_, last_draw_;
  std::mutex mu_;
  bool finished_ = false;
};

std::string human_bytes(double bytes);
std::string human_duration(double seconds);

}  // namespace tsumugi
