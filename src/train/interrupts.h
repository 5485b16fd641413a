// SIGINT/SIGTERM (Ctrl-C, a scheduler's preemption) during a run that checkpoints: the handler
// only sets a flag; the loop reads it at the next window boundary (data parallel: through the
// all-reduce, so every rank stops after the same window), checkpoints and stops. A second signal
// takes the default action (the handler resets itself), so a stuck run can still be killed.
//
// Thread safety: one InterruptGuard at a time per process (signal dispositions are global).
#pragma once

#include <csignal>

namespace gradacc {

class InterruptGuard {
 public:
  // enable = false installs nothing (a run without checkpoints keeps the default: exit at once).
  explicit InterruptGuard(bool enable);
  ~InterruptGuard();
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

  // The signal received (SIGINT or SIGTERM), 0 if none; the Accumulator reads it at each boundary.
  static const volatile std::sig_atomic_t* flag();
  static int received();

 private:
  bool enabled_;
  struct sigaction old_int_ {
  }, old_term_{};
};

}  // namespace gradacc
