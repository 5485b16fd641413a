// Accumulated gradients against full-batch references computed the ordinary way (one batch, mean
// loss, one backward). fp32 on the CPU; tolerances are stated per test and sit ~100× above the
// differences measured when these tests were written, and far below what a wrong scheme gives.
#include "accumulate/accumulator.h"

#include <ATen/ops/cat.h>
#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/randint.h>
#include <gtest/gtest.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>
#include <torch/utils.h>

#include "builtin/fashion_mnist.h"
#include "builtin/models.h"
#include "gradacc/trainer.h"
#include "sync/gradient_reducer.h"
#include "testing/test_util.h"
#include "train/train_loop.h"

namespace gradacc {
namespace {

using testing::flat_grads;
using testing::rel_diff;

std::shared_ptr<TensorDataset> fashion(int64_t n) {
  static auto data = load_fashion_mnist(kFashionMnistDir, Split::kTrain);
  return data->head(n);
}

std::shared_ptr<Network> seeded(const ModelSpec& spec, uint64_t seed = 1) {
  torch::manual_seed(seed);
  return make_model(spec, 10);
}

// The reference: mean loss of the whole batch, one backward.
at::Tensor full_batch_gradient(Network& model, const Batch& b) {
  for (auto& p : model.parameters()) p.mutable_grad() = at::Tensor();
  at::cross_entropy_loss(model.forward(b.inputs), b.targets).backward();
  return flat_grads(model);
}

// Accumulates the window `b` split into micro-batches of `micro` and returns the exact gradient.
at::Tensor accumulated_gradient(Network& model, const Batch& b, int64_t micro, int64_t nominal) {
  torch::optim::SGD sgd(model.parameters(), 0.1);
  Accumulator acc(model, sgd, nullptr, AccumulatorOptions().nominal_count_(nominal));
  for (int64_t s = 0; s < b.samples; s += micro) {
    const int64_t n = std::min(micro, b.samples - s);
    acc.accumulate(summed_cross_entropy(model.forward(b.inputs.narrow(0, s, n)), b.targets.narrow(0, s, n)), n, n);
  }
  return acc.window_gradient();
}

Batch first(const Dataset& d, int64_t n) {
  std::vector<int64_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  return d.gather(idx);
}

// Tolerance: relative L2 difference ≤ 1e-6 (measured ~1e-7: float summation order only).
TEST(Accumulator, MlpGradientEqualsFullBatch) {
  const Batch b = first(*fashion(256), 256);
  auto ref_model = seeded({ModelKind::kMlp});
  const at::Tensor ref = full_batch_gradient(*ref_model, b);
  for (int64_t micro : {1, 7, 32, 256}) {
    auto m = seeded({ModelKind::kMlp});
    EXPECT_LT(rel_diff(accumulated_gradient(*m, b, micro, 256), ref), 1e-6) << "micro-batch " << micro;
  }
}

TEST(Accumulator, CnnGroupNormGradientEqualsFullBatch) {
  const Batch b = first(*fashion(128), 128);
  auto ref_model = seeded({ModelKind::kCnn, NormKind::kGroup});
  const at::Tensor ref = full_batch_gradient(*ref_model, b);
  auto m = seeded({ModelKind::kCnn, NormKind::kGroup});
  // The CNN measures 2.1e-6 (convolution kernels sum in other orders for other batch sizes).
  EXPECT_LT(rel_diff(accumulated_gradient(*m, b, 16, 128), ref), 1e-5);
}

// BatchNorm is the exception, and it is measurably one.
TEST(Accumulator, CnnBatchNormGradientDiffersFromFullBatch) {
  const Batch b = first(*fashion(128), 128);
  auto ref_model = seeded({ModelKind::kCnn, NormKind::kBatch});
  const at::Tensor ref = full_batch_gradient(*ref_model, b);
  auto m = seeded({ModelKind::kCnn, NormKind::kBatch});
  EXPECT_GT(rel_diff(accumulated_gradient(*m, b, 16, 128), ref), 1e-2);
}

// Weights after several AdamW steps: accumulated (16 × 8) vs full batch (128), same windows.
// Tolerance 2e-5 absolute (lr 1e-3 moves weights ≤ 4e-3 in 4 steps; measured difference ~3e-6).
TEST(Accumulator, CnnGroupNormWeightsAfterStepsEqualFullBatch) {
  auto data = fashion(1024);
  std::vector<std::shared_ptr<Network>> models;
  for (int64_t micro : {128, 16}) {
    auto m = seeded({ModelKind::kCnn, NormKind::kGroup});
    torch::optim::AdamW opt(m->parameters(), torch::optim::AdamWOptions(1e-3));
    const BatchPlan plan = BatchPlan::resolve({128, micro, std::nullopt, std::nullopt});
    Accumulator acc(*m, opt, nullptr, AccumulatorOptions().nominal_count_(128));
    const WindowSampler sampler(data->size(), plan, {true, 5, false, 0});
    LoopPosition pos;
    testing::run_steps(m, acc, *data, sampler, 4, at::kCPU, pos);
    models.push_back(m);
  }
  const auto a = models[0]->parameters(), b = models[1]->parameters();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_LT((a[i] - b[i]).abs().max().item<double>(), 2e-5);
}

// ── Item (token) normalization on padded, variable-length sequences ───────────────────────────
// A per-position language model (embedding → linear) is enough: what matters is that each
// micro-batch holds a different number of real tokens.
class TokenModel : public Network {
 public:
  TokenModel()
      : emb_(register_module("emb", torch::nn::Embedding(32, 16))),
        head_(register_module("head", torch::nn::Linear(16, 32))) {}
  at::Tensor forward(const at::Tensor& x) override { return head_->forward(emb_->forward(x).tanh()); }

