#include "gradacc/optim/optimizer.h"

#include <cmath>
#include <stdexcept>

#include <fmt/format.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include "gradacc/optim/fused_adamw.h"

namespace gradacc {

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<at::Tensor>& params,
                                                        const OptimizerOptions& o) {
  auto check = [](bool ok, const std::string& msg) {
    if (!ok) throw std::invalid_argument(msg);
  };
  check(o.lr > 0 && std::isfinite(o.lr), fmt::format("lr must be positive, got {}", o.lr));
  check(o.weight_decay >= 0, fmt::format("weight_decay must be ≥ 0, got {}", o.weight_decay));
  if (o.name == "sgd") {
    check(o.momentum >= 0 && o.momentum < 1, fmt::format("momentum must lie in [0, 1), got {}", o.momentum));
    check(!o.nesterov || o.momentum > 0, "nesterov needs momentum > 0");
    return std::make_unique<torch::optim::SGD>(
        params, torch::optim::SGDOptions(o.lr).momentum(o.momentum).nesterov(o.nesterov).weight_decay(o.weight_decay));
  }
  check(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1,
        fmt::format("betas must lie in [0, 1), got ({}, {})", o.beta1, o.beta2));
  check(o.eps > 0, fmt::format("eps must be positive, got {}", o.eps));
  const auto adam_options = torch::optim::AdamWOptions(o.lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay);
  if (o.name == "adam" || o.name == "adamw") {
    if (o.fused) return std::make_unique<FusedAdamW>(params, adam_options, /*decoupled=*/o.name == "adamw");
    if (o.name == "adamw") return std::make_unique<torch::optim::AdamW>(params, adam_options);
    return std::make_unique<torch::optim::Adam>(
        params, torch::optim::AdamOptions(o.lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay));
  }
  throw std::invalid_argument(fmt::format("unknown optimizer '{}' (expected sgd, adam or adamw)", o.name));
}

void set_lr(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

}  // namespace gradacc
