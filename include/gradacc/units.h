// Units: a model's blocks, declared once, for the two things gradacc does block by block:
//   - activation checkpointing (checkpointed(), below): each unit's
//     activations are dropped in the forward and recomputed in the backward;
//   - ZeRO-3 (--zero 3): each unit's parameters exist whole only around its forward and its
//     backward; between, every rank keeps 1/R of them.
// LibTorch modules have no forward hooks, so the model runs each unit through run():
//
//   struct MyNet : torch::nn::Module {
//     MyNet() { for (auto& b : blocks) units.add(b); }            // in forward order
//     at::Tensor forward(at::Tensor x) {
//       for (size_t i = 0; i < blocks.size(); ++i)
//         x = units.run(i, [&, i](const at::Tensor& in) { return blocks[i]->forward(in); }, x);
//       return head->forward(x);
//     }
//     gradacc::Units units;                                        // Model::of(net) finds it
//   };
//
// Parameters outside every unit (embeddings, a head) form the root unit, gathered for a whole
// micro-batch. A model without units trains under ZeRO-3 as one unit.
//
// Contract: a unit's segment is a pure function of its input, its module's parameters and the RNG
// (as for checkpointing); units run in the order they were declared (the next one's gather starts
// early, betting on it). Thread safety: as the module's forward. Lifetime: the Units lives in the
// module; the engine attaches its observer for the duration of training only.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

namespace gradacc {

// checkpointed(): activation checkpointing for LibTorch (which has none: pytorch/pytorch#52744):
// run a segment of a model without keeping its activations, and run it again inside the backward
// pass.
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
using Segment = std::function<at::Tensor(const at::Tensor&)>;

at::Tensor checkpointed(const std::vector<at::Tensor>& params, Segment segment, const at::Tensor& input);

// What the engine does around each unit (ZeRO-3's gathers). Not for users to implement.
class UnitObserver {
 public:
  virtual ~UnitObserver() = default;
  virtual void before_forward(size_t unit) = 0;
  // `output` requires a gradient when a backward will follow (training): before_backward(unit)
  // then runs when the gradient reaches it.
  virtual void after_forward(size_t unit, bool backward_follows) = 0;
  virtual void before_backward(size_t unit) = 0;
};

class Units {
 public:
  // Declares the next unit: `module` (or several modules together) holds its parameters.
  // Returns its index. Throws ConfigError for a null module.
  size_t add(std::shared_ptr<torch::nn::Module> module);
  size_t add(std::vector<std::shared_ptr<torch::nn::Module>> modules);
  size_t size() const { return modules_.size(); }
  // The parameters of unit `index`, now (its modules' parameters()).
  std::vector<at::Tensor> parameters(size_t index) const;

  // Runs unit `index`: `segment` maps the input to the unit's output.
  at::Tensor run(size_t index, const Segment& segment, const at::Tensor& input);

  // Activation checkpointing of every unit (off by default). Returns false, changing nothing,
  // when there are no units.
  bool set_checkpointing(bool on);
  bool checkpointing() const { return checkpointing_; }

  // The engine's observer (null: none). Set and cleared by the Trainer around training.
  void set_observer(UnitObserver* observer) { observer_ = observer; }

 private:
  std::vector<std::vector<std::shared_ptr<torch::nn::Module>>> modules_;
  bool checkpointing_ = false;
  UnitObserver* observer_ = nullptr;
};

}  // namespace gradacc
