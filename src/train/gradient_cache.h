// GradientCache: one window of a WindowLoss (gradacc/window_loss.h) through the Accumulator, by
// gradient caching — pass 1 encodes every micro-batch without gradients, pass 2 computes the loss
// over the window's representations (all ranks', gathered) and its gradient with respect to them,
// pass 3 encodes each micro-batch again with gradients (its RNG state and autocast replayed) and
// backpropagates the cached gradients of its own rows.
//
// Pass 3 hands the Accumulator, per micro-batch m with b_m samples, a 0-dim tensor whose gradient
// is Σ_k <r_mk, ∂L/∂r_mk> (so the window's sum over m and ranks is ∂L/∂θ, L the loss's sum of
// terms) and whose value is L · b_m / N (so the logged window loss is L / N, N the window's samples
// over all ranks). The Accumulator divides by N once at the boundary, as for any loss.
//
// Between the passes it holds the window's batches (inputs and targets, on the device), every
// representation in fp32 with its gradient, and one RNG state per micro-batch.
//
// Thread safety: none; owned by one training loop. Lifetime: the references outlive it.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <torch/nn/module.h>

#include "accumulate/accumulator.h"
#include "gradacc/dataset.h"
#include "gradacc/precision.h"
#include "gradacc/window_loss.h"
#include "sync/gradient_reducer.h"

namespace gradacc {

struct GradientCacheParts {
  const WindowLoss& loss;
  Accumulator& accumulator;
  at::Device device;
  Precision precision;
  GradientReducer* reducer = nullptr;  // data parallel: representations gathered over its ranks
};

// What a window's pass 2 found, for verification and the log.
struct CachedWindow {
  at::Tensor loss_sum;         // L, 0-dim fp32, on the device
  int64_t window_samples = 0;  // N over all ranks
  // Held by this rank between the passes: its batches (inputs, targets) and representations, and
  // the window's representations (all ranks') with their gradients.
  int64_t cached_bytes = 0;
};

// Runs the three passes over this rank's micro-batches of one window (empty ones allowed: a short
// window's share ran out; a rank without any example takes the representations' shapes from
// `stand_in`, one example of the dataset) and accumulates. Throws ConfigError (one line) for a
// loss that is not 0-dim or representations whose rows are not the micro-batch's samples.
CachedWindow accumulate_window_loss(const GradientCacheParts& p, const std::vector<Batch>& micro_batches,
                                    const Batch& stand_in);

}  // namespace gradacc
