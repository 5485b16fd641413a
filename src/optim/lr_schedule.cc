#include "gradacc/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>

#include <fmt/format.h>

#include "base/parse.h"
#include "gradacc/errors.h"

namespace gradacc {

ScheduleKind parse_schedule(const std::string& name) {
  if (name == "constant") return ScheduleKind::kConstant;
  if (name == "cosine") return ScheduleKind::kCosine;
  if (name == "linear") return ScheduleKind::kLinear;
  if (name == "ds_warmup") return ScheduleKind::kDsWarmup;
  if (name == "ds_warmup_decay") return ScheduleKind::kDsWarmupDecay;
  if (name == "ds_warmup_cosine") return ScheduleKind::kDsWarmupCosine;
  throw ConfigError(fmt::format(
      "unknown schedule '{}' (expected constant, cosine, linear, ds_warmup, ds_warmup_decay or ds_warmup_cosine)",
      shown(name)));
}

std::string to_string(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::kConstant: return "constant";
    case ScheduleKind::kCosine: return "cosine";
    case ScheduleKind::kLinear: return "linear";
    case ScheduleKind::kDsWarmup: return "ds_warmup";
    case ScheduleKind::kDsWarmupDecay: return "ds_warmup_decay";
    case ScheduleKind::kDsWarmupCosine: return "ds_warmup_cosine";
  }
  return "?";
}

WarmupStart parse_warmup_start(const std::string& name) {
  if (name == "step1") return WarmupStart::kStep1;
  if (name == "zero") return WarmupStart::kZero;
  throw ConfigError(fmt::format("unknown warmup start '{}' (expected step1 or zero)", shown(name)));
}

std::string to_string(WarmupStart start) { return start == WarmupStart::kZero ? "zero" : "step1"; }

LrScaling parse_lr_scaling(const std::string& name) {
  if (name == "none") return LrScaling::kNone;
  if (name == "linear") return LrScaling::kLinear;
  if (name == "sqrt") return LrScaling::kSqrt;
  if (name == "adascale") return LrScaling::kAdaScale;
  throw ConfigError(fmt::format("unknown lr scaling '{}' (expected none, linear, sqrt or adascale)", shown(name)));
}

std::string to_string(LrScaling rule) {
  switch (rule) {
    case LrScaling::kNone: return "none";
    case LrScaling::kLinear: return "linear";
    case LrScaling::kSqrt: return "sqrt";
    case LrScaling::kAdaScale: return "adascale";
  }
  return "?";
}

double lr_scale(LrScaling rule, double batch, double base_batch) {
  if (!(base_batch > 0) || !std::isfinite(base_batch))
    throw ConfigError(fmt::format("lr scaling: the base batch must be positive, got {}", base_batch));
  if (!(batch > 0)) throw ConfigError(fmt::format("lr scaling: the batch must be positive, got {}", batch));
  const double k = batch / base_batch;
  switch (rule) {
    case LrScaling::kNone: return 1.0;
    case LrScaling::kLinear: return k;
    case LrScaling::kSqrt: return std::sqrt(k);
    case LrScaling::kAdaScale: break;
  }
  throw ConfigError("adascale's factor follows the noise scale, not the batch alone (adascale_gain)");
}

double adascale_gain(double trace_sigma, double grad_sq, double batch, double base_batch) {
  const double scale = lr_scale(LrScaling::kLinear, batch, base_batch);  // S = B/B0, checked
  if (!(grad_sq > 0) || !(trace_sigma >= 0) || !std::isfinite(trace_sigma) || !std::isfinite(grad_sq)) return 1.0;
  const double r = (trace_sigma / base_batch + grad_sq) / (trace_sigma / batch + grad_sq);
  return std::clamp(r, std::min(1.0, scale), std::max(1.0, scale));
}

bool is_deepspeed(ScheduleKind k) {
  return k == ScheduleKind::kDsWarmup || k == ScheduleKind::kDsWarmupDecay || k == ScheduleKind::kDsWarmupCosine;
}

