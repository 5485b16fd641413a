#include "train/lr_scaling.h"

#include <gtest/gtest.h>

#include "gradacc/errors.h"

namespace gradacc {
namespace {

// Tokens: B is samples × tokens per sample; the checkpoint carries the last batch exactly, and a
// resume at another batch says how the factor changes.
TEST(LrScaling, TheScalerCountsTokensAndSaysWhenAResumeChangesTheBatch) {
  LrScaler tokens(LrScaling::kLinear, 1024, 64);
  EXPECT_EQ(tokens.factor(32), 2.0);  // 32 × 64 / 1024
  LrScaler resumed(LrScaling::kLinear, 1024, 64);
  resumed.load_state(tokens.state());
  EXPECT_FALSE(resumed.resume_note(32)) << "the same batch: nothing to say";
  const std::optional<std::string> note = resumed.resume_note(16);
  ASSERT_TRUE(note);
  EXPECT_NE(note->find("from 2 to 1"), std::string::npos) << *note;
  LrScaler fresh(LrScaling::kSqrt, 16, 1);
  fresh.load_state({});  // a checkpoint of a run without scaling
  EXPECT_FALSE(fresh.resume_note(64));
  EXPECT_THROW(fresh.load_state({{"lr_scaling_batch", "many"}}), ConfigError);
  EXPECT_THROW(LrScaler(LrScaling::kSqrt, 0, 1), ConfigError);
}

// AdaScale: the position advances by each factor; the run is finished at the schedule's length.
TEST(LrScaling, AdaScaleAdvancesTheScheduleByItsGain) {
  NoiseScaleEstimator noise(0.0);
  EXPECT_THROW(LrScaler(LrScaling::kAdaScale, 32, 1), ConfigError) << "no estimator";
  LrScaler ada(LrScaling::kAdaScale, 32, 1, &noise, 10);
  EXPECT_EQ(ada.factor(256), 1.0) << "no estimate yet";
  noise.update(/*small_sq=*/2.0, /*b_small=*/32, /*big_sq=*/1.0, /*b_big=*/256);
  const double r = ada.factor(256);
  EXPECT_GT(r, 1.0);
  EXPECT_LE(r, 8.0);
  EXPECT_EQ(*ada.schedule_position(), 0.0);
  ada.advance(r);
  EXPECT_EQ(*ada.schedule_position(), r);
  LrScaler resumed(LrScaling::kAdaScale, 32, 1, &noise, 10);
  resumed.load_state(ada.state());
  EXPECT_EQ(*resumed.schedule_position(), r) << "a resume goes on from the same position";
  while (!ada.finished()) ada.advance(r);
  EXPECT_GE(*ada.schedule_position(), 10.0);
  LrScaler linear(LrScaling::kLinear, 32, 1);
  EXPECT_FALSE(linear.schedule_position());
  linear.advance(4.0);
  EXPECT_FALSE(linear.finished());
}

}  // namespace
}  // namespace gradacc
