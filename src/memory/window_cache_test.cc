// The memory planner with a window loss (gradient caching): the cache's cost model counts what the
// window holds, its extrapolation of the loss over a large window matches a measurement, a budget
// is kept by every step of a run that accumulates windows of 512, and a budget too small for the
// cache is refused naming a global batch that fits.
#include <memory>
#include <vector>

#include <ATen/ops/arange.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/stack.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/sgd.h>
#include <torch/utils.h>

#include "gradacc/device.h"
#include "gradacc/errors.h"
#include "gradacc/trainer.h"
#include "memory/window_cache.h"

namespace gradacc {
namespace {

constexpr int64_t kWidth = 32;  // the input's features, per view

std::shared_ptr<TensorDataset> two_views(int64_t n) {
  torch::manual_seed(3);
  const at::Tensor x = at::randn({n, kWidth});
  const at::Tensor views = at::stack({x + 0.3 * at::randn({n, kWidth}), x + 0.3 * at::randn({n, kWidth})}, 1);
  return std::make_shared<TensorDataset>(views, at::arange(n), n);
}

torch::nn::Sequential encoder() {
  torch::manual_seed(11);
  return torch::nn::Sequential(torch::nn::Linear(kWidth, 1024), torch::nn::ReLU(), torch::nn::Linear(1024, 1024),
                               torch::nn::ReLU(), torch::nn::Linear(1024, 16));
}

WindowLoss info_nce(const torch::nn::Sequential& net) {
  return {[m = net.ptr()](const Batch& b) -> std::vector<at::Tensor> {
            return {m->forward(b.inputs.select(1, 0)), m->forward(b.inputs.select(1, 1))};
          },
          [](const std::vector<at::Tensor>& r, const at::Tensor&) { return info_nce_sum(r[0], r[1], 0.1); }};
}

TEST(WindowCache, CountsTheBatchesTheRepresentationsAndTheirGradients) {
  const auto data = two_views(1024);
  const torch::nn::Sequential net = encoder();
  const WindowCacheCost c = measure_window_cache(info_nce(net), *data, at::kCPU, Precision::kFp32, 1024);
  // Two views of 16 floats per example; the window's rows and their gradients.
  EXPECT_EQ(c.per_window_example, 2 * 2 * 16 * 4);
  // This rank's inputs (2 × 32 floats), its target (int64) and its own representations.
  EXPECT_EQ(c.per_local_example, 2 * kWidth * 4 + 8 + 2 * 16 * 4);
  EXPECT_EQ(c.held(1024, 512), 512 * c.per_local_example + 1024 * c.per_window_example);

  // The loss over 1024, extrapolated from 64, 128 and 256, against a measurement at 1024.
  std::vector<at::Tensor> reps{at::randn({1024, 16}).requires_grad_(true), at::randn({1024, 16}).requires_grad_(true)};
  const int64_t before = memory_reading(at::kCPU).current_bytes;
  reset_memory_peak(at::kCPU);
  {
    const at::Tensor l = info_nce_sum(reps[0], reps[1], 0.1);
    const std::vector<at::Tensor> g = torch::autograd::grad({l}, reps);
  }
  const int64_t measured = memory_reading(at::kCPU).peak_bytes - before - 2 * 1024 * 16 * 4;
  std::cout << "    loss over 1024: predicted " << c.loss_transient(1024) << " bytes, measured " << measured << "\n";
  EXPECT_GT(measured, 1024 * 1024 * 4) << "InfoNCE holds at least its 1024 × 1024 logits";
  EXPECT_NEAR(static_cast<double>(c.loss_transient(1024)), static_cast<double>(measured), 0.15 * measured);
}

struct Fitted {
  MemoryPlan plan;
  int64_t most_peak = 0;
};

Fitted plan_and_train(int64_t budget, int64_t global_batch, int64_t steps) {
  const auto data = two_views(1024);
  const torch::nn::Sequential net = encoder();
  const auto sgd = [](const std::vector<at::Tensor>& p) {
    return std::make_shared<torch::optim::SGD>(p, torch::optim::SGDOptions(0.05));
  };
  Trainer trainer(Model::of(net), sgd, data,
                  TrainOptions()
                      .batch(BatchOptions().global_batch(global_batch))
                      .data(DataOptions().steps(std::max<int64_t>(steps, 1)))
                      .memory(MemoryOptions().budget(budget)),
                  info_nce(net));
  Fitted f{*trainer.memory_plan(), 0};
  if (steps == 0) return f;
  for (const StepReport& r : trainer.fit().history) f.most_peak = std::max(f.most_peak, r.peak_bytes);
  return f;
}

TEST(WindowCache, TheBudgetHoldsTheCacheAndEveryStepKeepsIt) {
  // A generous budget first, to learn the static part and the costs on this machine.
  const MemoryPlan loose = plan_and_train(int64_t{4} << 30, 512, 0).plan;
  ASSERT_GT(loose.window_cache_bytes, 0);
  ASSERT_GT(loose.window_loss_bytes, 512 * 512 * 4);
  // Room for the cache and about 128 examples of activations (more than the loss over the window).
  const int64_t tight =
      static_cast<int64_t>(static_cast<double>(loose.static_bytes + loose.window_cache_bytes +
                                               std::max(loose.window_loss_bytes, loose.activations.at(128))) /
                           0.98) +
      (int64_t{64} << 10);
  const Fitted f = plan_and_train(tight, 512, 2);
  std::cout << "    budget " << tight << ": micro-batch " << f.plan.micro_batch << " × " << f.plan.accumulation_steps
            << ", cache " << f.plan.window_cache_bytes << ", loss " << f.plan.window_loss_bytes << ", most peak "
            << f.most_peak << "\n";
  EXPECT_LT(f.plan.micro_batch, 512);
  EXPECT_GE(f.plan.micro_batch, 1);
  EXPECT_LE(f.most_peak, tight);
  EXPECT_LE(f.plan.predicted_peak, tight);

  // Windows of 1024: InfoNCE's 1024 × 1024 logits (16 MiB) do not fit beside what one micro-batch
  // needs plus 2 MiB; refused, naming a smaller global batch that fits.
  const auto small = static_cast<int64_t>(
      static_cast<double>(loose.static_bytes + std::max(loose.activations.at(1), loose.step_bytes) + (2 << 20)) / 0.98);
  try {
    plan_and_train(small, 1024, 1);
    FAIL() << "a budget below the cache was accepted";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("window loss's cache for a global batch of 1024"), std::string::npos) << what;
    EXPECT_NE(what.find("fits, or give a budget of"), std::string::npos) << what;
    std::cout << "    " << what << "\n";
  }
}

}  // namespace
}  // namespace gradacc
