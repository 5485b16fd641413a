#include "optim/fused_adamw.h"

#include <ATen/ops/randn.h>
#include <gtest/gtest.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/utils.h>

namespace gradacc {
namespace {

std::vector<at::Tensor> make_params() {
  torch::manual_seed(0);
  return {at::randn({64, 32}).requires_grad_(), at::randn({32}).requires_grad_(),
          at::randn({7, 3, 3}).requires_grad_()};
}

// FusedAdamW against LibTorch's reference Adam/AdamW over several steps with changing gradients,
// including a step whose gradients arrive scaled by a factor the optimizer must apply.
// Tolerance 1e-6 absolute (measured ~1e-8: the fused kernel orders float ops differently).
void compare(bool decoupled) {
  auto a = make_params(), b = make_params();
  const auto opts = torch::optim::AdamWOptions(3e-3).weight_decay(0.05).betas({0.9, 0.95}).eps(1e-8);
  FusedAdamW fused(a, opts, decoupled);
  std::unique_ptr<torch::optim::Optimizer> ref;
  if (decoupled)
    ref = std::make_unique<torch::optim::AdamW>(b, opts);
  else
    ref = std::make_unique<torch::optim::Adam>(
        b, torch::optim::AdamOptions(3e-3).weight_decay(0.05).betas({0.9, 0.95}).eps(1e-8));
  for (int step = 0; step < 6; ++step) {
    const double factor = step == 3 ? 0.37 : 1.0;
    for (size_t i = 0; i < a.size(); ++i) {
      torch::manual_seed(100 + step * 10 + static_cast<int>(i));
      const at::Tensor g = at::randn(a[i].sizes());
      a[i].mutable_grad() = g.clone();   // fused: raw gradient, factor applied inside the step
      b[i].mutable_grad() = g * factor;  // reference: gradient scaled beforehand
    }
    if (factor != 1.0) fused.scale_next_step(factor);
    fused.step();
    ref->step();
  }
  for (size_t i = 0; i < a.size(); ++i) EXPECT_LT((a[i] - b[i]).abs().max().item<double>(), 1e-6) << i;
}

TEST(FusedAdamW, MatchesLibTorchAdamW) { compare(true); }
TEST(FusedAdamW, MatchesLibTorchAdam) { compare(false); }

}  // namespace
}  // namespace gradacc
