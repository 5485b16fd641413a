#include "gradacc/data/window_sampler.h"

#include <algorithm>
#include <set>

#include <gtest/gtest.h>

namespace gradacc {
namespace {

TEST(WindowSampler, EpochOrderIsASeededReproduciblePermutation) {
  const BatchPlan p = BatchPlan::resolve({16, 4, std::nullopt, std::nullopt});
  const WindowSampler a(100, p, {true, 7, false, 0}), b(100, p, {true, 7, false, 0}), c(100, p, {true, 8, false, 0});
  auto o = a.epoch_order(0);
  EXPECT_EQ(o, b.epoch_order(0));
  EXPECT_NE(o, c.epoch_order(0));
  EXPECT_NE(o, a.epoch_order(1));
  std::sort(o.begin(), o.end());
  for (int64_t i = 0; i < 100; ++i) EXPECT_EQ(o[i], i);
  const WindowSampler plain(100, p, {false, 7, false, 0});
  EXPECT_EQ(plain.epoch_order(3)[42], 42);
}

TEST(WindowSampler, CutsWindowsIntoMicroBatchesWithAShortLastWindow) {
  const BatchPlan p = BatchPlan::resolve({16, 4, std::nullopt, std::nullopt});
  const WindowSampler s(40, p, {false, 0, false, 0});
  ASSERT_EQ(s.windows_per_epoch(), 3);
  const auto order = s.epoch_order(0);
  const Window w0 = s.window(order, 0, 0);
  ASSERT_EQ(w0.micro_batches.size(), 4u);
  EXPECT_EQ(w0.micro_batches[1], (std::vector<int64_t>{4, 5, 6, 7}));
  const Window last = s.window(order, 0, 2);
  EXPECT_EQ(last.global_samples, 8);
  ASSERT_EQ(last.micro_batches.size(), 2u);
  EXPECT_EQ(last.micro_batches[1], (std::vector<int64_t>{36, 37, 38, 39}));
  const WindowSampler dropping(40, p, {false, 0, true, 0});
  EXPECT_EQ(dropping.windows_per_epoch(), 2);
  EXPECT_THROW(dropping.window(order, 0, 2), std::out_of_range);
}

TEST(WindowSampler, RanksGetDisjointSlicesAndTheSameNumberOfMicroBatches) {
  const BatchPlan p = BatchPlan::resolve({16, 4, std::nullopt, 2});
  for (int64_t window : {0, 1, 2}) {  // full, full, short (37 = 16 + 16 + 5)
    std::multiset<int64_t> seen;
    size_t micro_count = 0;
    for (int64_t rank : {0, 1}) {
      const WindowSampler s(37, p, {true, 3, false, rank});
      const Window w = s.window(s.epoch_order(0), 0, window);
      if (rank == 0) micro_count = w.micro_batches.size();
      EXPECT_EQ(w.micro_batches.size(), micro_count);
      for (const auto& mb : w.micro_batches) seen.insert(mb.begin(), mb.end());
    }
    const WindowSampler s0(37, p, {true, 3, false, 0});
    const auto order = s0.epoch_order(0);
    const std::multiset<int64_t> expected(order.begin() + window * 16,
                                          order.begin() + std::min<int64_t>(37, (window + 1) * 16));
    EXPECT_EQ(seen, expected) << "window " << window;
  }
}

TEST(WindowSampler, AnUnevenPlanEndsEachRanksShareWithAShorterMicroBatch) {
  // 256 in micro-batches of 60 on one rank: 60, 60, 60, 60, 16.
  const BatchPlan one = BatchPlan::resolve({256, 60, std::nullopt, 1, /*short_last_micro=*/true});
  EXPECT_EQ(one.accumulation_steps, 5);
  EXPECT_FALSE(one.even());
  const WindowSampler s(1000, one, {false, 0, false, 0});
  const Window w = s.window(s.epoch_order(0), 0, 1);
  std::vector<size_t> sizes;
  for (const auto& m : w.micro_batches) sizes.push_back(m.size());
  EXPECT_EQ(sizes, (std::vector<size_t>{60, 60, 60, 60, 16}));
  EXPECT_EQ(w.micro_batches.front().front(), 256);  // window 1 starts after the first 256
  // 250 over 3 ranks in micro-batches of 40: shares of 84, 84, 82; three micro-batches each; the
  // union is the window, once.
  const BatchPlan three = BatchPlan::resolve({250, 40, std::nullopt, 3, true});
  EXPECT_EQ(three.accumulation_steps, 3);
  std::vector<int64_t> seen;
  for (int64_t rank = 0; rank < 3; ++rank) {
    const WindowSampler r(1000, three, {true, 3, false, rank});
    const Window x = r.window(r.epoch_order(0), 0, 0);
    ASSERT_EQ(x.micro_batches.size(), 3u);
    EXPECT_EQ(x.global_samples, 250);
    for (const auto& m : x.micro_batches) seen.insert(seen.end(), m.begin(), m.end());
  }
  std::vector<int64_t> expected = WindowSampler(1000, three, {true, 3, false, 0}).epoch_order(0);
  expected.resize(250);
  std::sort(seen.begin(), seen.end());
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(seen, expected);
  // Without short_last_micro the same request is refused.
  EXPECT_THROW(BatchPlan::resolve({256, 60, std::nullopt, 1}), PlanError);
}

}  // namespace
}  // namespace gradacc
