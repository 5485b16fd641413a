// BatchPlan: the four numbers of a data-parallel, accumulated batch, resolved and checked.
//
//   global_batch = micro_batch × accumulation_steps × world_size
//
// Users name any consistent subset (DeepSpeed semantics: any two of global, micro and
// accumulation give the third; world size defaults to 1). `resolve` fills in the rest or throws
// PlanError naming the fields and numbers that do not fit. A resolved plan satisfies the identity
// above with every field ≥ 1 — except a plan made with `short_last_micro` (what the memory planner
// asks for): there the micro-batch need not divide the window, accumulation_steps is
// ⌈global / (micro × world)⌉, and each rank's last micro-batch of a window is shorter. That stays
// exact, since a window is normalized by its real count, never by micro × accumulation.
//
// Thread safety: plain values; no shared state.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include "gradacc/errors.h"

namespace gradacc {

// What the user asked for. Unset fields are derived.
struct BatchPlanRequest {
  std::optional<int64_t> global_batch;
  std::optional<int64_t> micro_batch;
  std::optional<int64_t> accumulation_steps;
  std::optional<int64_t> world_size;
  // Global and micro given: a micro-batch that does not divide the window is allowed (the last
  // one of each rank is shorter) instead of refused.
  bool short_last_micro = false;
};

struct BatchPlan {
  int64_t global_batch = 1;
  int64_t micro_batch = 1;
  int64_t accumulation_steps = 1;
  int64_t world_size = 1;

  // Samples one rank sees per optimizer step (at most: a rank's share of an uneven window is less).
  int64_t rank_batch() const { return micro_batch * accumulation_steps; }
  // True when micro × accumulation × world = global (every micro-batch full).
  bool even() const { return micro_batch * accumulation_steps * world_size == global_batch; }

  static BatchPlan resolve(const BatchPlanRequest& request);
};

// How an epoch of `dataset_size` samples splits into optimizer steps ("windows") under a plan.
struct EpochLayout {
  int64_t full_windows = 0;         // windows holding exactly global_batch samples
  int64_t partial_window_size = 0;  // samples in the last, short window (0: none)
  bool partial_dropped = false;     // the short window is skipped (option `drop`)
  int64_t windows() const { return full_windows + ((partial_window_size > 0 && !partial_dropped) ? 1 : 0); }
  // Micro-batches in the short window (the last one may itself be short).
  int64_t partial_micro_batches(const BatchPlan& plan) const;

  static EpochLayout of(const BatchPlan& plan, int64_t dataset_size, bool drop_partial);
};

std::string describe(const BatchPlan& plan);

}  // namespace gradacc
