#include "gradacc/optim/lr_schedule.h"

#include <cmath>
#include <numbers>

#include <gtest/gtest.h>

namespace gradacc {
namespace {

TEST(LrSchedule, WarmupIsLinearInOptimizerSteps) {
  const LrSchedule s({ScheduleKind::kCosine, 1.0, 10, 100, 0.0});
  for (int i = 0; i < 10; ++i) EXPECT_DOUBLE_EQ(s.lr_at(i), (i + 1) / 10.0);
  EXPECT_DOUBLE_EQ(s.lr_at(10), 1.0);  // decay starts at the peak
}

TEST(LrSchedule, CosineFollowsItsFormulaAndEndsAtTheFloor) {
  const LrSchedule s({ScheduleKind::kCosine, 0.5, 0, 200, 0.01});
  for (int i : {0, 37, 100, 150, 199}) {
    const double p = i / 200.0;
    EXPECT_NEAR(s.lr_at(i), 0.01 + 0.49 * 0.5 * (1 + std::cos(std::numbers::pi * p)), 1e-15);
  }
  EXPECT_DOUBLE_EQ(s.lr_at(200), 0.01);
  EXPECT_DOUBLE_EQ(s.lr_at(5000), 0.01);
}

TEST(LrSchedule, LinearDecaysToTheFloor) {
  const LrSchedule s({ScheduleKind::kLinear, 1.0, 0, 10, 0.1});
  EXPECT_DOUBLE_EQ(s.lr_at(0), 1.0);
  EXPECT_NEAR(s.lr_at(5), 0.55, 1e-15);
  EXPECT_DOUBLE_EQ(s.lr_at(10), 0.1);
}

// 1000 optimizer steps with accumulation 4 are 4000 micro-batches; the schedule is over the 1000.
TEST(LrSchedule, ThousandOptimizerStepsDecayOverAThousandNotTwoHundredFifty) {
  const LrSchedule s({ScheduleKind::kCosine, 1.0, 0, 1000, 0.0});
  EXPECT_GT(s.lr_at(250), 0.85);  // a 250-step schedule would be at its floor here
  EXPECT_LT(s.lr_at(999), 1e-4);
}

TEST(LrSchedule, RejectsBadOptions) {
  EXPECT_THROW(LrSchedule({ScheduleKind::kCosine, 1.0, 100, 100, 0.0}), std::invalid_argument);
  EXPECT_THROW(LrSchedule({ScheduleKind::kCosine, -1.0, 0, 100, 0.0}), std::invalid_argument);
  EXPECT_THROW(LrSchedule({ScheduleKind::kCosine, 1.0, 0, 100, 2.0}), std::invalid_argument);
  EXPECT_THROW(LrSchedule({ScheduleKind::kConstant, 1.0, 0, 0, 0.0}), std::invalid_argument);
  EXPECT_THROW(parse_schedule("step"), std::invalid_argument);
}

// constant stays at the base rate for every step after its warmup, to the last.
TEST(LrSchedule, ConstantStaysConstant) {
  const LrSchedule s({ScheduleKind::kConstant, 0.03, 4, 1000, 0.0});
  for (int64_t step : {0, 1, 2, 3}) EXPECT_DOUBLE_EQ(s.lr_at(step), 0.03 * static_cast<double>(step + 1) / 4.0);
  for (int64_t step = 4; step < 1000; ++step) ASSERT_DOUBLE_EQ(s.lr_at(step), 0.03) << step;
}

}  // namespace
}  // namespace gradacc
