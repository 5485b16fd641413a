// Learning-rate schedules counted in optimizer steps (never in micro-batches). `s` is the 0-based
// index of the update, W the warmup, T the schedule's horizon (the run's steps unless given).
//
// gradacc's own (constant, cosine, linear):
//   warmup: s < W   lr = base · (s + 1) / W          (WarmupStart::kStep1; Hugging Face's is
//                                                    kZero: base · s / W, the first update at 0)
//   decay:  p = (s − W) / (T − W) ∈ [0, 1]
//           constant  lr = base
//           cosine    lr = floor + (base − floor) · ½ (1 + cos π p)
//           linear    lr = base + (floor − base) · p
//
// DeepSpeed's (docs/config.md, "bring your config"), with W' = max(2, W) as DeepSpeed takes it and
// γ(s) = ln(s + 1) / ln W' (warmup_type log, DeepSpeed's default) or s / W' (linear) for s < W':
//   ds_warmup         WarmupLR       lr = lo + (base − lo) · γ(s), and base after the warmup
//   ds_warmup_decay   WarmupDecayLR  after the warmup γ = max(0, (T − s) / max(1, T − W'))
//   ds_warmup_cosine  WarmupCosineLR lr = base · r: r = lo_ratio + (1 − lo_ratio) · γ(s) in the
//                     warmup, then r = max(0, c + (1 − c) · ½ (1 + cos π (s − W' + 1) / (T − W')))
// where lo = warmup_min_lr (floor), lo_ratio = warmup_min_ratio and c = cos_min_ratio.
// Update s uses the value at DeepSpeed's last_batch_iteration = s.
//
// The schedule is a pure function of the step; its only state is the step counter the caller
// keeps (which makes it trivially resumable).
#pragma once

#include <cstdint>
#include <string>

namespace gradacc {

enum class ScheduleKind { kConstant, kCosine, kLinear, kDsWarmup, kDsWarmupDecay, kDsWarmupCosine };
// "constant" | "cosine" | "linear" | "ds_warmup" | "ds_warmup_decay" | "ds_warmup_cosine"
ScheduleKind parse_schedule(const std::string& name);
std::string to_string(ScheduleKind kind);
bool is_deepspeed(ScheduleKind kind);  // ds_warmup, ds_warmup_decay, ds_warmup_cosine

// How gradacc's own schedules warm up: (s + 1) / W (gradacc) or s / W (Hugging Face).
enum class WarmupStart { kStep1, kZero };
WarmupStart parse_warmup_start(const std::string& name);  // "step1" | "zero"
std::string to_string(WarmupStart start);

// The learning rate that follows the batch (docs/lr-scaling.md): each update's rate is the
// schedule's value × lr_scale(rule, B_t, B0), where B_t is the window's planned global batch and
// B0 the batch the rate was tuned at (in samples; in tokens with per-token normalization):
//   none    1
//   linear  B_t / B0                (Goyal et al. 2017: SGD, with warmup)
//   sqrt    sqrt(B_t / B0)          (Hoffer et al. 2017, Malladi et al. 2022: Adam-type optimizers)
//   adascale  the gain ratio r_t = (tr Σ / B0 + |G|²) / (tr Σ / B_t + |G|²), in [1, B_t / B0]
//             (Johnson et al. 2020, for SGD), from the gradient noise scale's moving averages (tr Σ
//             per example, |G|² of the mean gradient); the schedule is read at the position Σ r,
//             which advances by r_t per update, and the run ends when it reaches the schedule's
//             length ("scale-invariant iterations").
enum class LrScaling { kNone, kLinear, kSqrt, kAdaScale };
// "none" | "linear" | "sqrt" | "adascale"; ConfigError otherwise
LrScaling parse_lr_scaling(const std::string& name);
std::string to_string(LrScaling rule);
// none, linear, sqrt. Throws ConfigError unless batch > 0 and base_batch > 0, or for adascale
// (whose factor is adascale_gain).
double lr_scale(LrScaling rule, double batch, double base_batch);
// AdaScale's r for these estimates (trace_sigma per example, grad_sq of the mean gradient): 1
// while there is no estimate (grad_sq ≤ 0 or trace_sigma < 0), else within [1, batch/base] (or
// [batch/base, 1] for a batch below the base).
double adascale_gain(double trace_sigma, double grad_sq, double batch, double base_batch);

struct LrScheduleOptions {
  ScheduleKind kind = ScheduleKind::kConstant;
  double base_lr = 1e-3;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  double min_lr = 0.0;  // the floor the decay ends at; DeepSpeed: warmup_min_lr (ds_warmup, ds_warmup_decay)
  WarmupStart warmup_start = WarmupStart::kStep1;
  // DeepSpeed's schedules only.
  bool log_warmup = true;         // warmup_type log (else linear)
  double warmup_min_ratio = 0.0;  // ds_warmup_cosine: the warmup's first ratio of base
  double cos_min_ratio = 1e-4;    // ds_warmup_cosine: the ratio the cosine ends at
};

class LrSchedule {
 public:
  // Throws ConfigError on negative rates, warmup ≥ total steps (with decay), or T < 1.
  explicit LrSchedule(LrScheduleOptions options);
  // Learning rate for the update of optimizer step `step` (0-based).
  double lr_at(int64_t step) const;
  // The same at a fractional position s ≥ 0 (AdaScale's scale-invariant iterations), for gradacc's
  // own schedules; lr_at(step) == lr_at_position(step). Throws ConfigError for DeepSpeed's.
  double lr_at_position(double s) const;
  const LrScheduleOptions& options() const { return options_; }

 private:
  LrScheduleOptions options_;
};

}  // namespace gradacc
