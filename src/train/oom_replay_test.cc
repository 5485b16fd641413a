// Out-of-memory replay: a window that runs out of memory is replayed with half the micro-batch (or
// half the tokens) and ends where a run that started there ends; a micro-batch of one that does
// not fit ends the run with one line.
#include <ATen/ops/equal.h>
#include <gtest/gtest.h>

#include "gradacc/device.h"
#include "gradacc/errors.h"
#include "gradacc/optimizer.h"
#include "gradacc/trainer.h"
#include "testing/memory_models.h"

namespace gradacc {
namespace {

using testing::data_for;
using testing::model_for;

// 3 steps of the cnn with this micro-batch; with `headroom`, the CPU allocator refuses to hold more
// than that many bytes above what is live when training starts.
struct LimitedRun {
  std::vector<at::Tensor> weights;
  std::vector<StepReport> steps;
  int64_t peak_above_start = 0;
};
LimitedRun limited_run(ModelKind kind, const TrainOptions& options, std::optional<int64_t> headroom);

LimitedRun limited_run(int64_t micro, std::optional<int64_t> headroom) {
  return limited_run(
      ModelKind::kCnn,
      TrainOptions().batch(BatchOptions().global_batch(64).micro_batch(micro)).data(DataOptions().steps(3)), headroom);
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
    return limited_run(
        ModelKind::kGpt,
        TrainOptions().batch(BatchOptions().global_batch(96).micro_batch_tokens(tokens)).data(DataOptions().steps(3)),
        headroom);
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

}  // namespace
}  // namespace gradacc
