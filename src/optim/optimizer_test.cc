// Optimizers: construction checks, what a checkpoint saves of each (named tensors for gradacc's
// and LibTorch's SGD/Adam/AdamW, LibTorch's own archive for any other), exact restore, and the
// identity strings ranks and checkpoints compare.
#include "gradacc/optimizer.h"

#include <ATen/ops/equal.h>
#include <ATen/ops/full.h>
#include <ATen/ops/randn.h>
#include <gtest/gtest.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/rmsprop.h>
#include <torch/utils.h>

namespace gradacc {
namespace {

// Two steps of `make` on a small linear layer with fixed gradients; returns the layer.
torch::nn::Linear stepped(const OptimizerFactory& make, std::shared_ptr<torch::optim::Optimizer>& out) {
  torch::manual_seed(1);
  torch::nn::Linear lin(4, 3);
  out = make(lin->parameters());
  for (int i = 0; i < 2; ++i) {
    for (auto& p : lin->parameters()) p.mutable_grad() = at::randn(p.sizes());
    out->step();
  }
  return lin;
}

// Saved after 2 steps, restored into a fresh optimizer, both take a third identical step:
// the parameters must stay bit-identical.
void expect_exact_restore(const OptimizerFactory& make, const std::string& kind) {
  std::shared_ptr<torch::optim::Optimizer> a, b;
  auto la = stepped(make, a);
  const auto state = optimizer_state(*a);
  ASSERT_FALSE(state.empty()) << kind;
  torch::manual_seed(1);
  torch::nn::Linear lb(4, 3);
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < lb->parameters().size(); ++i) lb->parameters()[i].copy_(la->parameters()[i]);
  }
  b = make(lb->parameters());
  load_optimizer_state(*b, state);
  torch::manual_seed(9);
  for (auto& p : la->parameters()) p.mutable_grad() = at::randn(p.sizes());
  torch::manual_seed(9);
  for (auto& p : lb->parameters()) p.mutable_grad() = at::randn(p.sizes());
  a->step();
  b->step();
  for (size_t i = 0; i < la->parameters().size(); ++i)
    EXPECT_TRUE(at::equal(la->parameters()[i], lb->parameters()[i])) << kind;
  EXPECT_EQ(optimizer_kind(*a), kind);
}

TEST(Optimizer, EveryKindRestoresExactly) {
  OptimizerOptions o;
  expect_exact_restore(optimizer_factory(o), "adamw (fused)");
  o.name = "adam";
  expect_exact_restore(optimizer_factory(o), "adam (fused)");
  o.fused = false;
  expect_exact_restore(optimizer_factory(o), "adam");
  o.name = "adamw";
  expect_exact_restore(optimizer_factory(o), "adamw");
  o.name = "sgd";
  o.momentum = 0.9;
  expect_exact_restore(optimizer_factory(o), "sgd");
  // Any other LibTorch optimizer: its own serialization, inside one uint8 tensor.
  const OptimizerFactory rms = [](const std::vector<at::Tensor>& p) {
    return std::make_unique<torch::optim::RMSprop>(p, torch::optim::RMSpropOptions(0.01).momentum(0.5));
  };
  expect_exact_restore(rms, "torch::optim::RMSprop");
  std::shared_ptr<torch::optim::Optimizer> r;
  stepped(rms, r);
  const auto state = optimizer_state(*r);
  ASSERT_EQ(state.size(), 1u);
  EXPECT_EQ(state.begin()->first, "archive");
  EXPECT_THROW(load_optimizer_state(*r, {{"archive", at::zeros({10}, at::kByte)}}), std::invalid_argument);
  EXPECT_THROW(load_optimizer_state(*r, {{"0.exp_avg", at::zeros({3, 4})}}), std::invalid_argument);
}

TEST(Optimizer, OptionsAreCheckedAndNamedInHyperparameters) {
  torch::nn::Linear lin(2, 2);
  OptimizerOptions o;
  o.lr = -1;
  EXPECT_THROW(make_optimizer(lin->parameters(), o), std::invalid_argument);
  o = OptimizerOptions();
  o.name = "sgd";
  o.nesterov = true;  // without momentum
  EXPECT_THROW(make_optimizer(lin->parameters(), o), std::invalid_argument);
  o.momentum = 0.9;
  o.weight_decay = 0.01;
  const auto sgd = make_optimizer(lin->parameters(), o);
  const std::string h = optimizer_hyperparameters(*sgd);
  EXPECT_NE(h.find("momentum=0.9"), std::string::npos) << h;
  EXPECT_NE(h.find("nesterov=true"), std::string::npos) << h;
  EXPECT_NE(h.find("weight_decay=0.01"), std::string::npos) << h;
  o = OptimizerOptions();
  o.beta2 = 0.95;
  o.fused = false;
  EXPECT_NE(optimizer_hyperparameters(*make_optimizer(lin->parameters(), o)).find("betas=(0.9,0.95)"),
            std::string::npos);
  o.name = "lion";
  EXPECT_THROW(make_optimizer(lin->parameters(), o), std::invalid_argument);
}

// SGD's weight decay and Nesterov momentum reach the update: two steps against the formula
// (d = g + λp; b = μb + d; p −= lr·(d + μb)).
TEST(Optimizer, SgdNesterovAndWeightDecayReachTheUpdate) {
  at::Tensor p = at::full({1}, 2.0, at::kDouble).requires_grad_(true);
  OptimizerOptions o;
  o.name = "sgd";
  o.lr = 0.1;
  o.momentum = 0.5;
  o.nesterov = true;
  o.weight_decay = 0.2;
  auto sgd = make_optimizer({p}, o);
  double w = 2.0, buf = 0.0;
  for (int i = 0; i < 2; ++i) {
    const double g = 1.0 + i;
    p.mutable_grad() = at::full({1}, g, at::kDouble);
    sgd->step();
    const double d = g + 0.2 * w;
    buf = i == 0 ? d : 0.5 * buf + d;
    w -= 0.1 * (d + 0.5 * buf);
    EXPECT_NEAR(p.item<double>(), w, 1e-12) << "step " << i + 1;
  }
}

}  // namespace
}  // namespace gradacc
