// GradientReducer: what the Accumulator needs from a data-parallel group — sum a flat buffer
// across ranks, in place; for ZeRO-1 (zero_shard.h), reduce-scatter and all-gather; for ZeRO-2, reduce; for ZeRO-3,
// asynchronous all-gathers. Communicator (sync/communicator.h) implements it on c10d; the Accumulator stays free of any
// communication library.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

#include "gradacc/sync_mode.h"

namespace gradacc {

class GradientReducer {
 public:
  virtual ~GradientReducer() = default;
  virtual int world_size() const = 0;
  virtual int rank() const = 0;
  // Sums `flat` (contiguous, 1-D) over all ranks in place; every rank calls it in the same order.
  // Throws (one line naming the failure) when a peer died or the timeout passed.
  virtual void sum_across_ranks(const at::Tensor& flat) = 0;
  // Starts summing `flat` (contiguous, 1-D) across ranks in place and returns without waiting;
  // wait_pending() waits for every sum started so far. Every rank starts the same sums in the same
  // order (overlap: buckets launched during the backward pass). Throws like sum_across_ranks.
  virtual void start_sum(const at::Tensor& flat) = 0;
  virtual void wait_pending() = 0;
  // Sums `flat` (P = R·L elements, contiguous) over all ranks and writes this rank's L elements
  // [rank·L, (rank+1)·L) of the sum into `shard`; `flat` itself is left undefined (it may hold
  // the whole sum, or anything).
  virtual void reduce_scatter(const at::Tensor& flat, const at::Tensor& shard) = 0;
  // Concatenates every rank's `shard` (L elements) into `flat` (R·L), in rank order. One collective.
  virtual void all_gather(const at::Tensor& shard, const at::Tensor& flat) = 0;
  // Starts summing `flat` (contiguous, 1-D) over all ranks into rank `root`'s `flat` and returns
  // without waiting; wait_pending() waits for it. Afterwards the other ranks' `flat` is undefined.
  // ZeRO-2 (gradient_shard.h): a bucket that lies in one rank's shard goes to that rank alone.
  virtual void start_reduce(const at::Tensor& flat, int root) = 0;
  // ZeRO-3 (parameter_gather.h): starts concatenating every rank's `shard` (L elements) into
  // `flat` (R·L) and returns a ticket; wait_gather(ticket) waits for that gather alone (the
  // reduces started meanwhile go on). wait_pending() waits for gathers too. The default runs it
  // at once (a reducer without asynchronous collectives).
  virtual int64_t start_all_gather(const at::Tensor& shard, const at::Tensor& flat) {
    all_gather(shard, flat);
    return 0;
  }
  virtual void wait_gather(int64_t /*ticket*/) {}
  // Sums `flat` across ranks exactly as given (fp32/fp64 on the wire): the window's loss, counts
  // and norms, which must not be rounded. A reducer that rounds gradients on the wire
  // (CompressedReducer, rounds_on_wire()) keeps this one exact.
  virtual void sum_exact(const at::Tensor& flat) { sum_across_ranks(flat); }
  virtual bool rounds_on_wire() const { return false; }
  // Cumulative collective calls and bytes passed in, for the per-step log.
  virtual int64_t calls() const = 0;
  virtual int64_t bytes() const = 0;
};

}  // namespace gradacc
