#include "gradacc/optim/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>

#include <fmt/format.h>

#include "gradacc/util/parse.h"

namespace gradacc {

ScheduleKind parse_schedule(const std::string& name) {
  if (name == "constant") return ScheduleKind::kConstant;
  if (name == "cosine") return ScheduleKind::kCosine;
  if (name == "linear") return ScheduleKind::kLinear;
  throw std::invalid_argument(fmt::format("unknown schedule '{}' (expected constant, cosine or linear)", shown(name)));
}

std::string to_string(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::kConstant: return "constant";
    case ScheduleKind::kCosine: return "cosine";
    case ScheduleKind::kLinear: return "linear";
  }
  return "?";
}

LrSchedule::LrSchedule(LrScheduleOptions o) : options_(o) {
  if (!(o.base_lr > 0) || !std::isfinite(o.base_lr))
    throw std::invalid_argument(fmt::format("lr must be positive, got {}", o.base_lr));
  if (o.min_lr < 0 || o.min_lr > o.base_lr) {
    throw std::invalid_argument(fmt::format("min_lr = {} must lie in [0, lr = {}]", o.min_lr, o.base_lr));
  }
  if (o.total_steps < 1) throw std::invalid_argument(fmt::format("total steps must be ≥ 1, got {}", o.total_steps));
  if (o.warmup_steps < 0) throw std::invalid_argument(fmt::format("warmup must be ≥ 0, got {}", o.warmup_steps));
  if (o.kind != ScheduleKind::kConstant && o.warmup_steps >= o.total_steps) {
    throw std::invalid_argument(fmt::format("warmup = {} steps leaves no room to decay within {} optimizer steps",
                                            o.warmup_steps, o.total_steps));
  }
}

double LrSchedule::lr_at(int64_t step) const {
  const auto& o = options_;
  if (step < o.warmup_steps) return o.base_lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup_steps);
  if (o.kind == ScheduleKind::kConstant) return o.base_lr;
  const double p = std::clamp(
      static_cast<double>(step - o.warmup_steps) / static_cast<double>(o.total_steps - o.warmup_steps), 0.0, 1.0);
  if (o.kind == ScheduleKind::kCosine)
    return o.min_lr + (o.base_lr - o.min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * p));
  return o.base_lr + (o.min_lr - o.base_lr) * p;
}

}  // namespace gradacc
