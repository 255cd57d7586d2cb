#include "util/interrupt.h"

#include <csignal>

#include "util/error.h"

namespace tsumugi {
namespace {
volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_signal(int sig) {
  if (g_signal) std::_Exit(128 + sig);  // a second Ctrl-C stops at once
  g_signal = sig;
}
}  // namespace

void install_interrupt_handler() {
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
}

bool interrupted() { return g_signal != 0; }

void throw_if_interrupted() {
  if (g_signal) throw Error(g_signal == SIGINT ? "interrupted (SIGINT)" : "terminated (SIGTERM)");
}

}  // namespace tsumugi
