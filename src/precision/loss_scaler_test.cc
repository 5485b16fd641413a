// The dynamic loss scale: growth after `interval` good windows, backoff and a skip on overflow,
// its state through a checkpoint, and refused options.
#include "precision/loss_scaler.h"

#include <cmath>

#include <gtest/gtest.h>

namespace gradacc {
namespace {

TEST(LossScaler, GrowsAfterTheIntervalAndBacksOffOnOverflow) {
  LossScaler s(LossScalerOptions().init_scale_(256).growth_interval_(3));
  s.update(false);
  s.update(false);
  EXPECT_EQ(s.scale(), 256);
  s.update(false);
  EXPECT_EQ(s.scale(), 512);
  EXPECT_EQ(s.growth_tracker(), 0);
  s.update(false);
  s.update(true);  // an overflow resets the run of good windows
  EXPECT_EQ(s.scale(), 256);
  EXPECT_EQ(s.skipped_steps(), 1);
  EXPECT_EQ(s.growth_tracker(), 0);
}

TEST(LossScaler, StateRoundTripsExactlyAndBadStateIsRefused) {
  LossScaler a(LossScalerOptions().init_scale_(1.0 / 3.0).growth_interval_(2));
  a.update(false);
  a.update(true);
  a.update(false);
  LossScaler b(LossScalerOptions().growth_interval_(2));
  b.load_state(a.state());
  EXPECT_EQ(b.scale(), a.scale());  // the double reads back to the same bits
  EXPECT_EQ(b.skipped_steps(), 1);
  EXPECT_EQ(b.growth_tracker(), 1);
  auto bad = a.state();
  bad["loss_scale"] = "inf";
  EXPECT_THROW(b.load_state(bad), std::invalid_argument);
  bad = a.state();
  bad.erase("loss_scale_skipped_steps");
  EXPECT_THROW(b.load_state(bad), std::invalid_argument);
}

TEST(LossScaler, RefusesOptionsThatCannotWork) {
  EXPECT_THROW(LossScaler(LossScalerOptions().init_scale_(0)), std::invalid_argument);
  EXPECT_THROW(LossScaler(LossScalerOptions().init_scale_(INFINITY)), std::invalid_argument);
  EXPECT_THROW(LossScaler(LossScalerOptions().growth_factor_(1.0)), std::invalid_argument);
  EXPECT_THROW(LossScaler(LossScalerOptions().backoff_factor_(1.0)), std::invalid_argument);
  EXPECT_THROW(LossScaler(LossScalerOptions().growth_interval_(0)), std::invalid_argument);
}

// DeepSpeed's dynamic scaler (fp16.hysteresis, min_loss_scale, loss_scale): an overflow backs off
// only when the hysteresis is used up; it refills when the scale grows; the scale never goes
// below the floor; a static scale never moves, and overflows still skip.
TEST(LossScaler, HysteresisFloorAndStaticScaleAsDeepSpeed) {
  LossScalerOptions o;
  o.init_scale = 8;
  o.growth_interval = 3;
  o.hysteresis = 2;
  o.min_scale = 2;
  LossScaler s(o);
  s.update(true);  // tolerated
  EXPECT_EQ(s.scale(), 8);
  s.update(true);  // hysteresis used up
  EXPECT_EQ(s.scale(), 4);
  s.update(true);  // still used up: every further overflow backs off
  EXPECT_EQ(s.scale(), 2);
  s.update(true);  // the floor
  EXPECT_EQ(s.scale(), 2);
  for (int i = 0; i < 3; ++i) s.update(false);
  EXPECT_EQ(s.scale(), 4);  // grown, hysteresis refilled
  s.update(true);
  EXPECT_EQ(s.scale(), 4);
  EXPECT_EQ(s.skipped_steps(), 5);
  LossScaler copy(o);
  copy.load_state(s.state());  // the hysteresis left travels with checkpoints
  s.update(true);
  copy.update(true);
  EXPECT_EQ(copy.scale(), s.scale());
  EXPECT_EQ(s.scale(), 2);

  LossScalerOptions fixed;
  fixed.init_scale = 128;
  fixed.dynamic = false;
  LossScaler f(fixed);
  f.update(true);
  for (int i = 0; i < 5000; ++i) f.update(false);
  EXPECT_EQ(f.scale(), 128);
  EXPECT_EQ(f.skipped_steps(), 1);
  LossScalerOptions bad;
  bad.hysteresis = 0;
  EXPECT_THROW(LossScaler{bad}, std::invalid_argument);
}

}  // namespace
}  // namespace gradacc
