#include "optim/fused_adamw.h"

#include <ATen/ops/_foreach_add.h>
#include <ATen/ops/_fused_adam.h>
#include <ATen/ops/_fused_adamw.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <torch/csrc/autograd/grad_mode.h>

namespace gradacc {

FusedAdamW::FusedAdamW(const std::vector<at::Tensor>& params, const torch::optim::AdamWOptions& options, bool decoupled)
    : torch::optim::Optimizer({torch::optim::OptimizerParamGroup(params)},
                              std::make_unique<torch::optim::AdamWOptions>(options)),
      decoupled_(decoupled),
      params_(params) {
  TORCH_CHECK(!options.amsgrad(), "FusedAdamW does not implement amsgrad");
  for (const at::Tensor& p : params_) {
    exp_avg_.push_back(at::zeros_like(p, at::MemoryFormat::Preserve));
    exp_avg_sq_.push_back(at::zeros_like(p, at::MemoryFormat::Preserve));
    steps_.push_back(at::zeros({}, p.options().dtype(at::kFloat)));  // the kernel reads float steps
  }
}

at::Tensor FusedAdamW::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  at::Tensor loss;
  if (closure) loss = closure();
  const auto& o = static_cast<const torch::optim::AdamWOptions&>(param_groups().front().options());
  std::vector<at::Tensor> params, grads, m, v, steps;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i].grad().defined()) continue;
    params.push_back(params_[i]);
    grads.push_back(params_[i].grad());
    m.push_back(exp_avg_[i]);
    v.push_back(exp_avg_sq_[i]);
    steps.push_back(steps_[i]);
  }
  if (params.empty()) return loss;
  at::_foreach_add_(steps, 1);  // the caller advances the step counters
  std::optional<at::Tensor> grad_scale;
  if (next_scale_ != 1.0) grad_scale = at::full({}, 1.0 / next_scale_, params.front().options().dtype(at::kFloat));
  const auto [beta1, beta2] = o.betas();
  if (decoupled_) {
    at::_fused_adamw_(params, grads, m, v, /*max_exp_avg_sqs=*/{}, steps, o.lr(), beta1, beta2, o.weight_decay(),
                      o.eps(),
                      /*amsgrad=*/false, /*maximize=*/false, grad_scale, /*found_inf=*/{});
  } else {
    at::_fused_adam_(params, grads, m, v, /*max_exp_avg_sqs=*/{}, steps, o.lr(), beta1, beta2, o.weight_decay(),
                     o.eps(),
                     /*amsgrad=*/false, /*maximize=*/false, grad_scale, /*found_inf=*/{});
  }
  next_scale_ = 1.0;
  return loss;
}

}  // namespace gradacc
