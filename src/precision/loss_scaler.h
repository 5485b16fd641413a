// Dynamic loss scaling for fp16 (LibTorch has no GradScaler: pytorch #44710).
//
// fp16 gradients of small magnitude underflow to zero. The Accumulator multiplies every
// micro-batch's loss by `scale()` before backward, so the gradients are computed `scale` times
// larger, and divides the window gradient by it once, at the boundary, folded into the same
// factor as the window's normalization (it never makes a pass of its own). If the window gradient
// holds an inf or NaN, the update is skipped (optimizer and LR schedule), the gradient dropped and
// the scale backed off; after `growth_interval` good windows in a row the scale grows.
//
// Defaults are PyTorch's torch.amp.GradScaler: 2^16, ×2, ×0.5, 2000. DeepSpeed's dynamic scaler
// (fp16: initial_scale_power, loss_scale_window, hysteresis, min_loss_scale, loss_scale) is the
// same rule with hysteresis, a floor, and a static mode.
// Thread safety: none; owned by one training loop.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include "base/stateful.h"

namespace gradacc {

struct LossScalerOptions {
  double init_scale = 65536.0;
  double growth_factor = 2.0;      // > 1
  double backoff_factor = 0.5;     // in (0, 1)
  int64_t growth_interval = 2000;  // good windows before the scale grows
  // DeepSpeed's additions: overflows tolerated before a backoff (1: back off at once, PyTorch's
  // behaviour; the count is refilled when the scale grows), the floor the scale never goes below
  // (0: none), and a static scale (dynamic = false: overflows still skip, the scale never moves).
  int64_t hysteresis = 1;
  double min_scale = 0.0;
  bool dynamic = true;
  LossScalerOptions& init_scale_(double v) {
    init_scale = v;
    return *this;
  }
  LossScalerOptions& growth_factor_(double v) {
    growth_factor = v;
    return *this;
  }
  LossScalerOptions& backoff_factor_(double v) {
    backoff_factor = v;
    return *this;
  }
  LossScalerOptions& growth_interval_(int64_t v) {
    growth_interval = v;
    return *this;
  }
};

class LossScaler : public Stateful {
 public:
  // Throws ConfigError naming a bad option.
  explicit LossScaler(LossScalerOptions options = {});

  double scale() const { return scale_; }
  // After each window: `found_inf` backs off (and counts a skipped step), otherwise the run of
  // good windows grows and, at growth_interval, so does the scale.
  void update(bool found_inf);

  int64_t skipped_steps() const { return skipped_; }
  int64_t growth_tracker() const { return good_in_a_row_; }

  // For checkpoints: "loss_scale", "loss_scale_growth_tracker", "loss_scale_skipped_steps",
  // "loss_scale_hysteresis_left" (the scale printed so that it reads back to the same double; a
  // checkpoint without the last entry, from before it existed, refills it).
  std::map<std::string, std::string> state() const override;
  // Throws ConfigError for missing or malformed entries.
  void load_state(const std::map<std::string, std::string>& state) override;

 private:
  LossScalerOptions options_;
  double scale_;
  int64_t good_in_a_row_ = 0;
  int64_t skipped_ = 0;
  int64_t hysteresis_left_;
};

}  // namespace gradacc
