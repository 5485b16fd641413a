#include "gradacc/batch_plan.h"

#include <gtest/gtest.h>

namespace gradacc {
namespace {

BatchPlan resolve(std::optional<int64_t> g, std::optional<int64_t> m, std::optional<int64_t> a,
                  std::optional<int64_t> w = std::nullopt) {
  return BatchPlan::resolve({g, m, a, w});
}

void expect_plan(const BatchPlan& p, int64_t g, int64_t m, int64_t a, int64_t w) {
  EXPECT_EQ(p.global_batch, g);
  EXPECT_EQ(p.micro_batch, m);
  EXPECT_EQ(p.accumulation_steps, a);
  EXPECT_EQ(p.world_size, w);
  EXPECT_EQ(p.global_batch, p.micro_batch * p.accumulation_steps * p.world_size);
}

TEST(BatchPlan, AnyTwoOfThreeGiveTheThird) {
  expect_plan(resolve(256, 32, std::nullopt), 256, 32, 8, 1);
  expect_plan(resolve(256, std::nullopt, 8), 256, 32, 8, 1);
  expect_plan(resolve(std::nullopt, 32, 8), 256, 32, 8, 1);
  expect_plan(resolve(256, 32, 8), 256, 32, 8, 1);
}

TEST(BatchPlan, WorldSizeJoinsTheProduct) {
  expect_plan(resolve(32, 8, std::nullopt, 2), 32, 8, 2, 2);
  expect_plan(resolve(32, std::nullopt, 2, 2), 32, 8, 2, 2);
  expect_plan(resolve(std::nullopt, 8, 2, 2), 32, 8, 2, 2);
  expect_plan(resolve(32, std::nullopt, std::nullopt, 4), 32, 8, 1, 4);
}

TEST(BatchPlan, OneBatchSizeAloneMeansNoAccumulation) {
  expect_plan(resolve(64, std::nullopt, std::nullopt), 64, 64, 1, 1);
  expect_plan(resolve(std::nullopt, 16, std::nullopt), 16, 16, 1, 1);
}

// Every rejection names the fields and the numbers.
void expect_error(const BatchPlanRequest& r, const std::vector<std::string>& fragments) {
  try {
    BatchPlan::resolve(r);
    FAIL() << "expected PlanError";
  } catch (const PlanError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const auto& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "'" << f << "' missing in: " << msg;
  }
}

TEST(BatchPlan, RejectsInconsistentAndNonPositive) {
  expect_error({256, 32, 4, std::nullopt}, {"global_batch = 256", "32 × 4 × 1 = 128"});
  expect_error({100, 32, std::nullopt, std::nullopt}, {"global_batch = 100", "micro_batch × world_size", "32"});
  expect_error({100, std::nullopt, 8, std::nullopt}, {"global_batch = 100", "accumulation_steps × world_size", "8"});
  expect_error({30, std::nullopt, std::nullopt, 4}, {"global_batch = 30", "world_size", "4"});
  expect_error({0, 8, std::nullopt, std::nullopt}, {"global_batch", "0"});
  expect_error({std::nullopt, -4, 2, std::nullopt}, {"micro_batch", "-4"});
  expect_error({64, std::nullopt, 0, std::nullopt}, {"accumulation_steps", "0"});
  expect_error({64, 8, std::nullopt, -1}, {"world_size", "-1"});
  expect_error({std::nullopt, std::nullopt, 4, std::nullopt}, {"accumulation_steps = 4"});
  expect_error({std::nullopt, std::nullopt, std::nullopt, std::nullopt}, {"global_batch", "micro_batch"});
  expect_error({64, 8, 4, 4}, {"8 × 4 × 4 = 128"});
}

TEST(EpochLayout, CountsFullAndPartialWindows) {
  const BatchPlan p = resolve(256, 32, std::nullopt);
  const EpochLayout e = EpochLayout::of(p, 60000, false);
  EXPECT_EQ(e.full_windows, 234);
  EXPECT_EQ(e.partial_window_size, 96);
  EXPECT_EQ(e.windows(), 235);
  EXPECT_EQ(e.partial_micro_batches(p), 3);
  const EpochLayout d = EpochLayout::of(p, 60000, true);
  EXPECT_EQ(d.windows(), 234);
  EXPECT_TRUE(d.partial_dropped);
  EXPECT_EQ(EpochLayout::of(p, 512, false).partial_window_size, 0);
  EXPECT_THROW(EpochLayout::of(p, 100, true), PlanError);
  EXPECT_THROW(EpochLayout::of(p, 0, false), PlanError);
}

}  // namespace
}  // namespace gradacc