 private:
  torch::nn::Embedding emb_;
  torch::nn::Linear head_;
};

struct TokenWindow {
  std::vector<Batch> micro_batches;
  at::Tensor inputs, targets;  // the whole window, padded to one length
};

// 8 sequences of lengths 2..16 (micro-batches of 2 with very different token counts), padded.
TokenWindow make_token_window() {
  torch::manual_seed(11);
  const std::vector<int64_t> lengths = {16, 15, 2, 3, 12, 9, 4, 1};
  const int64_t T = 16;
  at::Tensor inputs = at::randint(32, {8, T}, at::kLong);
  at::Tensor targets = at::randint(32, {8, T}, at::kLong);
  for (int64_t i = 0; i < 8; ++i) {
    inputs[i].narrow(0, lengths[i], T - lengths[i]).fill_(0);
    targets[i].narrow(0, lengths[i], T - lengths[i]).fill_(kIgnoreIndex);
  }
  TokenWindow w{{}, inputs, targets};
  for (int64_t s = 0; s < 8; s += 2) {
    const int64_t items = lengths[s] + lengths[s + 1];
    w.micro_batches.push_back(Batch{inputs.narrow(0, s, 2), targets.narrow(0, s, 2), 2, items});
  }
  return w;
}

std::shared_ptr<TokenModel> token_model() {
  torch::manual_seed(3);
  return std::make_shared<TokenModel>();
}

TEST(Accumulator, ItemNormalizationMatchesFullBatchWhereTheNaiveMeanDoesNot) {
  const TokenWindow w = make_token_window();
  // Reference: one batch, mean over all real tokens (PyTorch's cross_entropy with ignore_index).
  auto ref_model = token_model();
  const at::Tensor logits = ref_model->forward(w.inputs);
  at::cross_entropy_loss(logits.reshape({-1, 32}), w.targets.reshape({-1}), {}, at::Reduction::Mean, kIgnoreIndex)
      .backward();
  const at::Tensor ref = flat_grads(*ref_model);

  // Ours: summed token losses per micro-batch, one division by the window's token count.
  auto ours_model = token_model();
  torch::optim::SGD sgd(ours_model->parameters(), 0.1);
  Accumulator acc(*ours_model, sgd, nullptr,
                  AccumulatorOptions().normalization_(Normalization::kPerItem).nominal_count_(8));
  for (const Batch& b : w.micro_batches)
    acc.accumulate(summed_cross_entropy(ours_model->forward(b.inputs), b.targets), b.samples, b.items);
  const double ours = rel_diff(acc.window_gradient(), ref);

  // Naive: mean loss of each micro-batch divided by the number of micro-batches.
  auto naive_model = token_model();
  for (const Batch& b : w.micro_batches) {
    const at::Tensor l = naive_model->forward(b.inputs);
    (at::cross_entropy_loss(l.reshape({-1, 32}), b.targets.reshape({-1}), {}, at::Reduction::Mean, kIgnoreIndex) / 4.0)
        .backward();
  }
  const double naive = rel_diff(flat_grads(*naive_model), ref);

  RecordProperty("ours_rel_diff", std::to_string(ours));
  RecordProperty("naive_rel_diff", std::to_string(naive));
  EXPECT_LT(ours, 1e-6);
  EXPECT_GT(naive, 0.05);  // measured ≈ 0.3: the naive scheme is visibly wrong
  // The logged loss is the same token-weighted quantity.
  const StepReport r = acc.step();
  const double ref_loss =
      at::cross_entropy_loss(logits.reshape({-1, 32}), w.targets.reshape({-1}), {}, at::Reduction::Mean, kIgnoreIndex)
          .item<double>();
  EXPECT_NEAR(r.loss, ref_loss, 1e-6 * ref_loss);
  EXPECT_EQ(r.items, 16 + 15 + 2 + 3 + 12 + 9 + 4 + 1);
}

// ── The short last window ─────────────────────────────────────────────────────────────────────
TEST(Accumulator, PartialLastWindowIsRescaledByItsRealSize) {
  auto data = fashion(40);  // global 16 → windows of 16, 16, 8
  const BatchPlan plan = BatchPlan::resolve({16, 4, std::nullopt, std::nullopt});
  const WindowSampler sampler(data->size(), plan, {false, 0, false, 0});
  const Window last = sampler.window(sampler.epoch_order(0), 0, 2);
  ASSERT_EQ(last.global_samples, 8);

  auto ref_model = seeded({ModelKind::kMlp});
  std::vector<int64_t> all;
  for (const auto& mb : last.micro_batches) all.insert(all.end(), mb.begin(), mb.end());
  const at::Tensor ref = full_batch_gradient(*ref_model, data->gather(all));

  auto m = seeded({ModelKind::kMlp});
  torch::optim::SGD sgd(m->parameters(), 0.1);
  Accumulator acc(*m, sgd, nullptr, AccumulatorOptions().nominal_count_(16));
  for (const auto& mb : last.micro_batches) {
    const Batch b = data->gather(mb);
    acc.accumulate(summed_cross_entropy(m->forward(b.inputs), b.targets), b.samples, b.items);
  }
  const at::Tensor ours = acc.window_gradient();
  EXPECT_LT(rel_diff(ours, ref), 1e-6);
  // Dividing by the nominal window (16) instead of the real one (8) would halve the gradient.
  EXPECT_NEAR(rel_diff(acc.flat_grad(), ref), 0.5, 1e-5);
}

// A world of two ranks that hold the same window: every sum across ranks doubles.
class TwinReducer final : public GradientReducer {
 public:
  int world_size() const override { return 2; }
  int rank() const override { return 0; }
  void sum_across_ranks(const at::Tensor& flat) override {
    flat.mul_(2);
    ++calls_;
  }
  void start_sum(const at::Tensor& flat) override { sum_across_ranks(flat); }
  void wait_pending() override {}
  void reduce_scatter(const at::Tensor&, const at::Tensor&) override { FAIL() << "no ZeRO here"; }
  void all_gather(const at::Tensor&, const at::Tensor&) override { FAIL() << "no ZeRO here"; }
  void start_reduce(const at::Tensor&, int) override { FAIL() << "no ZeRO here"; }
  int64_t calls() const override { return calls_; }
  int64_t bytes() const override { return 0; }

