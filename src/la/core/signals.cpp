#include "la/core/signals.h"

#include <unistd.h>

#include <atomic>
#include <csignal>

namespace la {

namespace {

std::atomic<int> g_signal{0};

extern "C" void on_stop_signal(int sig) {
  int none = 0;
  if (!g_signal.compare_exchange_strong(none, sig)) _exit(128 + sig);  // the second one: at once
  static const char msg[] = "\nstopping at the end of this step (again to stop at once)\n";
  const ssize_t n = write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)n;
}

}  // namespace

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
}

bool stop_requested() {
  return g_signal.load(std::memory_order_relaxed) != 0;
}

int stop_signal() {
  return g_signal.load();
}

}  // namespace la
