// Optimizer construction from options, and learning-rate control for any LibTorch optimizer.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/optim/optimizer.h>

namespace gradacc {

struct OptimizerOptions {
  std::string name = "adamw";  // "sgd" | "adam" | "adamw"
  double lr = 1e-3;
  double weight_decay = 0.0;
  double momentum = 0.0;       // sgd
  bool nesterov = false;       // sgd (needs momentum > 0)
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // adam, adamw
  bool fused = true;           // adam, adamw: one fused kernel (FusedAdamW) instead of LibTorch's loop
};

// Throws std::invalid_argument naming the bad option.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<at::Tensor>& params,
                                                        const OptimizerOptions& options);

// Sets the learning rate of every parameter group.
void set_lr(torch::optim::Optimizer& optimizer, double lr);

}  // namespace gradacc
