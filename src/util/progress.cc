#include "util/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace tsumugi {
namespace {
std::atomic<bool> g_line_drawn{false};
}

Progress::Progress(std::string label, uint64_t total_bytes, bool enabled)
    : label_(std::move(label)), total_(total_bytes), enabled_(enabled),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

Progress::~Progress() { finish(); }

bool Progress::stderr_is_tty() { return isatty(STDERR_FILENO) == 1; }

void Progress::clear_line_for_log() {
  if (g_line_drawn.exchange(false)) std::fputs("\r\033[K", stderr);
}


void Progress::add(uint64_t bytes, uint64_t items) {
  bytes_ += bytes;
  items_ += items;
  maybe_draw(false);
}


void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (!enabled_) return;
  maybe_draw(true);
  std::lock_guard lock(mu_);
  if (g_line_drawn.exchange(false)) std::fputc('\n', stderr);
}

void Progress::maybe_draw(bool force) {
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  std::unique_lock lock(mu_, std::try_to_lock);
  if (!lock.owns_lock()) return;
  if (!force && now - last_draw_ < std::chrono::milliseconds(250)) return;
  last_draw_ = now;
  double secs = std::chrono::duration<double>(now - start_).count();
  double b = double(bytes_.load());
  double rate = secs > 0 ? b / secs : 0;
  std::string line = fmt::format("{}: {} docs, {} at {}/s", label_, items_.load(), human_bytes(b), human_bytes(rate));
  if (total_ > 0) {
    double frac = std::min(1.0, b / double(total_));
    double eta = rate > 0 ? (double(total_) - b) / rate : 0;
    line += fmt::format(" [{:5.1f}%] ETA {}", frac * 100, human_duration(std::max(0.0, eta)));
  }
  line += fmt::format(" elapsed {}", human_duration(secs));
  std::fprintf(stderr, "\r\033[K%s", line.c_str());
  std::fflush(stderr);
  g_line_drawn = true;
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000 && u < 4) {
    b /= 1000;
    ++u;
  }
  return fmt::format("{:.1f} {}", b, units[u]);
}

std::string human_duration(double s) {
  long t = long(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m{:02}s", t / 3600, (t / 60) % 60, t % 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{:.1f}s", s);
}

}  // namespace tsumugi
