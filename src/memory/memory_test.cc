// Memory: activation checkpointing gives the plain run's gradients with less memory; the planner
// keeps every step of a run within the budget for each of gradacc's models, stays exact with an
// uneven last micro-batch, and refuses what cannot fit; a window that runs out of memory is
// replayed with half the micro-batch and ends where a run that started there ends.
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
#include "testing/test_util.h"
#include "train/run_plan.h"

namespace gradacc {
namespace {

using testing::flat_grads;

ModelSpec spec_of(ModelKind kind) {
  ModelSpec s;
  s.kind = kind;
  s.layers = 3;
  s.heads = 2;
  s.dim = 32;
  s.context = 48;
  return s;
}

// Random images (cnn, mlp) or random bytes in sequences of varying length (gpt).
std::shared_ptr<const Dataset> data_for(ModelKind kind, int64_t n = 96) {
  torch::manual_seed(5);
  if (kind != ModelKind::kGpt) {
    return std::make_shared<TensorDataset>(at::rand({n, 1, 28, 28}), at::randint(0, 10, {n}), 10);
  }
  auto bytes = std::make_shared<std::string>();
  std::vector<std::pair<int64_t, int64_t>> sequences;
  const at::Tensor lengths = at::randint(8, 49, {n});
  for (int64_t i = 0; i < n; ++i) {
    const int64_t begin = static_cast<int64_t>(bytes->size()), len = lengths[i].item<int64_t>() + 1;
    const at::Tensor b = at::randint(32, 127, {len});
    for (int64_t k = 0; k < len; ++k) bytes->push_back(static_cast<char>(b[k].item<int64_t>()));
    sequences.emplace_back(begin, begin + len);
  }
  return std::make_shared<TextDataset>(bytes, sequences);
}

std::shared_ptr<Network> model_for(ModelKind kind, uint64_t seed = 3) {
  torch::manual_seed(seed);
  return make_model(spec_of(kind), kind == ModelKind::kGpt ? kByteVocab : 10);
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
  EXPECT_THROW(Trainer(Model::of(net), optimizer_factory({}), data_for(ModelKind::kMlp),
                       TrainOptions().global_batch(32).activation_checkpointing(true)),
               ConfigError);
}

// The static part and per-example cost of a model, from a plan with room to spare.
MemoryPlan generous_plan(ModelKind kind, const std::shared_ptr<const Dataset>& data) {
  Trainer t(Model::of(model_for(kind)), optimizer_factory({}), data,
            TrainOptions().global_batch(96).memory_budget(int64_t{4} << 30));
  return *t.memory_plan();
}

TEST(MemoryPlanner, EveryStepStaysWithinTheBudgetForEachModel) {
  for (ModelKind kind : {ModelKind::kMlp, ModelKind::kCnn, ModelKind::kGpt}) {
    const auto data = data_for(kind);
    const MemoryPlan loose = generous_plan(kind, data);
    EXPECT_EQ(loose.micro_batch, 96) << to_string(kind);
    // A budget for about a fifth of the global batch in one micro-batch (the planner uses 98%).
    const int64_t budget = testing::budget_for(loose, 20, 1 << 16);
    Trainer t(Model::of(model_for(kind)), optimizer_factory({}), data,
              TrainOptions().global_batch(96).memory_budget(budget).steps(3));
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
  const TrainOptions tokens = TrainOptions().global_batch(96).micro_batch_tokens(0).steps(3);
  const MemoryPlan loose = [&] {
    Trainer t(Model::of(model_for(ModelKind::kGpt)), optimizer_factory({}), data,
              TrainOptions(tokens).memory_budget(int64_t{4} << 30));
    return *t.memory_plan();
  }();
  EXPECT_EQ(loose.micro_batch_tokens, 96 * longest);  // all of the window's rows of the longest
  EXPECT_EQ(loose.probe_example_positions, longest);
  // Room for about 10 rows of the longest sequence.
  const int64_t budget = testing::budget_for(loose, 10 * longest, 1 << 16);
  auto net = model_for(ModelKind::kGpt);
  Trainer t(Model::of(net), optimizer_factory({}), data, TrainOptions(tokens).memory_budget(budget));
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
  Trainer(Model::of(whole), optimizer_factory({}), data, TrainOptions().global_batch(96).micro_batch(96).steps(3))
      .fit();
  const auto a = net->parameters(), b = whole->parameters();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_LT((a[i] - b[i]).abs().max().item<double>(), 1e-5) << i;

  // The user's N is checked, and one that does not fit is named with the largest that does.
  try {
    Trainer(Model::of(model_for(ModelKind::kGpt)), optimizer_factory({}), data,
            TrainOptions(tokens).micro_batch_tokens(96 * longest).memory_budget(budget));
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
  Trainer t(Model::of(model_for(ModelKind::kGpt)), optimizer_factory({}), data,
            TrainOptions().global_batch(96).memory_budget(budget).steps(2));
  EXPECT_TRUE(t.memory_plan()->checkpointing);
  EXPECT_EQ(t.plan().activation_checkpointing, std::optional<bool>(true));
  for (const StepReport& s : t.fit().history) EXPECT_LE(s.peak_bytes, budget);
}

// Weights after 2 SGD steps of `kind` under these options.
std::vector<at::Tensor> sgd_weights(ModelKind kind, const std::shared_ptr<const Dataset>& data, TrainOptions o,
                                    BatchPlan* plan = nullptr) {
  OptimizerOptions sgd;
  sgd.name = "sgd";
  sgd.lr = 0.1;
  auto net = model_for(kind);
  Trainer t(Model::of(net), optimizer_factory(sgd), data, o.steps(2));
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
    const auto accumulated = sgd_weights(kind, data, TrainOptions().global_batch(96).memory_budget(budget), &planned);
    const auto full = sgd_weights(kind, data, TrainOptions().global_batch(96).micro_batch(96));
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
  EXPECT_NE(message(TrainOptions().global_batch(96).memory_budget(loose.static_bytes / 2)).find("static need"),
            std::string::npos);
  // Above the static part, below one micro-batch even with checkpointing.
  const auto above_static = static_cast<int64_t>(
      (static_cast<double>(loose.static_bytes) / 0.98 + static_cast<double>(*loose.min_budget_with_checkpointing)) / 2);
  const std::string one = message(TrainOptions().global_batch(96).memory_budget(above_static));
  EXPECT_NE(one.find("smallest budget that works is"), std::string::npos) << one;
  // A micro-batch of the user's that does not fit.
  const auto budget = static_cast<int64_t>(
      static_cast<double>(loose.static_bytes + loose.activations.fixed + 10 * loose.activations.per_example) / 0.98);
  const std::string micro = message(TrainOptions().global_batch(96).micro_batch(48).memory_budget(budget));
  EXPECT_NE(micro.find("micro_batch 48 needs"), std::string::npos) << micro;
  // One that does is kept.
  EXPECT_EQ(trainer(TrainOptions().global_batch(96).micro_batch(4).memory_budget(budget)).plan().batch.micro_batch, 4);
  // Accumulation without the global batch.
  EXPECT_NE(
      message(TrainOptions().accumulation_steps(4).micro_batch(2).memory_budget(budget)).find("needs global_batch"),
      std::string::npos);
}

TEST(MemoryPlanner, ProbesChangeNothing) {
  const auto data = data_for(ModelKind::kCnn);
  auto planned = model_for(ModelKind::kCnn), plain = model_for(ModelKind::kCnn);
  OptimizerOptions adam;
  adam.fused = false;  // LibTorch's Adam: its state is created by the probe step, then dropped
  Trainer t(Model::of(planned), optimizer_factory(adam), data,
            TrainOptions().global_batch(96).memory_budget(int64_t{1} << 30));
  EXPECT_GT(t.memory_plan()->optimizer_state_bytes, 0);
  EXPECT_TRUE(t.optimizer().state().empty());
  const auto a = planned->parameters(), b = plain->parameters();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i], b[i]));
  for (const at::Tensor& p : planned->parameters()) EXPECT_EQ(p.grad().abs().max().item<double>(), 0.0);
}

// 3 steps of the cnn with this micro-batch; with `headroom`, the CPU allocator refuses to hold more
// than that many bytes above what is live when training starts.
struct LimitedRun {
  std::vector<at::Tensor> weights;
  std::vector<StepReport> steps;
  int64_t peak_above_start = 0;
};
LimitedRun limited_run(ModelKind kind, const TrainOptions& options, std::optional<int64_t> headroom);

LimitedRun limited_run(int64_t micro, std::optional<int64_t> headroom) {
  return limited_run(ModelKind::kCnn, TrainOptions().global_batch(64).micro_batch(micro).steps(3), headroom);
}

LimitedRun limited_run(ModelKind kind, const TrainOptions& options, std::optional<int64_t> headroom) {
  install_cpu_memory_counter();
  auto net = model_for(kind);
  Trainer t(Model::of(net), optimizer_factory({}), data_for(kind), options);
  const int64_t start = memory_reading(at::kCPU).current_bytes;
  set_cpu_memory_limit(headroom ? start + *headroom : 0);
  LimitedRun run;
  try {
    run.steps = t.fit().history;
  } catch (...) {
    set_cpu_memory_limit(0);
    throw;
  }
  set_cpu_memory_limit(0);
  for (const StepReport& s : run.steps) run.peak_above_start = std::max(run.peak_above_start, s.peak_bytes - start);
  for (const at::Tensor& p : net->parameters()) run.weights.push_back(p.detach().clone());
  return run;
}

TEST(OutOfMemoryReplay, AWindowThatRunsOutIsReplayedHalvedAndEndsAsTheSmallerRun) {
  const LimitedRun small = limited_run(16, std::nullopt), large = limited_run(64, std::nullopt);
  ASSERT_GT(large.peak_above_start, small.peak_above_start + (1 << 20));
  // Room for micro-batches of 16, not of 64 or 32: the first window runs out twice.
  const LimitedRun replayed = limited_run(64, small.peak_above_start + (1 << 16));
  ASSERT_EQ(replayed.steps.size(), 3u);
  EXPECT_EQ(replayed.steps[0].oom_replays, 2);
  EXPECT_EQ(replayed.steps[0].micro_batch, 16);
  EXPECT_EQ(replayed.steps[1].oom_replays, 0);
  EXPECT_EQ(replayed.steps[1].micro_batch, 16);
  for (size_t i = 0; i < small.weights.size(); ++i) EXPECT_TRUE(at::equal(small.weights[i], replayed.weights[i])) << i;
  for (size_t i = 0; i < small.steps.size(); ++i) EXPECT_EQ(replayed.steps[i].loss, small.steps[i].loss);
}

TEST(OutOfMemoryReplay, AMicroBatchOfOneThatDoesNotFitEndsTheRun) { EXPECT_THROW(limited_run(4, 4096), MemoryError); }

// With token budgets the replay halves the tokens: a window of the whole share in one micro-batch
// (96 × 48 tokens) with room for a quarter of that runs out twice, then ends as the run that cut
// by 1,152 tokens from the start.
TEST(OutOfMemoryReplay, ATokenBudgetWindowThatRunsOutIsReplayedWithHalfTheTokens) {
  const auto run = [](int64_t tokens, std::optional<int64_t> headroom) {
    return limited_run(ModelKind::kGpt, TrainOptions().global_batch(96).micro_batch_tokens(tokens).steps(3), headroom);
  };
  const LimitedRun small = run(96 * 48 / 4, std::nullopt), large = run(96 * 48, std::nullopt);
  ASSERT_GT(large.peak_above_start, small.peak_above_start + (1 << 20));
  const LimitedRun replayed = run(96 * 48, small.peak_above_start + (1 << 16));
  ASSERT_EQ(replayed.steps.size(), 3u);
  EXPECT_EQ(replayed.steps[0].oom_replays, 2);
  EXPECT_EQ(replayed.steps[1].oom_replays, 0);
  for (size_t i = 0; i < small.steps.size(); ++i) {
    EXPECT_EQ(replayed.steps[i].micro_batch, small.steps[i].micro_batch) << i;
    EXPECT_EQ(replayed.steps[i].loss, small.steps[i].loss) << i;
  }
  for (size_t i = 0; i < small.weights.size(); ++i) EXPECT_TRUE(at::equal(small.weights[i], replayed.weights[i])) << i;
  // The longest sequence (48) alone does not fit: the run ends with one line.
  EXPECT_THROW(run(48, 4096), MemoryError);
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