 private:
  int64_t calls_ = 0;
};

// Data parallel, the window's counts and its computed positions (padding included) are summed over
// the ranks with the gradient, so the step reports global figures (the log's padding_fraction).
TEST(Accumulator, CountsAndComputedPositionsAreSummedOverRanks) {
  auto m = seeded({ModelKind::kMlp});
  torch::optim::SGD sgd(m->parameters(), 0.1);
  Accumulator acc(*m, sgd, nullptr, AccumulatorOptions().nominal_count_(16));
  TwinReducer twins;
  acc.set_reducer(&twins);
  const Batch b = fashion(8)->gather({0, 1, 2, 3, 4, 5, 6, 7});
  acc.accumulate(summed_cross_entropy(m->forward(b.inputs), b.targets), b.samples, b.items);
  acc.count_positions(100);
  acc.count_positions(28);
  const StepReport r = acc.step();
  EXPECT_EQ(r.samples, 16);
  EXPECT_EQ(r.items, 16);
  EXPECT_EQ(r.computed_items, 256);
  EXPECT_EQ(twins.calls(), 1);
  // The next window starts from zero.
  acc.accumulate(summed_cross_entropy(m->forward(b.inputs), b.targets), b.samples, b.items);
  EXPECT_EQ(acc.step().computed_items, 0);
}

TEST(Accumulator, DropOptionSkipsThePartialWindow) {
  auto data = fashion(40);
  const BatchPlan plan = BatchPlan::resolve({16, 4, std::nullopt, std::nullopt});
  auto m = seeded({ModelKind::kMlp});
  torch::optim::SGD sgd(m->parameters(), 0.01);
  Accumulator acc(*m, sgd, nullptr, AccumulatorOptions().nominal_count_(16));
  const WindowSampler sampler(data->size(), plan, {true, 1, /*drop_partial=*/true, 0});
  LoopPosition pos;
  const auto reports = testing::run_steps(m, acc, *data, sampler, 5, at::kCPU, pos);
  for (const auto& r : reports) EXPECT_EQ(r.samples, 16);
  EXPECT_EQ(pos.epoch, 2);  // 2 windows per epoch: steps 1-2, 3-4, then 5
  EXPECT_EQ(pos.window, 1);
}

// ── Clipping acts once, on the window gradient ────────────────────────────────────────────────
TEST(Accumulator, ClipsTheAccumulatedGradientOnceNotEachMicroBatch) {
  const Batch b = first(*fashion(64), 64);
  auto ref_model = seeded({ModelKind::kMlp});
  at::cross_entropy_loss(ref_model->forward(b.inputs), b.targets).backward();
  const double full_norm = flat_grads(*ref_model).norm().item<double>();
  const double max_norm = 0.25 * full_norm;
  torch::nn::utils::clip_grad_norm_(ref_model->parameters(), max_norm);
  const at::Tensor ref_clipped = flat_grads(*ref_model);

  // SGD with lr 1 and no momentum: the weight change is exactly the gradient it was given.
  auto m = seeded({ModelKind::kMlp});
  std::vector<at::Tensor> before;
  for (const auto& p : m->parameters()) before.push_back(p.detach().clone().reshape(-1));
  torch::optim::SGD sgd(m->parameters(), 1.0);
  Accumulator acc(*m, sgd, nullptr, AccumulatorOptions().max_grad_norm_(max_norm).nominal_count_(64));
  for (int64_t s = 0; s < 64; s += 8) {
    acc.accumulate(summed_cross_entropy(m->forward(b.inputs.narrow(0, s, 8)), b.targets.narrow(0, s, 8)), 8, 8);
  }
  const StepReport r = acc.step();
  std::vector<at::Tensor> applied;
  const auto params = m->parameters();
  for (size_t i = 0; i < params.size(); ++i) applied.push_back(before[i] - params[i].detach().reshape(-1));
  const at::Tensor update = at::cat(applied);
  EXPECT_NEAR(r.grad_norm, full_norm, 1e-5 * full_norm);  // reported norm is the pre-clip window norm
  EXPECT_NEAR(r.clip_coef, max_norm / full_norm, 1e-5);
  EXPECT_LT(rel_diff(update, ref_clipped), 1e-5);

  // Clipping each micro-batch instead gives another gradient.
  auto per_micro = seeded({ModelKind::kMlp});
  std::vector<at::Tensor> sum;
  for (int64_t s = 0; s < 64; s += 8) {
    for (auto& p : per_micro->parameters()) p.mutable_grad() = at::Tensor();
    (at::cross_entropy_loss(per_micro->forward(b.inputs.narrow(0, s, 8)), b.targets.narrow(0, s, 8)) / 8.0).backward();
    torch::nn::utils::clip_grad_norm_(per_micro->parameters(), max_norm);
    sum.push_back(flat_grads(*per_micro));
  }
  at::Tensor per_micro_total = sum[0];
  for (size_t i = 1; i < sum.size(); ++i) per_micro_total = per_micro_total + sum[i];
  EXPECT_GT(rel_diff(per_micro_total, ref_clipped), 0.05);
}

// ── Schedule cadence: one schedule step per optimizer step ────────────────────────────────────
TEST(Accumulator, ScheduleAdvancesOncePerOptimizerStep) {
  auto data = fashion(192);
  const BatchPlan plan = BatchPlan::resolve({16, 4, std::nullopt, std::nullopt});  // 4 micro-batches per step
  auto m = seeded({ModelKind::kMlp});
  torch::optim::SGD sgd(m->parameters(), 1.0);
  const LrSchedule schedule({ScheduleKind::kCosine, 0.1, 2, 12, 0.0});
  Accumulator acc(*m, sgd, &schedule, AccumulatorOptions().nominal_count_(16));
  const WindowSampler sampler(data->size(), plan, {true, 0, false, 0});
  LoopPosition pos;
  const auto reports = testing::run_steps(m, acc, *data, sampler, 12, at::kCPU, pos);
  ASSERT_EQ(reports.size(), 12u);
  for (int64_t i = 0; i < 12; ++i) {
    EXPECT_EQ(reports[i].micro_batches, 4);
    EXPECT_DOUBLE_EQ(reports[i].lr, schedule.lr_at(i));
    EXPECT_EQ(reports[i].step, i + 1);
  }
  EXPECT_DOUBLE_EQ(sgd.param_groups()[0].options().get_lr(), schedule.lr_at(11));
}

TEST(Accumulator, DetectsAGradientBufferThatWasReplaced) {
  auto m = seeded({ModelKind::kMlp});
  torch::optim::SGD sgd(m->parameters(), 0.1);
  Accumulator acc(*m, sgd, nullptr, AccumulatorOptions().nominal_count_(4));
  const Batch b = first(*fashion(4), 4);
  acc.accumulate(summed_cross_entropy(m->forward(b.inputs), b.targets), 4, 4);
  // LibTorch's own zero_grad refuses to detach our views...
  EXPECT_ANY_THROW(sgd.zero_grad());
  // ...but code that assigns a fresh .grad would silently split the buffer: step() catches it.
  m->parameters()[0].mutable_grad() = at::zeros_like(m->parameters()[0]);
  EXPECT_THROW(acc.step(), std::logic_error);
}

TEST(Accumulator, RejectsAnEmptyWindowAndBadOptions) {
  auto m = seeded({ModelKind::kMlp});
  torch::optim::SGD sgd(m->parameters(), 0.1);
  Accumulator acc(*m, sgd, nullptr, AccumulatorOptions());
  EXPECT_THROW(acc.step(), std::logic_error);
  EXPECT_THROW(Accumulator(*m, sgd, nullptr, AccumulatorOptions().max_grad_norm_(-1)), std::invalid_argument);
  EXPECT_THROW(Accumulator(*m, sgd, nullptr, AccumulatorOptions().nominal_count_(0)), std::invalid_argument);
}

}  // namespace
}  // namespace gradacc
