// GradientReducer: what the Accumulator needs from a data-parallel group — sum a flat buffer
// across ranks, in place. Communicator (sync/communicator.h) implements it on c10d; the
// Accumulator stays free of any communication library.
#pragma once

#include <ATen/core/Tensor.h>

#include "gradacc/sync/sync_mode.h"

namespace gradacc {

class GradientReducer {
 public:
  virtual ~GradientReducer() = default;
  virtual int world_size() const = 0;
  virtual int rank() const = 0;
  // Sums `flat` (contiguous, 1-D) over all ranks in place; every rank calls it in the same order.
  // Throws (one line naming the failure) when a peer died or the timeout passed.
  virtual void sum_across_ranks(const at::Tensor& flat) = 0;
  // Cumulative collective calls and bytes passed in, for the per-step log.
  virtual int64_t calls() const = 0;
  virtual int64_t bytes() const = 0;
};

}  // namespace gradacc
