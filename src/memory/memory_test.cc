// Memory: activation checkpointing gives the plain run's gradients with less memory; the planner
// keeps every step of a run within the budget for each of gradacc's models, stays exact with an
// uneven last micro-batch, and refuses what cannot fit (out-of-memory replay: train/oom_replay_test.cc).
#include <iostream>
#include <numeric>

#include <ATen/ops/dropout.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/randn.h>
#include <gtest/gtest.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

#include "base/parse.h"
#include "builtin/models.h"
#include "builtin/text.h"
#include "gradacc/device.h"
#include "gradacc/errors.h"
#include "gradacc/optimizer.h"
#include "gradacc/trainer.h"
#include "gradacc/units.h"
#include "memory/planner.h"
#include "testing/memory_models.h"
#include "testing/test_util.h"
#include "train/run_plan.h"

namespace gradacc {
namespace {

using testing::but;
using testing::data_for;
using testing::flat_grads;
using testing::model_for;
using testing::spec_of;

// Windows of `global_batch` examples planned in `budget` bytes, for `steps` (unset: one epoch).
TrainOptions budgeted(int64_t global_batch, int64_t budget, std::optional<int64_t> steps = std::nullopt) {
  TrainOptions o;
  o.batch().global_batch(global_batch);
  o.memory().budget(budget);
  if (steps) o.data().steps(*steps);
  return o;
}

// Gradients of one forward/backward over the whole batch, with or without checkpointing.
at::Tensor gradients(ModelKind kind, bool checkpointing, int64_t* peak = nullptr) {
  install_cpu_memory_counter();
  auto net = model_for(kind);
  EXPECT_TRUE(net->set_activation_checkpointing(checkpointing));
  const auto data = data_for(kind, 16);
  std::vector<int64_t> all(16);
  std::iota(all.begin(), all.end(), 0);
  const Batch b = data->gather(all);
  const int64_t before = memory_reading(at::kCPU).current_bytes;
  reset_memory_peak(at::kCPU);
  summed_cross_entropy(net->forward(b.inputs), b.targets).backward();
  if (peak) *peak = memory_reading(at::kCPU).peak_bytes - before;
  return flat_grads(*net);
}

TEST(ActivationCheckpointing, GptAndCnnGradientsEqualThePlainRun) {
  for (ModelKind kind : {ModelKind::kGpt, ModelKind::kCnn}) {
    const at::Tensor plain = gradients(kind, false), checkpointed = gradients(kind, true);
    const double diff = (plain - checkpointed).abs().max().item<double>();
    EXPECT_LE(diff, 1e-7) << to_string(kind);
    EXPECT_GT(plain.abs().max().item<double>(), 1e-3) << to_string(kind);  // gradients that are not nothing
  }
}

TEST(ActivationCheckpointing, LowersThePeakOfTheBackwardPass) {
  int64_t plain = 0, checkpointed = 0;
  gradients(ModelKind::kGpt, false, &plain);
  gradients(ModelKind::kGpt, true, &checkpointed);
  EXPECT_LT(static_cast<double>(checkpointed), 0.75 * static_cast<double>(plain))
      << "plain " << plain << " bytes, checkpointed " << checkpointed;
}

TEST(ActivationCheckpointing, RecomputeDrawsTheSameRandomNumbersAndKeepsAutocast) {
  // A segment with dropout under bf16 autocast: the recompute must see the same mask and dtypes.
  torch::manual_seed(11);
  torch::nn::Linear layer(16, 16);
  const at::Tensor x = at::randn({8, 16});
  const auto segment = [&](const at::Tensor& in) { return at::dropout(layer->forward(in), 0.5, /*train=*/true); };
  const auto run = [&](bool checkpoint) {
    layer->zero_grad();
    const at::Tensor input = x.clone().requires_grad_(true);
    torch::manual_seed(99);
    at::Tensor y;
    {
      AutocastGuard autocast(at::kCPU, Precision::kBf16);
      y = checkpoint ? checkpointed(layer->parameters(), segment, input) : segment(input);
    }
    y.to(at::kFloat).pow(2).sum().backward();
    return std::make_pair(layer->weight.grad().clone(), input.grad().clone());
  };
  const auto [w_plain, x_plain] = run(false);
  const auto [w_ckpt, x_ckpt] = run(true);
  EXPECT_TRUE(at::equal(w_plain, w_ckpt));
  EXPECT_TRUE(at::equal(x_plain, x_ckpt));
}

TEST(ActivationCheckpointing, MlpHasNoBlocksAndSaysSo) {
  auto net = model_for(ModelKind::kMlp);
  EXPECT_FALSE(net->set_activation_checkpointing(true));
  EXPECT_THROW(
      Trainer(
          Model::of(net), optimizer_factory({}), data_for(ModelKind::kMlp),
          TrainOptions().batch(BatchOptions().global_batch(32)).memory(MemoryOptions().activation_checkpointing(true))),
      ConfigError);
}

// The static part and per-example cost of a model, from a plan with room to spare.
MemoryPlan generous_plan(ModelKind kind, const std::shared_ptr<const Dataset>& data) {
  Trainer t(Model::of(model_for(kind)), optimizer_factory({}), data, budgeted(96, int64_t{4} << 30));
  return *t.memory_plan();
}

TEST(MemoryPlanner, EveryStepStaysWithinTheBudgetForEachModel) {
  for (ModelKind kind : {ModelKind::kMlp, ModelKind::kCnn, ModelKind::kGpt}) {
    const auto data = data_for(kind);
    const MemoryPlan loose = generous_plan(kind, data);
    EXPECT_EQ(loose.micro_batch, 96) << to_string(kind);
    // A budget for about a fifth of the global batch in one micro-batch (the planner uses 98%).
    const int64_t budget = testing::budget_for(loose, 20, 1 << 16);
    Trainer t(Model::of(model_for(kind)), optimizer_factory({}), data, budgeted(96, budget, 3));
    const MemoryPlan& m = *t.memory_plan();
    if (kind != ModelKind::kMlp) {  // the mlp's boundary (its float64 norm) outweighs 96 examples' activations
      EXPECT_GT(m.micro_batch, 1) << to_string(kind);
      EXPECT_LT(m.micro_batch, 96) << to_string(kind);
    }
    EXPECT_EQ(t.plan().batch.micro_batch, m.micro_batch);
    EXPECT_LE(m.predicted_peak, budget);
    const TrainResult r = t.fit();
    ASSERT_EQ(r.history.size(), 3u);
    for (const StepReport& s : r.history) {
      EXPECT_LE(s.peak_bytes, budget) << to_string(kind) << " step " << s.step;
      EXPECT_EQ(s.oom_replays, 0) << to_string(kind);
      EXPECT_EQ(s.samples, 96);
    }
  }
}

// Token-budget micro-batches under a memory budget: the planner fits activations per computed
// position and chooses N; every step stays within the budget, and the run is the run of the same
// windows in fixed micro-batches.
TEST(MemoryPlanner, ChoosesATokenBudgetThatKeepsEveryStepWithinTheBudget) {
  const auto data = data_for(ModelKind::kGpt);  // 96 sequences of 8..48 tokens
  const int64_t longest = 48;
  const TrainOptions tokens =
      TrainOptions().batch(BatchOptions().global_batch(96).micro_batch_tokens(0)).data(DataOptions().steps(3));
  const MemoryPlan loose = [&] {
    Trainer t(Model::of(model_for(ModelKind::kGpt)), optimizer_factory({}), data,
              but(tokens, [&](TrainOptions& o) { o.memory().budget(int64_t{4} << 30); }));
    return *t.memory_plan();
  }();
  EXPECT_EQ(loose.micro_batch_tokens, 96 * longest);  // all of the window's rows of the longest
  EXPECT_EQ(loose.probe_example_positions, longest);
  // Room for about 10 rows of the longest sequence.
  const int64_t budget = testing::budget_for(loose, 10 * longest, 1 << 16);
  auto net = model_for(ModelKind::kGpt);
  Trainer t(Model::of(net), optimizer_factory({}), data,
            but(tokens, [&](TrainOptions& o) { o.memory().budget(budget); }));
  const MemoryPlan& m = *t.memory_plan();
  std::cout << "    budget " << budget << ": tokens:" << m.micro_batch_tokens << ", predicted peak " << m.predicted_peak
            << ", probed " << m.probed_peak << "\n";
  EXPECT_GE(m.micro_batch_tokens, 8 * longest);
  EXPECT_LE(m.micro_batch_tokens, 12 * longest);
  EXPECT_EQ(t.plan().micro_batch_tokens, m.micro_batch_tokens);
  EXPECT_LE(m.predicted_peak, budget);
  const TrainResult r = t.fit();
  ASSERT_EQ(r.history.size(), 3u);
  for (const StepReport& s : r.history) {
    EXPECT_LE(s.peak_bytes, budget) << "step " << s.step;
    EXPECT_EQ(s.oom_replays, 0);
    EXPECT_EQ(s.samples, 96);
    EXPECT_GT(s.micro_batch, m.micro_batch_tokens / longest - 1);  // the most rows: short sequences share more
  }
  // The same windows in one micro-batch each: the same weights (exact accumulation).
  auto whole = model_for(ModelKind::kGpt);
  Trainer(Model::of(whole), optimizer_factory({}), data,
          TrainOptions().batch(BatchOptions().global_batch(96).micro_batch(96)).data(DataOptions().steps(3)))
      .fit();
  const auto a = net->parameters(), b = whole->parameters();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_LT((a[i] - b[i]).abs().max().item<double>(), 1e-5) << i;

  // The user's N is checked, and one that does not fit is named with the largest that does.
  try {
    Trainer(Model::of(model_for(ModelKind::kGpt)), optimizer_factory({}), data, but(tokens, [&](TrainOptions& o) {
              o.batch().micro_batch_tokens(96 * longest);
              o.memory().budget(budget);
            }));
    ADD_FAILURE() << "tokens:" << 96 * longest << " fit a budget for about 10 rows";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("the largest that fits is tokens:"), std::string::npos) << e.what();
  }
  // Without a budget, tokens needs its N.
  EXPECT_THROW(Trainer(Model::of(model_for(ModelKind::kGpt)), optimizer_factory({}), data, tokens), ConfigError);
}

TEST(MemoryPlanner, TurnsCheckpointingOnOnlyWhenNothingFitsWithout) {
  const auto data = data_for(ModelKind::kGpt);
  const MemoryPlan loose = generous_plan(ModelKind::kGpt, data);
  ASSERT_TRUE(loose.min_budget_with_checkpointing.has_value());
  EXPECT_FALSE(loose.checkpointing);
  EXPECT_LT(*loose.min_budget_with_checkpointing, loose.min_budget_without_checkpointing);
  // Between the two minimums: only checkpointing fits.
  const int64_t budget = (*loose.min_budget_with_checkpointing + loose.min_budget_without_checkpointing) / 2;
  Trainer t(Model::of(model_for(ModelKind::kGpt)), optimizer_factory({}), data, budgeted(96, budget, 2));
  EXPECT_TRUE(t.memory_plan()->checkpointing);
  EXPECT_EQ(t.plan().memory.activation_checkpointing(), std::optional<bool>(true));
  for (const StepReport& s : t.fit().history) EXPECT_LE(s.peak_bytes, budget);
}

// Weights after 2 SGD steps of `kind` under these options.
std::vector<at::Tensor> sgd_weights(ModelKind kind, const std::shared_ptr<const Dataset>& data, TrainOptions o,
                                    BatchPlan* plan = nullptr) {
  OptimizerOptions sgd;
  sgd.name = "sgd";
  sgd.lr = 0.1;
  auto net = model_for(kind);
  o.data().steps(2);
  Trainer t(Model::of(net), optimizer_factory(sgd), data, o);
  if (plan) *plan = t.plan().batch;
  t.fit();
  std::vector<at::Tensor> w;
  for (const at::Tensor& p : net->parameters()) w.push_back(p.detach().clone());
  return w;
}

TEST(MemoryPlanner, APlannedUnevenMicroBatchIsExactAgainstTheFullBatch) {
  // Budget for about 13 of 96: micro-batches that do not divide the window, the last one shorter.
  for (ModelKind kind : {ModelKind::kCnn, ModelKind::kGpt}) {
    const auto data = data_for(kind);
    const MemoryPlan loose = generous_plan(kind, data);
    const int64_t budget = testing::budget_for(loose, 13, 0);
    BatchPlan planned;
    const auto accumulated = sgd_weights(kind, data, budgeted(96, budget), &planned);
    const auto full = sgd_weights(kind, data, TrainOptions().batch(BatchOptions().global_batch(96).micro_batch(96)));
    const auto initial = model_for(kind)->parameters();
    EXPECT_NE(96 % planned.micro_batch, 0) << to_string(kind) << " " << describe(planned);
    EXPECT_GT(planned.accumulation_steps, 1);
    double diff = 0, moved = 0;
    for (size_t i = 0; i < full.size(); ++i) {
      diff = std::max(diff, (accumulated[i] - full[i]).abs().max().item<double>());
      moved = std::max(moved, (full[i] - initial[i]).abs().max().item<double>());
    }
    EXPECT_GT(moved, 1e-3) << to_string(kind);
    EXPECT_LE(diff, 1e-5 * moved) << to_string(kind) << ": max |Δw| " << diff << " of a movement of " << moved;
  }
}

TEST(MemoryPlanner, RefusesWhatCannotFitWithOneLineNamingTheNumbers) {
  const auto data = data_for(ModelKind::kGpt);
  const MemoryPlan loose = generous_plan(ModelKind::kGpt, data);
  const auto trainer = [&](TrainOptions o) {
    return Trainer(Model::of(model_for(ModelKind::kGpt)), optimizer_factory({}), data, o);
  };
  const auto message = [&](TrainOptions o) {
    try {
      trainer(o);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  // Below the static part.
  EXPECT_NE(message(budgeted(96, loose.static_bytes / 2)).find("static need"), std::string::npos);
  // Above the static part, below one micro-batch even with checkpointing.
  const auto above_static = static_cast<int64_t>(
      (static_cast<double>(loose.static_bytes) / 0.98 + static_cast<double>(*loose.min_budget_with_checkpointing)) / 2);
  const std::string one = message(budgeted(96, above_static));
  EXPECT_NE(one.find("smallest budget that works is"), std::string::npos) << one;
  // A micro-batch of the user's that does not fit.
  const auto budget = static_cast<int64_t>(
      static_cast<double>(loose.static_bytes + loose.activations.fixed + 10 * loose.activations.per_example) / 0.98);
  const std::string micro = message(
      TrainOptions().batch(BatchOptions().global_batch(96).micro_batch(48)).memory(MemoryOptions().budget(budget)));
  EXPECT_NE(micro.find("micro_batch 48 needs"), std::string::npos) << micro;
  // One that does is kept.
  EXPECT_EQ(
      trainer(
          TrainOptions().batch(BatchOptions().global_batch(96).micro_batch(4)).memory(MemoryOptions().budget(budget)))
          .plan()
          .batch.micro_batch,
      4);
  // Accumulation without the global batch.
  EXPECT_NE(message(TrainOptions()
                        .batch(BatchOptions().accumulation_steps(4).micro_batch(2))
                        .memory(MemoryOptions().budget(budget)))
                .find("needs global_batch"),
            std::string::npos);
}

TEST(MemoryPlanner, ProbesChangeNothing) {
  const auto data = data_for(ModelKind::kCnn);
  auto planned = model_for(ModelKind::kCnn), plain = model_for(ModelKind::kCnn);
  OptimizerOptions adam;
  adam.fused = false;  // LibTorch's Adam: its state is created by the probe step, then dropped
  Trainer t(Model::of(planned), optimizer_factory(adam), data, budgeted(96, int64_t{1} << 30));
  EXPECT_GT(t.memory_plan()->optimizer_state_bytes, 0);
  EXPECT_TRUE(t.optimizer().state().empty());
  const auto a = planned->parameters(), b = plain->parameters();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i], b[i]));
  for (const at::Tensor& p : planned->parameters()) EXPECT_EQ(p.grad().abs().max().item<double>(), 0.0);
}

TEST(ParseBytes, UnitsAndRefusals) {
  EXPECT_EQ(parse_bytes("512MiB"), int64_t{512} << 20);
  EXPECT_EQ(parse_bytes("2GiB"), int64_t{2} << 30);
  EXPECT_EQ(parse_bytes("1.5GB"), 1500000000);
  EXPECT_EQ(parse_bytes("4096"), 4096);
  for (const char* bad : {"", "MiB", "12 MiB", "1.5", "-1GiB", "0", "1.GiB", "2gib", "1e3MiB", "3XB", "9999999TiB"}) {
    EXPECT_THROW(parse_bytes(bad), std::invalid_argument) << bad;
  }
}

}  // namespace
}  // namespace gradacc
