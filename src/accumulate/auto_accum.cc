#include "accumulate/auto_accum.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "base/parse.h"
#include "gradacc/errors.h"

namespace gradacc {

AutoAccum::AutoAccum(AutoAccumOptions o) : o_(o), current_(o.min_accum) {
  if (o.min_accum < 1 || o.max_accum < o.min_accum) {
    throw ConfigError(
        fmt::format("automatic accumulation needs 1 ≤ min ≤ max, got {} and {}", o.min_accum, o.max_accum));
  }
  if (o.warmup < 0) throw ConfigError(fmt::format("accum_auto_warmup must be ≥ 0, got {}", o.warmup));
  if (o.interval < 1) throw ConfigError(fmt::format("accum_auto_every must be ≥ 1, got {}", o.interval));
  if (o.micro_batch < 1 || o.world_size < 1) throw ConfigError("micro_batch and world_size must be ≥ 1");
}

int64_t AutoAccum::target(double noise_scale, int64_t samples, int64_t items) const {
  // Not measured yet, or a negative |G|² estimate (the ratio is then meaningless): keep the floor.
  if (!(noise_scale > 0) || !std::isfinite(noise_scale) || samples < 1 || items < 1) return o_.min_accum;
  const double examples = noise_scale * static_cast<double>(samples) / static_cast<double>(items);
  const double per_micro = static_cast<double>(o_.micro_batch * o_.world_size);
  const double want = std::round(examples / per_micro);
  return static_cast<int64_t>(std::clamp(want, static_cast<double>(o_.min_accum), static_cast<double>(o_.max_accum)));
}

bool AutoAccum::after_step(const StepReport& r) {
  const bool due = r.step >= o_.warmup && (r.step - o_.warmup) % o_.interval == 0 && r.step > last_decision_;
  if (!due || !r.noise_measured) return false;
  last_decision_ = r.step;
  const int64_t next = target(r.noise_scale, r.samples, r.items);
  const bool changed = next != current_;
  current_ = next;
  return changed;
}

std::map<std::string, std::string> AutoAccum::state() const {
  return {{"accum_auto_current", std::to_string(current_)},
          {"accum_auto_last_decision", std::to_string(last_decision_)}};
}

void AutoAccum::load_state(const std::map<std::string, std::string>& state) {
  const auto c = state.find("accum_auto_current"), d = state.find("accum_auto_last_decision");
  if (c == state.end() && d == state.end()) return;
  if (c == state.end() || d == state.end()) throw ConfigError("automatic accumulation state is incomplete");
  int64_t current = 0, last = 0;
  try {
    current = parse_int(c->second);
    last = parse_int(d->second);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(fmt::format("automatic accumulation state is malformed ({})", e.what()));
  }
  if (current < o_.min_accum || current > o_.max_accum || last < 0) {
    throw ConfigError(
        fmt::format("automatic accumulation state {} is outside [{}, {}]", current, o_.min_accum, o_.max_accum));
  }
  current_ = current;
  last_decision_ = last;
}

AutoAccumOptions parse_auto_accum(const std::string& spec, AutoAccumOptions o) {
  if (spec.rfind("auto", 0) != 0) throw ConfigError(fmt::format("'{}' is not auto[:MAX]", shown(spec)));
  std::string rest = spec.substr(4);
  if (rest.empty()) return o;
  if (rest[0] != ':') throw ConfigError(fmt::format("'{}' is not auto, auto:MAX or auto:MIN:MAX", shown(spec)));
  rest = rest.substr(1);
  const auto colon = rest.find(':');
  try {
    if (colon == std::string::npos) {
      o.max_accum = parse_int(rest);
    } else {
      o.min_accum = parse_int(rest.substr(0, colon));
      o.max_accum = parse_int(rest.substr(colon + 1));
    }
  } catch (const std::invalid_argument&) {
    throw ConfigError(fmt::format("'{}' is not auto, auto:MAX or auto:MIN:MAX", shown(spec)));
  }
  if (o.min_accum < 1 || o.max_accum < o.min_accum)
    throw ConfigError(fmt::format("'{}': needs 1 ≤ MIN ≤ MAX", shown(spec)));
  return o;
}

}  // namespace gradacc
