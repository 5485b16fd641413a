// Activation checkpointing for LibTorch (which has none: pytorch/pytorch#52744): run a segment of
// a model without keeping its activations, and run it again inside the backward pass.
//
//   x = checkpointed(block->parameters(), [&](const at::Tensor& in) { return block->forward(in); }, x);
//
// Forward: the segment runs under no_grad; only its input is kept (plus the RNG state of its
// device and the autocast state). Backward: the segment runs again with gradients on, from the
// same RNG state (the CPU generator, and the CUDA one for a CUDA input; the generators' current
// state is put back afterwards) and under the same autocast settings; then the gradients of its
// output flow to its input and to `params`, as they would have without checkpointing. So
// gradients equal the plain run's (the recompute is the same computation), one segment's
// activations are alive at a time during the backward pass, and the cost is one more forward.
//
// Contract: `params` are the tensors the segment reads that need gradients (a module's
// parameters()); the segment must be a pure function of its input, `params` and the RNG. With
// gradients off (evaluation) it is the plain call. A micro-batch's recompute happens inside that
// micro-batch's backward, so it composes with accumulation, mixed precision and data parallel.
//
// Thread safety: as the autograd engine; the segment may be called again from the backward pass.
#pragma once

#include <functional>
#include <vector>

#include <ATen/core/Tensor.h>

namespace gradacc {

using Segment = std::function<at::Tensor(const at::Tensor&)>;

at::Tensor checkpointed(const std::vector<at::Tensor>& params, Segment segment, const at::Tensor& input);

}  // namespace gradacc
