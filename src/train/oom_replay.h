// Out-of-memory replay, around the step from outside: a window that runs out of memory
// (c10::OutOfMemoryError: the CPU budget, or the GPU) is dropped and run again from its first
// example with half the micro-batch (or half the token budget), and the run goes on with that.
// The partial gradient and loss are discarded and the RNG is put back to the window's start, so the
// replayed window computes what it would have computed at the smaller size from the start.
//
// Owns the sampler of the halved plan once there is one; until then it lends the loop's own.
// Thread safety: none; one per training loop.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>

#include <c10/core/Device.h>

#include "accumulate/accumulator.h"
#include "batch/window_sampler.h"

namespace gradacc {

class OomReplay {
 public:
  // `enabled` false: an out-of-memory error passes through (data parallel, where ranks would have
  // to agree; schedules, which fix the micro-batch).
  OomReplay(const WindowSampler& sampler, Accumulator& accumulator, at::Device device, bool enabled);

  // The sampler the next window is cut by: the loop's own, or the halved one after a replay.
  const WindowSampler& sampler() const { return halved_ ? *halved_ : sampler_; }

  // Cuts the window with `cut(sampler())` and runs it with `run`, replaying as above until it fits.
  // Returns the window that ran, and sets `replays`. Throws MemoryError when a micro-batch of 1
  // (or of the longest sequence) still does not fit.
  Window run(const std::function<Window(const WindowSampler&)>& cut, const std::function<void(const Window&)>& run,
             int64_t& replays);

 private:
  void halve(const c10::OutOfMemoryError& e);

  const WindowSampler& sampler_;
  Accumulator& accumulator_;
  at::Device device_;
  bool enabled_;
  std::optional<WindowSampler> halved_;
};

}  // namespace gradacc
