// Learning-rate schedules counted in optimizer steps (never in micro-batches).
//
//   warmup: step s < W         lr = base · (s + 1) / W
//   decay:  p = (s − W) / (T − W) ∈ [0, 1]
//           constant  lr = base
//           cosine    lr = floor + (base − floor) · ½ (1 + cos π p)
//           linear    lr = base + (floor − base) · p
//
// T is the number of optimizer steps of the whole run, so a run of 1000 optimizer steps with
// accumulation 4 decays over 1000 steps, not 250. The schedule is a pure function of the step;
// its only state is the step counter the caller keeps (which makes it trivially resumable).
#pragma once

#include <cstdint>
#include <string>

namespace gradacc {

enum class ScheduleKind { kConstant, kCosine, kLinear };
ScheduleKind parse_schedule(const std::string& name);  // "constant" | "cosine" | "linear"
std::string to_string(ScheduleKind kind);

struct LrScheduleOptions {
  ScheduleKind kind = ScheduleKind::kConstant;
  double base_lr = 1e-3;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  double min_lr = 0.0;  // the floor the decay ends at
};

class LrSchedule {
 public:
  // Throws std::invalid_argument on negative rates, warmup ≥ total steps (with decay), or T < 1.
  explicit LrSchedule(LrScheduleOptions options);
  // Learning rate for the update of optimizer step `step` (0-based).
  double lr_at(int64_t step) const;
  const LrScheduleOptions& options() const { return options_; }

 private:
  LrScheduleOptions options_;
};

}  // namespace gradacc
