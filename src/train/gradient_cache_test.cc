// Gradient caching (gradacc/window_loss.h): a contrastive loss over the whole window, accumulated
// micro-batch by micro-batch, against one forward and backward over the whole window at once — with
// dropout (the RNG replayed), under bf16 autocast, and over two real Gloo ranks (threads) against
// one process.
#include "train/gradient_cache.h"

#include <cstdio>
#include <memory>
#include <vector>

#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/stack.h>
#include <gtest/gtest.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/sgd.h>
#include <torch/utils.h>

#include "gradacc/device.h"
#include "gradacc/errors.h"
#include "testing/ranks.h"

namespace gradacc {
namespace {

torch::nn::Sequential encoder(double dropout) {
  torch::manual_seed(11);
  return torch::nn::Sequential(torch::nn::Linear(10, 16), torch::nn::ReLU(), torch::nn::Dropout(dropout),
                               torch::nn::Linear(16, 8));
}

// 64 examples of two views each ([64, 2, 10]), their ids as targets.
Batch examples(int64_t from, int64_t n) {
  static const at::Tensor views = [] {  // made once (the ranks' threads share it), from a seed of its own
    torch::manual_seed(3);
    const at::Tensor x = at::randn({64, 10});
    return at::stack({x + 0.3 * at::randn({64, 10}), x + 0.3 * at::randn({64, 10})}, 1);
  }();
  Batch b;
  b.inputs = views.narrow(0, from, n);
  b.targets = at::arange(from, from + n);
  b.samples = b.items = n;
  return b;
}

WindowLoss contrastive(torch::nn::Sequential net) {
  return WindowLoss{[m = net.ptr()](const Batch& b) -> std::vector<at::Tensor> {
                      return {m->forward(b.inputs.select(1, 0)), m->forward(b.inputs.select(1, 1))};
                    },
                    [](const std::vector<at::Tensor>& r, const at::Tensor&) { return info_nce_sum(r[0], r[1]); }};
}

at::Tensor grads(torch::nn::Module& m) {
  std::vector<at::Tensor> g;
  for (const at::Tensor& p : m.parameters()) g.push_back(p.grad().reshape({-1}).clone());
  return at::cat(g);
}

double relative(const at::Tensor& a, const at::Tensor& b) { return ((a - b).norm() / b.norm()).item<double>(); }

// The accumulated window of 8 × 8 against the whole window's forward and backward, the micro-batches
// of the reference run in the same order from the same RNG state (so the same dropout masks).
// Under bf16 autocast (`precision`), both runs autocast each micro-batch's forward: the same bf16
// matmuls over the same rows, summed in the same order, so they agree as closely as in fp32 (here
// exactly). A second forward without autocast would differ by bf16's rounding, about 1e-3.
void matches_the_whole_window(double dropout, Precision precision = Precision::kFp32, double tolerance = 1e-6) {
  torch::nn::Sequential net = encoder(dropout), whole = encoder(dropout);
  torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.1));
  Accumulator acc(*net, opt, nullptr, AccumulatorOptions().nominal_count_(64));
  std::vector<Batch> micro;
  for (int m = 0; m < 8; ++m) micro.push_back(examples(8 * m, 8));
  const at::Tensor rng = generator_state(at::kCPU);
  const CachedWindow w = accumulate_window_loss({contrastive(net), acc, at::kCPU, precision}, micro, micro[0]);
  EXPECT_EQ(w.window_samples, 64);
  const at::Tensor cached = acc.window_gradient();

  set_generator_state(at::kCPU, rng);
  std::vector<at::Tensor> a, b;
  for (const Batch& mb : micro) {
    AutocastGuard autocast(at::kCPU, precision);
    a.push_back(whole->forward(mb.inputs.select(1, 0)).to(at::kFloat));
    b.push_back(whole->forward(mb.inputs.select(1, 1)).to(at::kFloat));
  }
  const at::Tensor loss = info_nce_sum(at::cat(a), at::cat(b));
  (loss / 64.0).backward();
  const at::Tensor reference = grads(*whole);
  EXPECT_LT(relative(cached, reference), tolerance) << "dropout " << dropout;
  std::printf("    %s, dropout %.1f: relative L2 of the cached window vs the whole window %.3g",
              to_string(precision).c_str(), dropout, relative(cached, reference));

  // The naive way: each micro-batch's loss over its own 8 examples only.
  for (const at::Tensor& p : whole->parameters()) p.mutable_grad().zero_();
  set_generator_state(at::kCPU, rng);
  for (const Batch& mb : micro) {
    AutocastGuard autocast(at::kCPU, precision);
    (info_nce_sum(whole->forward(mb.inputs.select(1, 0)).to(at::kFloat),
                  whole->forward(mb.inputs.select(1, 1)).to(at::kFloat)) /
     64.0)
        .backward();
  }
  EXPECT_GT(relative(grads(*whole), reference), std::max(1e-2, 10 * tolerance))
      << "the naive per-micro-batch loss is another objective";
  std::printf("; the naive per-micro-batch loss %.3g\n", relative(grads(*whole), reference));
  EXPECT_NEAR(acc.step().loss, loss.item<double>() / 64.0, precision == Precision::kFp32 ? 1e-6 : 1e-3);
}

