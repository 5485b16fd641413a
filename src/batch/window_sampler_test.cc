#include "batch/window_sampler.h"

#include <algorithm>
#include <iostream>
#include <set>

#include <gtest/gtest.h>

#include "batch/packing.h"
#include "gradacc/errors.h"

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

TEST(TokenBudget, CutsEachShareLongestFirstWithinTheBudget) {
  // Lengths 1..40 in a shuffled order; windows of 16, budget 64 tokens (rows × longest row).
  std::vector<int64_t> lengths(40);
  for (int64_t i = 0; i < 40; ++i) lengths[i] = 1 + (i * 17) % 40;
  const auto shared = std::make_shared<const std::vector<int64_t>>(lengths);
  const BatchPlan p = BatchPlan::resolve({16, 16, std::nullopt, std::nullopt});
  const WindowSampler s(40, p, {true, 3, false, 0}, TokenBudget{64, shared, false});
  const WindowSampler fixed(40, p, {true, 3, false, 0});
  const auto order = s.epoch_order(0);
  for (int64_t w = 0; w < s.windows_per_epoch(); ++w) {
    const Window cut = s.window(order, 0, w), whole = fixed.window(order, 0, w);
    std::vector<int64_t> seen;
    int64_t previous_longest = 1 << 30;
    for (const auto& m : cut.micro_batches) {
      ASSERT_FALSE(m.empty());
      int64_t longest = 0;
      for (int64_t i : m) longest = std::max(longest, lengths[i]);
      EXPECT_LE(static_cast<int64_t>(m.size()) * longest, 64);
      EXPECT_EQ(lengths[m.front()], longest);  // longest first within, and across micro-batches
      EXPECT_LE(longest, previous_longest);
      previous_longest = longest;
      seen.insert(seen.end(), m.begin(), m.end());
    }
    std::vector<int64_t> want = whole.micro_batches.front();  // the window's membership is unchanged
    std::sort(seen.begin(), seen.end());
    std::sort(want.begin(), want.end());
    EXPECT_EQ(seen, want) << "window " << w;
  }
  // Greedy: the 40-token sequence alone, then two of ≤ 32, ... and a 65-token budget error.
  EXPECT_EQ(cut_by_tokens({0, 1, 2}, {40, 30, 32}, 64), (std::vector<std::vector<int64_t>>{{0}, {2, 1}}));
  EXPECT_THROW(cut_by_tokens({0}, {65}, 64), PlanError);
}

TEST(TokenBudget, DataParallelSharesAreCutApartAndPaddedToTheBusiestRankOnlyWhenAsked) {
  std::vector<int64_t> lengths(32, 4);
  for (int64_t i = 0; i < 8; ++i) lengths[i] = 32;  // rank 0's share of the first window: all long
  const auto shared = std::make_shared<const std::vector<int64_t>>(lengths);
  const BatchPlan p = BatchPlan::resolve({16, 8, std::nullopt, 2});
  auto window = [&](int64_t rank, bool same) {
    const WindowSampler s(32, p, {false, 0, false, rank}, TokenBudget{64, shared, same});
    return s.window(s.epoch_order(0), 0, 0);
  };
  EXPECT_EQ(window(0, false).micro_batches.size(), 4u);  // 8 rows of 32: 2 per micro-batch
  EXPECT_EQ(window(1, false).micro_batches.size(), 1u);  // 8 rows of 4 fit in one
  const Window padded = window(1, true);
  ASSERT_EQ(padded.micro_batches.size(), 4u);
  EXPECT_EQ(padded.micro_batches[0].size(), 8u);
  EXPECT_TRUE(padded.micro_batches[3].empty());
}

TEST(TokenBudget, PackedMicroBatchesFillTheirRowsAndPackAsGatherWill) {
  // 60 sequences of 1..64 tokens, rows of 64, budget 4 rows: every micro-batch's first-fit
  // decreasing packing needs at most 4 rows, and nearly all of them are full.
  std::vector<int64_t> lengths(60), slice(60);
  for (int64_t i = 0; i < 60; ++i) lengths[i] = 1 + (i * 37) % 64, slice[i] = i;
  const auto micro = cut_by_tokens(slice, lengths, 256, 64);
  std::vector<int64_t> seen;
  int64_t real = 0, computed = 0;
  for (const auto& m : micro) {
    const auto rows = pack_rows(m, lengths, 64).rows;
    EXPECT_LE(rows.size(), 4u);
    int64_t width = 0;
    for (const auto& row : rows) {
      int64_t fill = 0;
      for (int64_t i : row) fill += lengths[i];
      width = std::max(width, fill);
      real += fill;
    }
    computed += static_cast<int64_t>(rows.size()) * width;
    seen.insert(seen.end(), m.begin(), m.end());
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, slice);
  std::cout << "    " << micro.size() << " micro-batches, padding " << 1.0 - double(real) / double(computed) << "\n";
  EXPECT_LT(1.0 - static_cast<double>(real) / static_cast<double>(computed), 0.05);
  EXPECT_THROW(cut_by_tokens(slice, lengths, 32, 64), PlanError);  // no row fits the budget
}

}  // namespace
}  // namespace gradacc
