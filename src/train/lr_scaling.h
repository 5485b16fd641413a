// LrScaler: the factor the learning rate follows the batch by (`--lr-scaling`, lr_schedule.h), for
// each window of a run, and what a checkpoint carries of it.
//
// B_t is the window's planned global batch: micro_batch × accumulation × world_size, which follows
// an accumulation schedule, `--accum auto` and a resume at another world size. A short last window
// (the epoch's rest) keeps its planned batch's factor: its gradient is the exact mean over the
// examples it has, and the rate of a step should not depend on the dataset's size modulo the batch.
// With per-token normalization the unit is the token: B_t = samples × the longest example's
// tokens (the positions a full window holds), and B0 is given in tokens.
//
// AdaScale reads the noise scale's moving averages as they stand before the window (the windows
// already run; 1 before the first estimate), and keeps the schedule's position Σ r over the updates
// applied (a skipped fp16 window does not advance it); the run is finished once the position
// reaches the schedule's length.
//
// The checkpoint carries the batch of the last step (so a resume that changes it, at another world
// size, says so in one line) and AdaScale's position (so the resume is exact).
//
// Thread safety: none; owned by one Trainer.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "accumulate/noise_scale.h"
#include "base/stateful.h"
#include "gradacc/dataset.h"
#include "gradacc/lr_schedule.h"
#include "train/run_plan.h"

namespace gradacc {

class LrScaler : public Stateful {
 public:
  // `tokens_per_sample`: 1, or with per-token normalization the tokens of a full example.
  // `noise`: AdaScale's estimates (required for it, outliving this object); `schedule_steps`: the
  // length its position runs to. Throws ConfigError for a base batch ≤ 0, tokens_per_sample < 1,
  // or AdaScale without an estimator.
  LrScaler(LrScaling rule, double base_batch, int64_t tokens_per_sample, const NoiseScaleEstimator* noise = nullptr,
           int64_t schedule_steps = 0);

  // The factor of the next window, of `global_samples` planned examples (remembered for the
  // checkpoint): B/B0, sqrt(B/B0), or AdaScale's r.
  double factor(int64_t global_samples);
  // AdaScale: where the schedule is read for the next update (Σ r so far); unset for the others.
  std::optional<double> schedule_position() const;
  // After the window's update (not after a skipped one): AdaScale's position advances by `factor`.
  void advance(double factor);
  // AdaScale's position reached the schedule's length: the run is done.
  bool finished() const;

  double batch_of(int64_t global_samples) const {
    return static_cast<double>(global_samples) * static_cast<double>(tokens_per_sample_);
  }
  LrScaling rule() const { return rule_; }

  // After a resume: a line saying how the factor changes at the resume, when the checkpoint's last
  // batch differs from `global_samples`, the first window's; nothing otherwise.
  std::optional<std::string> resume_note(int64_t global_samples) const;

  std::map<std::string, std::string> state() const override;  // "lr_scaling_batch", "lr_scaling_position"
  void load_state(const std::map<std::string, std::string>& state) override;

 private:
  LrScaling rule_;
  double base_;
  int64_t tokens_per_sample_;
  const NoiseScaleEstimator* noise_;
  int64_t schedule_steps_;
  double last_batch_ = 0.0;  // the batch of the last factor asked for; 0: none yet
  double position_ = 0.0;    // AdaScale: Σ r over the updates applied
};

// The run's scaler, or null without --lr-scaling. Per-token normalization counts B in tokens: the
// longest of `data`'s examples gives the tokens per sample. Throws ConfigError for AdaScale with
// another optimizer than SGD (`optimizer_kind`), whose step sizes it assumes.
std::unique_ptr<LrScaler> make_lr_scaler(const RunPlan& plan, const Dataset& data, const NoiseScaleEstimator* noise,
                                         const std::string& optimizer_kind);

}  // namespace gradacc
