// ZeroShard: the memory layout of ZeRO stages 1, 2 and 3 — each of R data-parallel ranks holds the
// optimizer state (and, for a bf16/fp16 model, the fp32 master weights) of 1/R of the parameters
// only; from stage 2 also only 1/R of the gradient sum (gradient_shard.h fills shard_grad() during
// the backward passes); at stage 3 also only 1/R of the parameters themselves.
//
// Layout of stages 1 and 2. The model's trainable parameters are rebound to views of one flat
// buffer padded with zeros to P = R·L elements (the padding never receives a gradient). Rank r
// owns the elements [r·L, (r+1)·L). The optimizer is built over a single 1-D tensor of L
// elements, shard_param():
//   - fp32 model: a view of the owned slice of the flat parameters, updated in place;
//   - bf16/fp16 model: an fp32 copy of that slice (the master weights of this shard alone).
// Its .grad is shard_grad(), L fp32 elements that hold the sum over ranks of the owned slice of
// the window's gradient: filled by the boundary's reduce-scatter (stage 1) or summed into bucket by
// bucket after every micro-batch (stage 2). After the update, gather_input() holds the owned slice
// in the model's dtype: the input of the all-gather that rebuilds the flat parameters on every rank.
//
// Layout of stage 3. The parameters are split into units (a model's blocks: units.h); each unit u
// of T_u elements has a flat buffer of its own, padded to P_u = R·L_u, whose storage exists only
// while the unit is gathered (allocate_unit / free_unit: the parameters keep their shapes and
// views, their memory comes and goes). Rank r owns [r·L_u, (r+1)·L_u) of every unit; its shard is
// those slices one after another, L = Σ_u L_u elements, always fp32 and never a view (the units
// come and go). The "flat" elements below number the units' padded buffers one after another.
//
// The Accumulator runs the collectives (accumulator.cc has the math); ParameterGather
// (parameter_gather.h) gathers stage 3's units; this class only owns the buffers.
//
// Why an elementwise optimizer only: SGD, Adam and AdamW update each element from its own
// gradient and state, so one flat shard gives bit-for-bit the update of the per-parameter tensors.
// Optimizers that look across a tensor (LAMB's trust ratio, LBFGS) are not sharded this way.
//
// Invariants: the model's parameters stay the same tensor objects (modules see the rebinding);
// padding is zero. Thread safety: none.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include "base/stateful.h"

namespace gradacc {

class ZeroShard : public Stateful {
 public:
  // Flat elements [begin, end) that all lie in `owner`'s shard, from `shard_offset` there.
  struct Segment {
    int64_t begin = 0, end = 0;
    int owner = 0;
    int64_t shard_offset = 0;
  };
  // `length` elements of this rank's shard from `shard_offset` hold the trainable parameters'
  // elements from `element` on (the parameters concatenated in model order, without padding).
  struct OwnedRange {
    int64_t element = 0, shard_offset = 0, length = 0;
  };

  // Takes an fp32 model whose trainable parameters share one device; `low_precision` (bf16 or
  // fp16) converts the model to it and keeps fp32 masters of this rank's shard. Stage 3 takes
  // `units`: the indices (among the trainable parameters, in model order) each unit holds, every
  // parameter in one unit; none means one unit of them all. The units start gathered (whole).
  // `last_unit_first` puts the last unit (the root) first in the flat order, so that the blocks'
  // gradients, which come in reverse block order, fill buckets in their reduction order.
  // Throws ConfigError for a bad rank, world, stage, model or units.
  ZeroShard(torch::nn::Module& model, int rank, int world_size, std::optional<at::ScalarType> low_precision,
            int stage = 1, std::vector<std::vector<int64_t>> units = {}, bool last_unit_first = false);

