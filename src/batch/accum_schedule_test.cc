#include "batch/accum_schedule.h"
#include "builtin/models.h"
#include "testing/test_util.h"

#include <gtest/gtest.h>
#include <torch/optim/adamw.h>
#include <torch/utils.h>

#include "accumulate/accumulator.h"
#include "builtin/fashion_mnist.h"
#include "gradacc/batch_plan.h"
#include "gradacc/trainer.h"
#include "train/train_loop.h"

namespace gradacc {
namespace {

TEST(AccumSchedule, ParsesAndLooksUpByOptimizerStep) {
  const AccumSchedule s = AccumSchedule::parse("0:2,200:4,600:8");
  EXPECT_EQ(s.at(0), 2);
  EXPECT_EQ(s.at(199), 2);
  EXPECT_EQ(s.at(200), 4);
  EXPECT_EQ(s.at(599), 4);
  EXPECT_EQ(s.at(600), 8);
  EXPECT_EQ(s.at(100000), 8);
  for (const char* bad : {"", "1:2", "0:2,0:4", "0:2,300:4,200:8", "0:0", "0:2,x:4", "0-2", "0:2,5:3junk"}) {
    EXPECT_THROW(AccumSchedule::parse(bad), PlanError) << bad;
  }
}

struct ScheduledRun {
  std::vector<StepReport> reports;
  std::shared_ptr<Network> model;
  LoopPosition pos;
};

ScheduledRun run(int64_t micro, const std::string& spec, int64_t steps, int64_t data_size) {
  static auto all = load_fashion_mnist(kFashionMnistDir, Split::kTrain);
  auto data = all->head(data_size);
  torch::manual_seed(3);
  ScheduledRun r;
  r.model = make_model({ModelKind::kMlp}, 10);
  torch::optim::AdamW opt(r.model->parameters(), torch::optim::AdamWOptions(1e-3));
  const BatchPlan plan = BatchPlan::resolve({std::nullopt, micro, std::nullopt, std::nullopt});
  Accumulator acc(*r.model, opt, nullptr, AccumulatorOptions().nominal_count_(micro));
  const WindowSampler sampler(data->size(), plan, {true, 9, false, 0});
  const AccumSchedule schedule = AccumSchedule::parse(spec);
  r.reports = testing::run_steps(r.model, acc, *data, sampler, steps, at::kCPU, r.pos, &schedule);
  return r;
}

// The windows grow with the schedule, and normalization stays exact: two runs that see the same
// windows (8, 8, 32, 32, 32 examples) split into different micro-batches end with the same
// weights (tolerance 5e-5 absolute after 5 AdamW steps of lr 1e-3; measured ~1e-7).
TEST(AccumSchedule, WindowsFollowTheScheduleAndStayExact) {
  const ScheduledRun a = run(8, "0:1,2:4", 5, 4096), b = run(4, "0:2,2:8", 5, 4096);
  const std::vector<int64_t> samples = {8, 8, 32, 32, 32};
  for (size_t i = 0; i < samples.size(); ++i) {
    EXPECT_EQ(a.reports[i].samples, samples[i]);
    EXPECT_EQ(b.reports[i].samples, samples[i]);
    EXPECT_EQ(a.reports[i].micro_batches, samples[i] / 8);
    EXPECT_EQ(b.reports[i].micro_batches, samples[i] / 4);
  }
  const auto pa = a.model->parameters(), pb = b.model->parameters();
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_LT((pa[i] - pb[i]).abs().max().item<double>(), 5e-5);
}

TEST(AccumSchedule, GrowingWindowsWrapAcrossEpochs) {
  // 40 examples, micro 4: windows of 8, then 16 — 8 + 16 + 16 = 40 closes epoch 0 exactly.
  const ScheduledRun r = run(4, "0:2,1:4", 5, 40);
  EXPECT_EQ(r.reports[2].samples, 16);
  EXPECT_EQ(r.reports[3].samples, 16);  // epoch 1 starts afresh
  EXPECT_EQ(r.pos.epoch, 1);
  EXPECT_EQ(r.pos.offset, 32);
}

}  // namespace
}  // namespace gradacc
