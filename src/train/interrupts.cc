#include "train/interrupts.h"

namespace gradacc {
namespace {

volatile std::sig_atomic_t g_interrupt = 0;

extern "C" void on_interrupt(int sig) {
  g_interrupt = sig;
  std::signal(sig, SIG_DFL);
}

}  // namespace

InterruptGuard::InterruptGuard(bool enable) : enabled_(enable) {
  g_interrupt = 0;
  if (!enabled_) return;
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sa.sa_flags = SA_RESTART;  // a rank blocked in a collective keeps waiting; the flag is read at the boundary
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, &old_int_);
  ::sigaction(SIGTERM, &sa, &old_term_);
}

InterruptGuard::~InterruptGuard() {
  if (!enabled_) return;
  ::sigaction(SIGINT, &old_int_, nullptr);
  ::sigaction(SIGTERM, &old_term_, nullptr);
}

const volatile std::sig_atomic_t* InterruptGuard::flag() { return &g_interrupt; }
int InterruptGuard::received() { return static_cast<int>(g_interrupt); }

}  // namespace gradacc
