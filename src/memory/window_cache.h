// What gradient caching (gradacc/window_loss.h) holds beside one micro-batch's activations, for
// the memory planner: measured on the run's own encoder, loss and data.
//
// Between its passes a window keeps, on each rank:
//   - its share of the window's batches (inputs and targets, on the device) and the
//     representations pass 1 produced for them (fp32): per_local_example bytes each;
//   - the whole window's representations, gathered from every rank, and their gradients (fp32):
//     per_window_example bytes each.
// Pass 2 also runs the loss and its backward over the whole window: a transient above that, which
// grows as the loss does (InfoNCE's N × N logits: quadratically). It is measured at the window's
// size N when N ≤ 256, else at 64, 128 and 256 and extrapolated by the quadratic through them.
//
// Thread safety: none; the planner's thread. The probes consume no RNG state they do not restore.
#pragma once

#include <cstdint>

#include <c10/core/Device.h>

#include "gradacc/dataset.h"
#include "gradacc/precision.h"
#include "gradacc/window_loss.h"

namespace gradacc {

struct WindowCacheCost {
  int64_t per_local_example = 0;
  int64_t per_window_example = 0;
  double loss_fixed = 0.0, loss_linear = 0.0, loss_quadratic = 0.0;  // pass 2's transient at n examples

  // Held through the window: `share` examples of this rank in a window of `window` over all ranks.
  int64_t held(int64_t window, int64_t share) const { return share * per_local_example + window * per_window_example; }
  int64_t loss_transient(int64_t window) const;
};

// Measures the cost model above for windows of up to `window` examples. Throws ConfigError (one
// line) for an encoder or loss that breaks the window loss's contract.
WindowCacheCost measure_window_cache(const WindowLoss& loss, const Dataset& data, const at::Device& device,
                                     Precision precision, int64_t window);

// A micro-batch's stand-in for pass 3 in an activation probe: the encoder with gradients, its
// representations summed (fp32), so that backward runs through the whole encoder.
at::Tensor window_loss_probe_loss(const WindowLoss& loss, const Batch& batch);

}  // namespace gradacc
