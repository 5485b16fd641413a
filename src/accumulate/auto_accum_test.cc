// Accumulation that follows the noise scale: the rule (rounding, units, bounds), when it decides,
// and its state in checkpoints. The run-level tests — a resumed run that takes the same decisions
// bit for bit, and the flags' bad input — are in run/checkpoint_test.cc and tests/cli_bad_input.sh.
#include "accumulate/auto_accum.h"

#include <gtest/gtest.h>

namespace gradacc {
namespace {

AutoAccumOptions options(int64_t micro, int64_t world) {
  AutoAccumOptions o;
  o.min_accum = 2;
  o.max_accum = 16;
  o.warmup = 10;
  o.interval = 5;
  o.micro_batch = micro;
  o.world_size = world;
  return o;
}

StepReport report(int64_t step, double noise_scale, int64_t samples, int64_t items) {
  StepReport r;
  r.step = step;
  r.noise_measured = true;
  r.noise_scale = noise_scale;
  r.samples = samples;
  r.items = items;
  return r;
}

TEST(AutoAccum, TheGlobalBatchTracksTheNoiseScaleInWholeMicroBatches) {
  const AutoAccum a(options(8, 2));       // 16 examples per micro-batch step over the ranks
  EXPECT_EQ(a.target(100.0, 64, 64), 6);  // 100 / 16 = 6.25
  EXPECT_EQ(a.target(120.0, 64, 64), 8);  // 7.5 rounds to 8
  EXPECT_EQ(a.target(10.0, 64, 64), 2);   // below the floor
  EXPECT_EQ(a.target(1e9, 64, 64), 16);   // above the ceiling
  EXPECT_EQ(a.target(-3.0, 64, 64), 2);   // a negative |G|² estimate: no information
  EXPECT_EQ(a.target(0.0, 64, 64), 2);    // not measured yet
  // Text: the noise scale counts tokens; 64 sequences of 100 real tokens → 12800 tokens = 128 sequences.
  EXPECT_EQ(a.target(12800.0, 64, 6400), 8);
}

TEST(AutoAccum, DecidesAfterTheWarmupAndThenEveryIntervalOnly) {
  AutoAccum a(options(8, 1));
  EXPECT_EQ(a.current(), 2);
  for (int64_t s = 1; s < 10; ++s) EXPECT_FALSE(a.after_step(report(s, 80.0, 32, 32))) << s;
  EXPECT_EQ(a.current(), 2);
  EXPECT_TRUE(a.after_step(report(10, 80.0, 32, 32)));  // 80 / 8 = 10
  EXPECT_EQ(a.current(), 10);
  for (int64_t s = 11; s < 15; ++s) a.after_step(report(s, 24.0, 32, 32));
  EXPECT_EQ(a.current(), 10);  // held between decisions
  EXPECT_TRUE(a.after_step(report(15, 24.0, 32, 32)));
  EXPECT_EQ(a.current(), 3);                             // it follows the noise scale down as well
  EXPECT_FALSE(a.after_step(report(20, 24.0, 32, 32)));  // a decision that keeps it
  StepReport unmeasured = report(25, 500.0, 32, 32);
  unmeasured.noise_measured = false;
  EXPECT_FALSE(a.after_step(unmeasured));
  EXPECT_EQ(a.current(), 3);
}

TEST(AutoAccum, StateRoundTripsAndBadStateIsRefused) {
  AutoAccum a(options(8, 1));
  a.after_step(report(10, 96.0, 32, 32));
  AutoAccum b(options(8, 1));
  b.load_state(a.state());
  EXPECT_EQ(b.current(), 12);
  EXPECT_FALSE(b.after_step(report(10, 8.0, 32, 32)));  // step 10 was decided already
  EXPECT_EQ(b.current(), 12);
  AutoAccum fresh(options(8, 1));
  fresh.load_state({});
  EXPECT_EQ(fresh.current(), 2);
  EXPECT_THROW(fresh.load_state({{"accum_auto_current", "99"}, {"accum_auto_last_decision", "10"}}),
               std::invalid_argument);  // outside [2, 16]: another run's checkpoint
  EXPECT_THROW(fresh.load_state({{"accum_auto_current", "x"}, {"accum_auto_last_decision", "10"}}),
               std::invalid_argument);
  EXPECT_THROW(fresh.load_state({{"accum_auto_current", "4"}}), std::invalid_argument);
}

TEST(AutoAccum, SpecsAndOptionsAreChecked) {
  const AutoAccumOptions base = options(8, 1);
  EXPECT_EQ(parse_auto_accum("auto", base).max_accum, 16);
  EXPECT_EQ(parse_auto_accum("auto:32", base).max_accum, 32);
  const AutoAccumOptions both = parse_auto_accum("auto:4:32", base);
  EXPECT_EQ(both.min_accum, 4);
  EXPECT_EQ(both.max_accum, 32);
  for (const char* bad : {"automatic", "auto:", "auto:x", "auto:8:4", "auto:0:4", "auto:1:2:3", "8"})
    EXPECT_THROW(parse_auto_accum(bad, base), std::invalid_argument) << bad;
  AutoAccumOptions o = base;
  o.interval = 0;
  EXPECT_THROW(AutoAccum{o}, std::invalid_argument);
  o = base;
  o.max_accum = 1;
  EXPECT_THROW(AutoAccum{o}, std::invalid_argument);
}

}  // namespace
}  // namespace gradacc
