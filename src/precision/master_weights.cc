#include "precision/master_weights.h"

#include <stdexcept>

#include <ATen/ops/empty.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/grad_mode.h>
#include "gradacc/errors.h"

namespace gradacc {

MasterWeights::MasterWeights(torch::nn::Module& model, at::ScalarType param_dtype) {
  if (param_dtype != at::kBFloat16 && param_dtype != at::kHalf) {
    throw ConfigError(fmt::format("master weights are for bf16/fp16 parameters, not {}", c10::toString(param_dtype)));
  }
  int64_t total = 0;
  for (const at::Tensor& p : model.parameters()) {
    if (!p.requires_grad()) continue;
    if (p.scalar_type() != at::kFloat || (!model_params_.empty() && p.device() != model_params_[0].device())) {
      throw ConfigError("master weights need an fp32 model whose trainable parameters share one device");
    }
    model_params_.push_back(p);
    total += p.numel();
  }
  if (model_params_.empty()) throw ConfigError("the model has no trainable parameters");

  torch::NoGradGuard no_grad;
  // Masters first, from the exact fp32 values.
  flat_masters_ = at::empty({total}, model_params_[0].options().requires_grad(false));
  int64_t offset = 0;
  for (const at::Tensor& p : model_params_) {
    at::Tensor master = flat_masters_.narrow(0, offset, p.numel()).view(p.sizes());
    master.copy_(p);
    masters_.push_back(master);
    offset += p.numel();
  }
  // Then the model in low precision, its trainable parameters rebound into one flat buffer.
  model.to(param_dtype);
  flat_model_ = at::empty({total}, flat_masters_.options().dtype(param_dtype));
  offset = 0;
  for (at::Tensor& p : model_params_) {
    at::Tensor slot = flat_model_.narrow(0, offset, p.numel()).view(p.sizes());
    slot.copy_(p);
    p.set_data(slot);  // the same parameter object, now stored in the flat buffer
    offset += p.numel();
  }
}

void MasterWeights::copy_to_model() {
  torch::NoGradGuard no_grad;
  flat_model_.copy_(flat_masters_);
}

}  // namespace gradacc
