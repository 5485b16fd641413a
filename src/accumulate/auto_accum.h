// AutoAccum: accumulation that follows the measured gradient noise scale (`--accum auto[:MAX]`).
//
// The noise scale B_simple (noise_scale.h) is the batch beyond which a larger batch stops buying
// proportionally fewer optimizer steps (McCandlish et al. 2018, §2.2 and appendix A; their
// B_crit tracks B_simple within a small factor). A run whose global batch tracks it spends neither
// steps (batch far below it) nor examples (far above it). The rule, with the micro-batch fixed:
//
//   after `warmup` optimizer steps, and then every `interval` steps (at steps K, K+M, K+2M, ...):
//     B_examples = B_simple × samples / items of the window just run  (tokens → sequences for text)
//     accum      = clamp(round(B_examples / (micro_batch × world_size)), min_accum, max_accum)
//
// and the accumulation holds between decisions. The inputs are the estimator's moving averages,
// which every rank holds identically (the accumulator sums the ranks' measurements), so all ranks
// take the same decision without a collective of their own. Normalization stays exact (each
// window is divided by its real count) and the LR schedule counts optimizer steps, as with a fixed
// accumulation schedule (accum_schedule.h). The LR follows the batch only with --lr-scaling
// (train/lr_scaling.h).
//
// The state (the current accumulation and the step of the last decision) is two integers,
// carried in checkpoints: a resumed run takes the same decisions as one that never stopped.
//
// Thread safety: none; owned by one training loop.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "base/stateful.h"
#include "gradacc/step_report.h"

namespace gradacc {

struct AutoAccumOptions {
  int64_t min_accum = 2;    // where the run starts, and the floor
  int64_t max_accum = 64;   // the ceiling (`auto:MAX`)
  int64_t warmup = 20;      // optimizer steps before the first decision (the EMAs settle)
  int64_t interval = 10;    // optimizer steps between decisions
  int64_t micro_batch = 1;  // examples per micro-batch, per rank
  int64_t world_size = 1;
};

class AutoAccum : public Stateful {
 public:
  // Throws ConfigError unless 1 ≤ min ≤ max, warmup ≥ 0, interval ≥ 1, micro ≥ 1, world ≥ 1.
  explicit AutoAccum(AutoAccumOptions options);

  // Micro-batches per rank for the next window.
  int64_t current() const { return current_; }
  // After the optimizer step `report.step` (1-based): on a decision step, sets the accumulation of
  // the windows that follow from the report's noise scale. Returns true when it changed.
  bool after_step(const StepReport& report);
  // The accumulation the rule picks for a noise scale of `noise_scale` counts, measured on a
  // window of `samples` examples holding `items` counted items.
  int64_t target(double noise_scale, int64_t samples, int64_t items) const;
  const AutoAccumOptions& options() const { return o_; }

  // For checkpoints ("accum_auto_*" entries).
  std::map<std::string, std::string> state() const override;
  // Absent entries: a fresh start. Throws ConfigError on a malformed or out-of-range value.
  void load_state(const std::map<std::string, std::string>& state) override;

 private:
  AutoAccumOptions o_;
  int64_t current_;
  int64_t last_decision_ = 0;  // optimizer step of the last decision (0: none yet)
};

// "auto", "auto:MAX" or "auto:MIN:MAX" → the bounds (the rest of `base` kept). Throws
// ConfigError naming what is wrong.
AutoAccumOptions parse_auto_accum(const std::string& spec, AutoAccumOptions base);

}  // namespace gradacc