  int stage() const { return stage_; }  // 1: optimizer state sharded; 2: gradients too; 3: parameters too
  // Stages 1 and 2 share a layout: the memory planner's `zero auto` switches before training (an
  // Accumulator made for the other stage must be made again). Throws ConfigError for 0 or 3, or
  // from stage 3.
  void set_stage(int stage);
  int rank() const { return rank_; }
  int world_size() const { return world_; }
  int64_t total() const { return total_; }            // trainable elements, without padding
  int64_t padded() const { return padded_; }          // flat elements: R·L (stage 3: Σ_u R·L_u)
  int64_t offset() const { return length_ * rank_; }  // stages 1, 2: this rank's first element
  int64_t length() const { return length_; }          // L
  bool low_precision() const { return dtype_ != at::kFloat; }

  // The shard the optimizer updates: fp32, L elements; its .grad is shard_grad().
  const at::Tensor& shard_param() const { return shard_param_; }
  // A bf16/fp16 model's checkpoint state: this rank's slice of the fp32 masters, as "master_weights"
  // (an fp32 model's shard is its weights, which the checkpoint holds already).
  std::map<std::string, at::Tensor> state_tensors() const override {
    if (!low_precision()) return {};
    return {{"master_weights", shard_param_}};
  }
  const at::Tensor& shard_grad() const { return shard_grad_; }
  // Stages 1, 2: the model's parameters, flat and padded (model dtype, P elements).
  const at::Tensor& flat_params() const { return flat_params_; }
  // Casts the updated shard into the all-gather's input (a no-op copy-free view for fp32 models
  // would alias the output; a separate buffer keeps the collective's input and output apart).
  const at::Tensor& gather_input();

  // Where the trainable parameter `param` (model order) begins among the flat elements.
  int64_t flat_offset(size_t param) const { return flat_offset_[param]; }
  // The flat elements that hold parameters, cut where the owner changes, in flat order.
  const std::vector<Segment>& segments() const { return segments_; }
  // This rank's shard, as ranges of the parameters' elements (what a checkpoint needs).
  std::vector<OwnedRange> owned_ranges() const;

  // Parameter bytes this rank keeps between micro-batches (fp32 masters of a bf16/fp16 model are
  // the optimizer's): stages 1, 2 the flat parameters; stage 3 its shard in the model's dtype.
  int64_t resident_parameter_bytes() const;

  // ── Stage 3 ──
  int64_t units() const { return static_cast<int64_t>(units_.size()); }
  const std::vector<int64_t>& unit_params(int64_t u) const { return units_[u].params; }
  int64_t unit_of(size_t param) const { return unit_of_[param]; }
  int64_t unit_length(int64_t u) const { return units_[u].length; }  // L_u
  int64_t unit_bytes(int64_t u) const;                               // P_u in the model's dtype
  bool unit_allocated(int64_t u) const { return units_[u].allocated; }
  // Gives the unit's parameters memory again (its contents undefined until gathered) / takes it.
  void allocate_unit(int64_t u);
  void free_unit(int64_t u);
  // The unit's gathered buffer (P_u elements, model dtype) to write into: a tensor of its own
  // version counter, so that filling it does not look like an in-place change of the parameters
  // that autograd saved. Only while allocated.
  const at::Tensor& unit_output(int64_t u) const { return units_[u].output; }
  // This rank's L_u elements of the unit in the model's dtype: the all-gather's input.
  at::Tensor unit_input(int64_t u) const;
  // After the optimizer updated shard_param(): the gather input follows (bf16/fp16 models).
  void refresh_gather_input();
  // After the whole units were loaded (a checkpoint): this rank's shard takes their values.
  // fp32 models only (bf16/fp16 models load their fp32 masters into shard_param() instead).
  void take_shard_from_units();

 private:
  struct Unit {
    std::vector<int64_t> params;
    int64_t total = 0, length = 0;  // T_u, L_u
    int64_t flat_begin = 0, shard_begin = 0;
    at::Tensor buffer, output;  // the parameters' storage (P_u) and its writing alias
    bool allocated = true;
  };
  int rank_, world_, stage_;
  at::ScalarType dtype_ = at::kFloat;
  int64_t total_ = 0, length_ = 0, padded_ = 0;
  std::vector<int64_t> flat_offset_, element_of_, numel_, unit_of_;
  std::vector<Segment> segments_;
  std::vector<Unit> units_;
  at::Tensor flat_params_, shard_param_, shard_grad_, send_;
};

}  // namespace gradacc
