// FusedAdamW: Adam / AdamW over all parameters in one fused kernel call (ATen's _fused_adamw_ /
// _fused_adam_, which have CPU and CUDA kernels), instead of LibTorch's per-parameter loop of
// separate element-wise ops. Same math as torch.optim.AdamW(fused=True).
//
// The fused kernel divides each gradient by an optional `grad_scale` on the fly; the Accumulator
// uses that to fold the window's normalization and clip factor into the update, so the boundary
// makes no separate pass over the gradients (scale_next_step).
//
// Thread safety: as any optimizer — one training loop at a time.
#pragma once

#include <vector>

#include <torch/optim/adamw.h>
#include <torch/optim/optimizer.h>

namespace gradacc {

class FusedAdamW : public torch::optim::Optimizer {
 public:
  // decoupled = true: AdamW (decay applied to weights); false: Adam (L2 added to the gradient).
  FusedAdamW(const std::vector<at::Tensor>& params, const torch::optim::AdamWOptions& options, bool decoupled);

  at::Tensor step(LossClosure closure = nullptr) override;
  // The next step() uses gradients multiplied by `factor` (without touching the gradient memory).
  void scale_next_step(double factor) { next_scale_ = factor; }
  bool decoupled() const { return decoupled_; }

  // The live state, one tensor per parameter (for checkpoints; see optimizer_state()).
  const std::vector<at::Tensor>& exp_avg() const { return exp_avg_; }
  const std::vector<at::Tensor>& exp_avg_sq() const { return exp_avg_sq_; }
  const std::vector<at::Tensor>& step_counts() const { return steps_; }  // float scalars

 private:
  bool decoupled_;
  std::vector<at::Tensor> params_, exp_avg_, exp_avg_sq_, steps_;
  double next_scale_ = 1.0;
};

}  // namespace gradacc
