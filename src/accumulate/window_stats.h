// Internal to the Accumulator (accumulator.cc, accumulator_sync.cc) and ZeRO-2 (gradient_shard.cc):
// the window statistics that travel beside the gradients, and the norm of the boundary.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

namespace gradacc::detail {
// Loss sum, samples hi/lo, items hi/lo, stop request; then the noise scale's small batches:
// Σ over ranks of (S·s)²·|G_small,r|² (each rank's first micro-batch mean), ranks measured, Σ counts;
// then the positions computed hi/lo (padding included).
constexpr int64_t kStatSlots = 11;
// ZeRO-1, in float64 (exact counts): loss sum, samples, items, stop request, the noise scale's
// three, this shard's ‖G‖², and the positions computed.
constexpr int64_t kZeroSlots = 9;
// Counts travel in float buffers as two parts, c = hi·4096 + lo, so that their sums over ranks
// stay exact (each part well below 2^24) for windows of up to 2^36 items.
constexpr int64_t kSplit = 4096;

// ‖flat‖ accumulated in float64, in chunks (see accumulator.cc).
at::Tensor norm64(const at::Tensor& flat);

}  // namespace gradacc::detail