TEST(GradientCache, AccumulatedWindowEqualsTheWholeWindowOfAContrastiveLoss) { matches_the_whole_window(0.0); }
TEST(GradientCache, Bf16AutocastAndDropoutAreReplayedInTheSecondForward) {
  matches_the_whole_window(0.3, Precision::kBf16, 1e-5);
}
TEST(GradientCache, DropoutIsReplayedInTheSecondForward) { matches_the_whole_window(0.3); }

TEST(GradientCache, BadLossesAndRepresentationsAreRefused) {
  torch::nn::Sequential net = encoder(0.0);
  torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.1));
  Accumulator acc(*net, opt, nullptr, AccumulatorOptions().nominal_count_(16));
  const std::vector<Batch> micro{examples(0, 8), examples(8, 8)};
  WindowLoss vector_loss = contrastive(net);
  vector_loss.loss = [](const std::vector<at::Tensor>& r, const at::Tensor&) { return r[0].sum(1); };
  EXPECT_THROW(accumulate_window_loss({vector_loss, acc, at::kCPU, Precision::kFp32}, micro, micro[0]), ConfigError);
  WindowLoss short_rows = contrastive(net);
  short_rows.encode = [m = net.ptr()](const Batch& b) -> std::vector<at::Tensor> {
    return {m->forward(b.inputs.select(1, 0)).narrow(0, 0, 4)};
  };
  EXPECT_THROW(accumulate_window_loss({short_rows, acc, at::kCPU, Precision::kFp32}, micro, micro[0]), ConfigError);
}

// Two ranks with half of each window (rank 1's share of the last window empty but for a stand-in),
// against one process with whole windows: the loss sees the global window on every rank.
TEST(GradientCache, TwoRanksSeeTheGlobalWindowAndMatchOneProcess) {
  const auto windows = [](int rank, int world) {
    std::vector<std::vector<Batch>> w(2);
    for (int m = 0; m < 4; ++m) {
      const int64_t from = 32 * rank / world + 8 * m;
      if (m < 4 / world) w[0].push_back(examples(from, 8));
    }
    if (rank == 0)
      w[1] = {examples(0, 8), examples(8, 4)};  // 12 examples: all on rank 0
    else if (world > 1)
      w[1] = {Batch{}, Batch{}};
    return w;
  };
  torch::nn::Sequential whole = encoder(0.0);
  torch::optim::SGD whole_opt(whole->parameters(), torch::optim::SGDOptions(0.5).momentum(0.9));
  Accumulator reference(*whole, whole_opt, nullptr, AccumulatorOptions().nominal_count_(32));
  std::vector<double> whole_losses;
  for (const auto& w : windows(0, 1)) {
    accumulate_window_loss({contrastive(whole), reference, at::kCPU, Precision::kFp32}, w, examples(0, 1));
    whole_losses.push_back(reference.step().loss);
  }
  std::vector<torch::nn::Sequential> nets{encoder(0.0), encoder(0.0)};
  std::vector<std::vector<double>> losses(2);
  testing::on_ranks(2, at::kCPU, [&](Communicator& c, int rank) {
    torch::optim::SGD opt(nets[rank]->parameters(), torch::optim::SGDOptions(0.5).momentum(0.9));
    Accumulator acc(*nets[rank], opt, nullptr, AccumulatorOptions().nominal_count_(32));
    acc.set_reducer(&c);
    for (const auto& w : windows(rank, 2)) {
      accumulate_window_loss({contrastive(nets[rank]), acc, at::kCPU, Precision::kFp32, &c}, w, examples(0, 1));
      losses[rank].push_back(acc.step().loss);
    }
  });
  for (int rank = 0; rank < 2; ++rank) {
    std::vector<at::Tensor> mine, ref;
    for (const at::Tensor& p : nets[rank]->parameters()) mine.push_back(p.detach().reshape({-1}));
    for (const at::Tensor& p : whole->parameters()) ref.push_back(p.detach().reshape({-1}));
    EXPECT_LT((at::cat(mine) - at::cat(ref)).abs().max().item<double>(), 1e-6) << "rank " << rank;
    for (size_t s = 0; s < whole_losses.size(); ++s) EXPECT_NEAR(losses[rank][s], whole_losses[s], 1e-6);
  }
}

}  // namespace
}  // namespace gradacc
