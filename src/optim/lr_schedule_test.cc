#include "gradacc/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include <gtest/gtest.h>

#include "gradacc/errors.h"

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

// DeepSpeed's schedulers, each step against the formulas of its documentation and source
// (deepspeed/runtime/lr_schedules.py), written out here independently: W' = max(2, W).
LrScheduleOptions deepspeed(ScheduleKind kind, double base, int64_t warmup, int64_t total, double floor, bool log) {
  LrScheduleOptions o{kind, base, warmup, total, floor};
  o.log_warmup = log;
  return o;
}

TEST(LrSchedule, DeepSpeedWarmupLRLogAndLinear) {
  for (bool log : {true, false}) {
    const LrSchedule s(deepspeed(ScheduleKind::kDsWarmup, 1e-3, 10, 100, 1e-5, log));
    for (int i = 0; i < 30; ++i) {
      const double gamma = i >= 10 ? 1.0 : log ? std::log(i + 1.0) / std::log(10.0) : i / 10.0;
      EXPECT_NEAR(s.lr_at(i), 1e-5 + (1e-3 - 1e-5) * gamma, 1e-18) << i;
    }
  }
  // DeepSpeed takes a warmup of at least 2 steps.
  const LrSchedule one(deepspeed(ScheduleKind::kDsWarmup, 1.0, 1, 10, 0.0, false));
  EXPECT_DOUBLE_EQ(one.lr_at(0), 0.0);
  EXPECT_DOUBLE_EQ(one.lr_at(1), 0.5);
  EXPECT_DOUBLE_EQ(one.lr_at(2), 1.0);
}

TEST(LrSchedule, DeepSpeedWarmupDecayLR) {
  const LrSchedule s(deepspeed(ScheduleKind::kDsWarmupDecay, 1e-3, 10, 100, 0.0, true));
  for (int i = 0; i < 120; ++i) {
    const double gamma = i < 10 ? std::log(i + 1.0) / std::log(10.0) : std::max(0.0, (100.0 - i) / 90.0);
    EXPECT_NEAR(s.lr_at(i), 1e-3 * gamma, 1e-18) << i;
  }
  EXPECT_DOUBLE_EQ(s.lr_at(100), 0.0);
}

TEST(LrSchedule, DeepSpeedWarmupCosineLR) {
  LrScheduleOptions o = deepspeed(ScheduleKind::kDsWarmupCosine, 2e-3, 20, 200, 0.0, false);
  o.warmup_min_ratio = 0.1;
  o.cos_min_ratio = 0.01;
  const LrSchedule s(o);
  for (int i = 0; i < 220; ++i) {
    double ratio;
    if (i < 20) {
      ratio = 0.1 + 0.9 * (i / 20.0);
    } else {
      const double c = (1 + std::cos(std::numbers::pi * (i - 20 + 1) / 180.0)) / 2;
      ratio = std::max(0.0, 0.01 + 0.99 * c);
    }
    EXPECT_NEAR(s.lr_at(i), 2e-3 * ratio, 1e-18) << i;
  }
  EXPECT_THROW(LrSchedule(deepspeed(ScheduleKind::kDsWarmupCosine, 1e-3, 10, 10, 0.0, true)), std::invalid_argument);
}

// Hugging Face's get_linear/cosine/constant_schedule_with_warmup: the warmup starts from 0
// (lr · s / W), then decays to 0 over the remaining steps.
TEST(LrSchedule, HuggingFaceWarmupFromZero) {
  LrScheduleOptions lin{ScheduleKind::kLinear, 5e-5, 10, 100, 0.0};
  lin.warmup_start = WarmupStart::kZero;
  LrScheduleOptions cos = lin, constant = lin;
  cos.kind = ScheduleKind::kCosine;
  constant.kind = ScheduleKind::kConstant;
  const LrSchedule l(lin), c(cos), k(constant);
  for (int i = 0; i < 110; ++i) {
    const double warm = i / 10.0, progress = std::clamp((i - 10) / 90.0, 0.0, 1.0);
    EXPECT_NEAR(l.lr_at(i), 5e-5 * (i < 10 ? warm : std::max(0.0, (100.0 - i) / 90.0)), 1e-20) << i;
    EXPECT_NEAR(c.lr_at(i), 5e-5 * (i < 10 ? warm : 0.5 * (1 + std::cos(std::numbers::pi * progress))), 1e-20) << i;
    EXPECT_NEAR(k.lr_at(i), 5e-5 * (i < 10 ? warm : 1.0), 1e-20) << i;
  }
}

TEST(LrScaling, LinearAndSqrtFollowTheRatioOfBatches) {
  EXPECT_EQ(lr_scale(LrScaling::kNone, 512, 32), 1.0);
  EXPECT_EQ(lr_scale(LrScaling::kLinear, 512, 32), 16.0);
  EXPECT_EQ(lr_scale(LrScaling::kSqrt, 512, 32), 4.0);
  EXPECT_DOUBLE_EQ(lr_scale(LrScaling::kSqrt, 16, 32), std::sqrt(0.5));  // a smaller batch lowers it
  EXPECT_THROW(lr_scale(LrScaling::kLinear, 512, 0), ConfigError);
  EXPECT_THROW(lr_scale(LrScaling::kLinear, 512, -1), ConfigError);
  EXPECT_THROW(lr_scale(LrScaling::kLinear, 0, 32), ConfigError);
  EXPECT_EQ(parse_lr_scaling("sqrt"), LrScaling::kSqrt);
  EXPECT_THROW(parse_lr_scaling("Linear"), ConfigError);
}

TEST(LrScaling, AdaScaleGainLiesBetweenOneAndTheScale) {
  // No noise: r = 1 (a larger batch buys nothing); all noise: r = S; B_noise = B0: r = 2S / (S + 1).
  EXPECT_EQ(adascale_gain(0.0, 1.0, 256, 32), 1.0);
  EXPECT_DOUBLE_EQ(adascale_gain(1e12, 1e-12, 256, 32), 8.0);
  EXPECT_DOUBLE_EQ(adascale_gain(32.0, 1.0, 256, 32), 2.0 / (1.0 / 8.0 + 1.0));
  EXPECT_EQ(adascale_gain(5.0, 0.0, 256, 32), 1.0) << "no estimate yet";
  EXPECT_THROW(lr_scale(LrScaling::kAdaScale, 256, 32), ConfigError);
}

TEST(LrSchedule, FractionalPositionsAgreeWithWholeSteps) {
  LrScheduleOptions o{ScheduleKind::kCosine, 0.1, 4, 40, 0.01};
  LrSchedule s(o);
  for (int64_t k = 0; k <= 40; ++k) EXPECT_EQ(s.lr_at_position(static_cast<double>(k)), s.lr_at(k)) << k;
  EXPECT_GT(s.lr_at_position(10.5), s.lr_at(11));
  EXPECT_LT(s.lr_at_position(10.5), s.lr_at(10));
  o.kind = ScheduleKind::kDsWarmupCosine;
  EXPECT_THROW(LrSchedule(o).lr_at_position(1.5), ConfigError);
}

}  // namespace
}  // namespace gradacc