LrSchedule::LrSchedule(LrScheduleOptions o) : options_(o) {
  if (!(o.base_lr > 0) || !std::isfinite(o.base_lr))
    throw ConfigError(fmt::format("lr must be positive, got {}", o.base_lr));
  if (o.min_lr < 0 || o.min_lr > o.base_lr) {
    throw ConfigError(fmt::format("min_lr = {} must lie in [0, lr = {}]", o.min_lr, o.base_lr));
  }
  if (o.total_steps < 1) throw ConfigError(fmt::format("total steps must be ≥ 1, got {}", o.total_steps));
  if (o.warmup_steps < 0) throw ConfigError(fmt::format("warmup must be ≥ 0, got {}", o.warmup_steps));
  if (is_deepspeed(o.kind)) {
    if (!(o.warmup_min_ratio >= 0 && o.warmup_min_ratio <= 1) || !(o.cos_min_ratio >= 0 && o.cos_min_ratio <= 1)) {
      throw ConfigError(fmt::format("warmup_min_ratio = {} and cos_min_ratio = {} must lie in [0, 1]",
                                    o.warmup_min_ratio, o.cos_min_ratio));
    }
    if (o.kind == ScheduleKind::kDsWarmupCosine && o.total_steps <= std::max<int64_t>(2, o.warmup_steps)) {
      throw ConfigError(fmt::format("WarmupCosineLR needs total_num_steps = {} above warmup_num_steps = {}",
                                    o.total_steps, std::max<int64_t>(2, o.warmup_steps)));
    }
    return;
  }
  if (o.kind != ScheduleKind::kConstant && o.warmup_steps >= o.total_steps) {
    throw ConfigError(fmt::format("warmup = {} steps leaves no room to decay within {} optimizer steps", o.warmup_steps,
                                  o.total_steps));
  }
}

double LrSchedule::lr_at(int64_t step) const {
  const auto& o = options_;
  const auto s = static_cast<double>(step);
  if (is_deepspeed(o.kind)) {
    const int64_t w = std::max<int64_t>(2, o.warmup_steps);  // DeepSpeed's own floor
    const auto W = static_cast<double>(w), T = static_cast<double>(o.total_steps);
    const double gamma = step >= w ? 1.0 : o.log_warmup ? std::log(s + 1.0) / std::log(W) : s / W;
    switch (o.kind) {
      case ScheduleKind::kDsWarmup: return o.min_lr + (o.base_lr - o.min_lr) * gamma;
      case ScheduleKind::kDsWarmupDecay:
        return o.min_lr + (o.base_lr - o.min_lr) * (step < w ? gamma : std::max(0.0, (T - s) / std::max(1.0, T - W)));
      default: {
        if (step < w) return o.base_lr * (o.warmup_min_ratio + (1.0 - o.warmup_min_ratio) * gamma);
        const double c = 0.5 * (1.0 + std::cos(std::numbers::pi * (s - W + 1.0) / (T - W)));
        return o.base_lr * std::max(0.0, o.cos_min_ratio + (1.0 - o.cos_min_ratio) * c);
      }
    }
  }
  return lr_at_position(s);
}

double LrSchedule::lr_at_position(double s) const {
  const auto& o = options_;
  if (is_deepspeed(o.kind)) throw ConfigError("DeepSpeed's schedules step in whole optimizer steps only");
  const auto W = static_cast<double>(o.warmup_steps);
  if (s < W) {
    const double done = o.warmup_start == WarmupStart::kZero ? s : s + 1.0;
    return o.base_lr * done / W;
  }
  if (o.kind == ScheduleKind::kConstant) return o.base_lr;
  const double p = std::clamp((s - W) / (static_cast<double>(o.total_steps) - W), 0.0, 1.0);
  if (o.kind == ScheduleKind::kCosine)
    return o.min_lr + (o.base_lr - o.min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * p));
  return o.base_lr + (o.min_lr - o.base_lr) * p;
}

}  // namespace gradacc
