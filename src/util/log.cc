#include "util/log.h"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "util/error.h"
#include "util/progress.h"

namespace tsumugi {

std::string errno_message(int err) { return std::strerror(err); }

namespace log {
namespace {
std::atomic<Level> g_level{Level::info};
std::mutex g_mu;
const char* tag(Level l) {
  switch (l) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warning";
    case Level::error: return "error";
    default: return "";
  }
}
}  // namespace

void set_level(Level level) { g_level = level; }
Level level() { return g_level; }

void write(Level l, std::string_view msg) {
  std::lock_guard lock(g_mu);
  Progress::clear_line_for_log();
  std::fprintf(stderr, "tsumugi: %s: %.*s\n", tag(l), int(msg.size()), msg.data());
  std::fflush(stderr);
}

}  // namespace log
}  // namespace tsumugi
