// A window loss through the Trainer (gradacc/window_loss.h): a contrastive encoder trained with
// windows of 64 split into 8 micro-batches equals the same run with one micro-batch of 64; what
// gradient caching does not support yet is refused in one line; bf16 autocast and fp16 loss
// scaling (skip on overflow) work through it.
#include <iostream>
#include <memory>
#include <vector>

#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/stack.h>
#include <gtest/gtest.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/sgd.h>
#include <torch/utils.h>

#include "gradacc/errors.h"
#include "gradacc/trainer.h"

namespace gradacc {
namespace {

std::shared_ptr<TensorDataset> two_views() {
  torch::manual_seed(3);
  const at::Tensor x = at::randn({128, 10});
  const at::Tensor views = at::stack({x + 0.3 * at::randn({128, 10}), x + 0.3 * at::randn({128, 10})}, 1);
  return std::make_shared<TensorDataset>(views, at::arange(128), 128);
}

struct TrainedRun {
  at::Tensor weights;
  std::vector<double> losses;
};

TrainedRun train(int64_t micro_batch, double dropout, Precision precision = Precision::kFp32) {
  torch::manual_seed(11);
  torch::nn::Sequential net(torch::nn::Linear(10, 16), torch::nn::ReLU(), torch::nn::Dropout(dropout),
                            torch::nn::Linear(16, 8));
  WindowLoss loss{[m = net.ptr()](const Batch& b) -> std::vector<at::Tensor> {
                    return {m->forward(b.inputs.select(1, 0)), m->forward(b.inputs.select(1, 1))};
                  },
                  [](const std::vector<at::Tensor>& r, const at::Tensor&) {
                    EXPECT_EQ(r[0].scalar_type(), at::kFloat) << "representations reach the loss in fp32";
                    return info_nce_sum(r[0], r[1], 0.2);
                  }};
  Trainer trainer(
      Model::of(net),
      [](const std::vector<at::Tensor>& p) {
        return std::make_shared<torch::optim::SGD>(p, torch::optim::SGDOptions(0.05).momentum(0.9));
      },
      two_views(),
      TrainOptions()
          .batch(BatchOptions().global_batch(64).micro_batch(micro_batch))
          .data(DataOptions().steps(4).shuffle(true).seed(2))
          .precision(PrecisionOptions().compute(precision)),
      loss);
  TrainedRun run;
  for (const StepReport& r : trainer.fit().history) {
    run.losses.push_back(r.loss);
    EXPECT_GT(r.window_cache_bytes, 0);
  }
  std::vector<at::Tensor> w;
  for (const at::Tensor& p : net->parameters()) w.push_back(p.detach().reshape({-1}));
  run.weights = at::cat(w);
  return run;
}

TEST(WindowLossTrainer, EightMicroBatchesOfEightTrainAsOneOf64) {
  const TrainedRun whole = train(64, 0.0), split = train(8, 0.0);
  EXPECT_LT((whole.weights - split.weights).abs().max().item<double>(), 1e-6);
  ASSERT_EQ(whole.losses.size(), 4u);
  for (size_t s = 0; s < 4; ++s) EXPECT_NEAR(split.losses[s], whole.losses[s], 1e-6);
  EXPECT_LT(split.losses.back(), split.losses.front()) << "it learns";
}

// Mixed precision through the Trainer: the loss sees fp32 representations, and 8 micro-batches of 8
// train as one of 64 to within bf16's own rounding (each micro-batch's weight gradient is a bf16
// matmul over its rows, so the split cannot match the whole bit for bit), well inside the distance
// between the bf16 and the fp32 run.
TEST(WindowLossTrainer, Bf16AutocastKeepsRepresentationsInFp32AndAccumulatesWithinItsRounding) {
  const TrainedRun fp32 = train(8, 0.0);
  const TrainedRun whole = train(64, 0.0, Precision::kBf16), split = train(8, 0.0, Precision::kBf16);
  const double split_vs_whole = (whole.weights - split.weights).abs().max().item<double>();
  const double bf16_vs_fp32 = (fp32.weights - split.weights).abs().max().item<double>();
  std::cout << "    bf16: 8 × 8 vs 1 × 64 " << split_vs_whole << ", bf16 vs fp32 " << bf16_vs_fp32 << "\n";
  EXPECT_GT(bf16_vs_fp32, 1e-4) << "autocast was not on";
  EXPECT_LT(split_vs_whole, 0.5 * bf16_vs_fp32);
  for (size_t s = 0; s < 4; ++s) EXPECT_NEAR(split.losses[s], whole.losses[s], 1e-3 * std::abs(whole.losses[s]));
}

// fp16 with loss scaling: a window whose cached gradients overflow in the encoder's fp16 backward
// is skipped whole (no update, the scale backs off), and training goes on.
TEST(WindowLossTrainer, Fp16SkipsAWindowThatOverflowsAndBacksOff) {
  torch::manual_seed(11);
  torch::nn::Sequential net(torch::nn::Linear(10, 16), torch::nn::ReLU(), torch::nn::Linear(16, 8));
  auto windows = std::make_shared<int>(0);
  WindowLoss loss{[m = net.ptr()](const Batch& b) -> std::vector<at::Tensor> {
                    return {m->forward(b.inputs.select(1, 0)), m->forward(b.inputs.select(1, 1))};
                  },
                  [windows](const std::vector<at::Tensor>& r, const at::Tensor&) {
                    // The second window's gradients are far beyond fp16's range once scaled.
                    return info_nce_sum(r[0], r[1], 0.2) * (++*windows == 2 ? 1e30 : 1.0);
                  }};
  Trainer trainer(
      Model::of(net),
      [](const std::vector<at::Tensor>& p) {
        return std::make_shared<torch::optim::SGD>(p, torch::optim::SGDOptions(0.05));
      },
      two_views(),
      TrainOptions()
          .batch(BatchOptions().global_batch(64).micro_batch(8))
          .data(DataOptions().steps(4))
          .precision(PrecisionOptions().compute(Precision::kFp16)),
      loss);
  std::vector<at::Tensor> after;
  trainer.on_step([&](const StepReport&, const StepContext&) {
    std::vector<at::Tensor> w;
    for (const at::Tensor& p : net->parameters()) w.push_back(p.detach().reshape({-1}));
    after.push_back(at::cat(w).clone());
    return true;
  });
  const std::vector<StepReport> h = trainer.fit().history;
  ASSERT_EQ(h.size(), 4u);
  EXPECT_FALSE(h[0].skipped);
  EXPECT_TRUE(h[1].skipped);
  EXPECT_TRUE(at::equal(after[0], after[1])) << "the overflowing window changed the weights";
  EXPECT_LT(h[2].loss_scale, h[1].loss_scale);
  EXPECT_FALSE(h[2].skipped);
  EXPECT_FALSE(at::equal(after[1], after[2]));
}

TEST(WindowLossTrainer, WhatCachingDoesNotSupportYetIsRefused) {
  torch::nn::Sequential net(torch::nn::Linear(10, 8));
  const WindowLoss loss{[m = net.ptr()](const Batch& b) -> std::vector<at::Tensor> { return {m->forward(b.inputs)}; },
                        [](const std::vector<at::Tensor>& r, const at::Tensor&) { return r[0].sum(); }};
  const auto sgd = [](const std::vector<at::Tensor>& p) {
    return std::make_shared<torch::optim::SGD>(p, torch::optim::SGDOptions(0.1));
  };
  EXPECT_THROW(Trainer(Model::of(net), sgd, two_views(),
                       TrainOptions().batch(BatchOptions().global_batch(64).micro_batch_tokens(64)), loss),
               ConfigError);
  EXPECT_THROW(
      Trainer(Model::of(net), sgd, two_views(), TrainOptions().batch(BatchOptions().global_batch(64)), WindowLoss{}),
      ConfigError);
}

// An encoder that breaks its contract (one row per sample) is refused in one line, by the training
// run, by the memory planner's probe and by the naive per-micro-batch form alike.
TEST(WindowLossTrainer, AnEncoderWithoutOneRowPerSampleIsRefusedInOneLine) {
  torch::nn::Sequential net(torch::nn::Linear(20, 8));
  const WindowLoss pairs{[m = net.ptr()](const Batch& b) -> std::vector<at::Tensor> {
                           // [B - 1, 8]: the last sample's row left out
                           return {m->forward(b.inputs.reshape({b.samples, 20})).narrow(0, 0, b.samples - 1)};
                         },
                         [](const std::vector<at::Tensor>& r, const at::Tensor&) { return r[0].sum(); }};
  const auto sgd = [](const std::vector<at::Tensor>& p) {
    return std::make_shared<torch::optim::SGD>(p, torch::optim::SGDOptions(0.1));
  };
  const auto refusal = [&](TrainOptions options) {
    try {
      Trainer(Model::of(net), sgd, two_views(), std::move(options), pairs).fit();
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("(trained)");
  };
  const std::string expected =
      "the window loss's encoder returned representations of shape [7, 8] for a micro-batch of 8 samples: each "
      "needs one row per sample";
  EXPECT_EQ(refusal(TrainOptions().batch(BatchOptions().global_batch(64).micro_batch(8)).data(DataOptions().steps(1))),
            expected);
  const std::string planned = refusal(TrainOptions()
                                          .batch(BatchOptions().global_batch(64))
                                          .data(DataOptions().steps(1))
                                          .memory(MemoryOptions().budget(int64_t{1} << 30)));
  EXPECT_NE(planned.find("each needs one row per sample"), std::string::npos) << planned;
  const Batch batch = two_views()->gather({0, 1, 2, 3, 4, 5, 6, 7});
  EXPECT_THROW(per_micro_batch(pairs).forward(batch), ConfigError);
}

}  // namespace
}  // namespace gradacc
