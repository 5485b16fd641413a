// Optimizer construction from options, and learning-rate control for any LibTorch optimizer.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/optim/optimizer.h>

namespace gradacc {

struct OptimizerOptions {
  std::string name = "adamw";  // "sgd" | "adam" | "adamw"
  double lr = 1e-3;
  double weight_decay = 0.0;
  double momentum = 0.0;                          // sgd
  bool nesterov = false;                          // sgd (needs momentum > 0)
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // adam, adamw
  bool fused = true;  // adam, adamw: one fused kernel (FusedAdamW) instead of LibTorch's loop
};

// Throws ConfigError naming the bad option.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<at::Tensor>& params,
                                                        const OptimizerOptions& options);

// Builds an optimizer over the tensors it is to update: the model's parameters, or their fp32
// masters when the parameters are held in bf16/fp16. Any LibTorch optimizer, e.g.
//   [](const std::vector<at::Tensor>& p) { return std::make_unique<torch::optim::SGD>(p,
//   torch::optim::SGDOptions(0.1)); }
// A factory may return a std::unique_ptr (the usual case: the Trainer then owns the optimizer) or a
// std::shared_ptr (one the caller keeps, as train_with_accumulation does with the user's own).
using OptimizerFactory = std::function<std::shared_ptr<torch::optim::Optimizer>(const std::vector<at::Tensor>& params)>;
// gradacc's own: make_optimizer with these options (fused Adam/AdamW by default).
OptimizerFactory optimizer_factory(const OptimizerOptions& options);

// The per-parameter state of an optimizer, as named tensors for a checkpoint: "<i>.<field>" with i
// the parameter's position ("0.exp_avg", "0.exp_avg_sq", "0.step" for Adam and AdamW, fused or
// not; "0.momentum_buffer" for SGD with momentum). The tensors are the live state, not copies. A
// parameter that has no state yet (before the first step) has no entries. Any other LibTorch
// optimizer (RMSprop, Adagrad, LBFGS, a user's own) is saved whole through LibTorch's own
// serialization, as one uint8 tensor "archive" — exact, though not readable field by field.
std::map<std::string, at::Tensor> optimizer_state(torch::optim::Optimizer& optimizer);

// Copies state saved by optimizer_state() into an optimizer of the same kind over parameters of the
// same shapes (creating LibTorch's lazily made state where needed). Throws ConfigError
// naming the first missing, extra or mis-shaped entry; nothing is changed then.
void load_optimizer_state(torch::optim::Optimizer& optimizer, const std::map<std::string, at::Tensor>& state);

// "sgd", "adam", "adamw", "adam (fused)", "adamw (fused)", or the C++ class name of another
// optimizer: the kind a checkpoint must match to resume.
std::string optimizer_kind(const torch::optim::Optimizer& optimizer);
// Every hyperparameter of each parameter group, "lr=0.001 betas=(0.9,0.999) ...": what the ranks of
// a data-parallel run compare (all must train with the same).
std::string optimizer_hyperparameters(const torch::optim::Optimizer& optimizer);

// Whether the optimizer updates each element from its own gradient and state alone (SGD, Adam,
// AdamW, fused or not): then it may run over any slice of the flattened parameters (ZeRO-1).
bool elementwise_optimizer(const torch::optim::Optimizer& optimizer);

// Sets the learning rate of every parameter group.
void set_lr(torch::optim::Optimizer& optimizer, double lr);

}  // namespace gradacc
