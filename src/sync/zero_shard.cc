#include "sync/zero_shard.h"

#include <stdexcept>

#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/grad_mode.h>
#include "gradacc/errors.h"

namespace gradacc {

ZeroShard::ZeroShard(torch::nn::Module& model, int rank, int world_size, std::optional<at::ScalarType> low_precision,
                     int stage)
    : rank_(rank), world_(world_size), stage_(stage) {
  if (world_ < 1 || rank_ < 0 || rank_ >= world_)
    throw ConfigError(fmt::format("ZeRO: rank {} of a world of {}", rank_, world_));
  if (stage_ != 1 && stage_ != 2)
    throw ConfigError(fmt::format("ZeRO stage {}: this layout serves stages 1 and 2", stage_));
  if (low_precision && *low_precision != at::kBFloat16 && *low_precision != at::kHalf)
    throw ConfigError(
        fmt::format("ZeRO keeps fp32 masters for bf16/fp16 parameters, not {}", c10::toString(*low_precision)));
  std::vector<at::Tensor> params;
  for (const at::Tensor& p : model.parameters()) {
    if (!p.requires_grad()) continue;
    if (p.scalar_type() != at::kFloat || (!params.empty() && p.device() != params[0].device()))
      throw ConfigError("ZeRO needs an fp32 model whose trainable parameters share one device");
    params.push_back(p);
    total_ += p.numel();
  }
  if (params.empty()) throw ConfigError("the model has no trainable parameters");
  length_ = (total_ + world_ - 1) / world_;

  torch::NoGradGuard no_grad;
  const at::TensorOptions fp32 = params[0].options().requires_grad(false);
  // The fp32 values first: the masters of a low-precision model are the exact originals.
  at::Tensor flat32 = at::zeros({padded()}, fp32);
  int64_t at = 0;
  for (const at::Tensor& p : params) {
    flat32.narrow(0, at, p.numel()).copy_(p.reshape({-1}));
    at += p.numel();
  }
  if (low_precision) {
    model.to(*low_precision);
    flat_params_ = flat32.to(*low_precision);
    shard_param_ = flat32.narrow(0, offset(), length_).clone();  // this shard's masters alone
  } else {
    flat_params_ = flat32;
    shard_param_ = flat_params_.narrow(0, offset(), length_);  // updated in place
  }
  at = 0;
  for (at::Tensor& p : params) {
    p.set_data(flat_params_.narrow(0, at, p.numel()).view(p.sizes()));  // the same parameter object
    at += p.numel();
  }
  shard_grad_ = at::zeros({length_}, fp32);
  shard_param_.mutable_grad() = shard_grad_;
  send_ = at::empty({length_}, flat_params_.options());
}

void ZeroShard::set_stage(int stage) {
  if (stage != 1 && stage != 2)
    throw ConfigError(fmt::format("ZeRO stage {}: this layout serves stages 1 and 2", stage));
  stage_ = stage;
}

const at::Tensor& ZeroShard::gather_input() {
  torch::NoGradGuard no_grad;
  send_.copy_(shard_param_);
  return send_;
}

}  // namespace gradacc
