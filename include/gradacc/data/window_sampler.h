// WindowSampler: which examples go into which micro-batch of which optimizer step.
//
// Each epoch is a permutation of the data set (seeded, reproducible on every platform: our own
// Fisher–Yates over splitmix64, not std::shuffle whose algorithm the standard leaves open). The
// permutation is cut into windows of `global_batch` examples — one window per optimizer step —
// and the last window holds the remainder (or is dropped with `drop_partial`). A window is split
// into equal contiguous slices of ⌈samples / world⌉, one per rank, and each slice into
// micro-batches of `micro_batch` (the last one shorter when it does not divide the slice).
//
// Invariants: every rank sees the same number of micro-batches in a window (a rank whose slice of
// a short window runs out gets empty micro-batches), slices of different ranks are disjoint, and
// the union over ranks of one window is exactly that window's examples.
//
// Thread safety: const methods are safe to call concurrently.
#pragma once

#include <cstdint>
#include <vector>

#include "gradacc/accumulate/batch_plan.h"

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

class WindowSampler {
 public:
  WindowSampler(int64_t dataset_size, BatchPlan plan, WindowSamplerOptions options);

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

 private:
  int64_t dataset_size_;
  BatchPlan plan_;
  WindowSamplerOptions options_;
  EpochLayout layout_;
};

}  // namespace gradacc
