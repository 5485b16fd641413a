// ZeroShard: the memory layout of ZeRO stages 1 and 2 — each of R data-parallel ranks holds the
// optimizer state (and, for a bf16/fp16 model, the fp32 master weights) of 1/R of the parameters
// only; at stage 2 also only 1/R of the gradient sum (gradient_shard.h fills shard_grad() during
// the backward passes). Both stages share this layout, so their checkpoints are interchangeable.
//
// Layout. The model's trainable parameters are rebound to views of one flat buffer padded with
// zeros to P = R·L elements (the padding never receives a gradient). Rank r owns the elements
// [r·L, (r+1)·L). The optimizer is built over a single 1-D tensor of L elements, shard_param():
//   - fp32 model: a view of the owned slice of the flat parameters, updated in place;
//   - bf16/fp16 model: an fp32 copy of that slice (the master weights of this shard alone).
// Its .grad is shard_grad(), L fp32 elements that hold the sum over ranks of the owned slice of
// the window's gradient: filled by the boundary's reduce-scatter (stage 1) or summed into bucket by
// bucket after every micro-batch (stage 2). After the update, gather_input()
// holds the owned slice in the model's dtype: the input of the all-gather that rebuilds the flat
// parameters on every rank. The Accumulator runs these collectives (accumulator.cc has the math);
// this class only owns the buffers.
//
// Why an elementwise optimizer only: SGD, Adam and AdamW update each element from its own
// gradient and state, so one flat shard gives bit-for-bit the update of the per-parameter tensors.
// Optimizers that look across a tensor (LAMB's trust ratio, LBFGS) are not sharded this way.
//
// Invariants: the model's parameters stay the same tensor objects (modules see the rebinding);
// flat_params() is contiguous and its padding is zero. Thread safety: none.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

namespace gradacc {

class ZeroShard {
 public:
  // Takes an fp32 model whose trainable parameters share one device; `low_precision` (bf16 or
  // fp16) converts the model to it and keeps fp32 masters of this rank's shard. Throws
  // ConfigError for a bad rank, world, stage (1 or 2) or model.
  ZeroShard(torch::nn::Module& model, int rank, int world_size, std::optional<at::ScalarType> low_precision,
            int stage = 1);

  int stage() const { return stage_; }  // 1: optimizer state sharded; 2: gradients too
  // The layout serves both stages: the memory planner's `zero auto` switches before training (an
  // Accumulator made for the other stage must be made again). Throws ConfigError for 0 or 3.
  void set_stage(int stage);
  int rank() const { return rank_; }
  int world_size() const { return world_; }
  int64_t total() const { return total_; }             // trainable elements, without padding
  int64_t padded() const { return length_ * world_; }  // P = R·L
  int64_t offset() const { return length_ * rank_; }   // this rank's first element
  int64_t length() const { return length_; }           // L
  bool low_precision() const { return flat_params_.scalar_type() != at::kFloat; }

  // The shard the optimizer updates: fp32, L elements; its .grad is shard_grad().
  const at::Tensor& shard_param() const { return shard_param_; }
  const at::Tensor& shard_grad() const { return shard_grad_; }
  // The model's parameters, flat and padded (model dtype, P elements).
  const at::Tensor& flat_params() const { return flat_params_; }
  // Casts the updated shard into the all-gather's input (a no-op copy-free view for fp32 models
  // would alias the output; a separate buffer keeps the collective's input and output apart).
  const at::Tensor& gather_input();

 private:
  int rank_, world_, stage_;
  int64_t total_ = 0, length_ = 0;
  at::Tensor flat_params_, shard_param_, shard_grad_, send_;
};

}  // namespace gradacc
