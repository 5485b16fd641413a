// WindowSampler: which examples go into which micro-batch of which optimizer step.
//
// Each epoch is a permutation of the data set (seeded, reproducible on every platform: our own
// Fisher–Yates over splitmix64, not std::shuffle whose algorithm the standard leaves open). The
// permutation is cut into windows of `global_batch` examples — one window per optimizer step —
// and the last window holds the remainder (or is dropped with `drop_partial`). A window is split
// into equal contiguous slices of ⌈samples / world⌉, one per rank, and each slice into
// micro-batches of `micro_batch` (the last one shorter when it does not divide the slice).
//
// Token-budget micro-batches (TokenBudget): the windows and slices stay the same, but each rank's
// slice is sorted by length (longest first) and cut greedily into micro-batches whose rows ×
// longest row stay within the budget: many short sequences, or few long ones. The window gradient
// is normalized by the window's real count, so how a window is grouped does not change it.
//
// Invariants: slices of different ranks are disjoint, and the union over ranks of one window is
// exactly that window's examples. Every rank sees the same number of micro-batches in a window (a
// rank whose slice of a short window runs out gets empty micro-batches), except with a token
// budget that does not ask for it (per-window sync, where nothing collective runs per micro-batch).
//
// Thread safety: const methods are safe to call concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "gradacc/batch_plan.h"

namespace gradacc {

struct WindowSamplerOptions {
  bool shuffle = true;
  uint64_t seed = 0;
  bool drop_partial = false;
  int64_t rank = 0;
};

struct Window {
  int64_t epoch = 0;
  int64_t index = 0;                                // window number within the epoch
  int64_t global_samples = 0;                       // examples in the window over all ranks
  std::vector<std::vector<int64_t>> micro_batches;  // this rank's, in order; some may be empty
};

struct TokenBudget {
  int64_t tokens = 0;                                   // rows × longest row per micro-batch; 0: off
  std::shared_ptr<const std::vector<int64_t>> lengths;  // Dataset::lengths()
  bool same_count_on_every_rank = false;                // pad with empty micro-batches to the busiest rank's count
  int64_t packed_row_length = 0;  // packed data (Dataset::packed_row_length): rows × row length ≤ budget
};

// One rank's share of a window in micro-batches of at most `budget` tokens (rows × longest row),
// longest first; ties keep the slice's order. With `packed_row_length`, the rows are packed
// (data/packing.h) and a micro-batch takes sequences while its packed rows × row length fit.
// Throws PlanError for a sequence longer than the budget (or the row).
std::vector<std::vector<int64_t>> cut_by_tokens(std::vector<int64_t> slice, const std::vector<int64_t>& lengths,
                                                int64_t budget, int64_t packed_row_length = 0);

class WindowSampler {
 public:
  // With `tokens`, the plan's micro-batch is the whole share (⌈global / world⌉).
  WindowSampler(int64_t dataset_size, BatchPlan plan, WindowSamplerOptions options, TokenBudget tokens = {});

  const EpochLayout& layout() const { return layout_; }
  const BatchPlan& plan() const { return plan_; }
  int64_t windows_per_epoch() const { return layout_.windows(); }

  // The order of the whole data set in `epoch`.
  std::vector<int64_t> epoch_order(int64_t epoch) const;
  // Window `index` of `epoch`, cut for this sampler's rank.
  Window window(const std::vector<int64_t>& order, int64_t epoch, int64_t index) const;
  // The window starting at position `begin` of the epoch's order: up to global_batch examples when
  // `accumulation_steps` is the plan's, else up to micro_batch × accumulation_steps × world_size
  // (windows whose size changes: AccumSchedule).
  Window window_at(const std::vector<int64_t>& order, int64_t epoch, int64_t index, int64_t begin,
                   int64_t accumulation_steps) const;
  int64_t dataset_size() const { return dataset_size_; }
  bool drop_partial() const { return options_.drop_partial; }
  const WindowSamplerOptions& options() const { return options_; }
  const TokenBudget& token_budget() const { return tokens_; }

 private:
  int64_t dataset_size_;
  BatchPlan plan_;
  WindowSamplerOptions options_;
  TokenBudget tokens_;
  EpochLayout layout_;
};

}  // namespace gradacc
