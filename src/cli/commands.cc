#include "cli/commands.h"

#include "util/error.h"
#include "util/log.h"

namespace tsumugi::cli {
namespace {
std::function<int()> g_action;
}

void set_action(std::function<int()> action) { g_action = std::move(action); }

int run_selected() {
  if (!g_action) return 0;
  try {
    return g_action();
  } catch (const std::exception& e) {
    log::error("{}", e.what());
    return 1;
  }
}

}  // namespace tsumugi::cli
