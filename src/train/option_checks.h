// The checks options are held to, each a ConfigError with one line naming the option and the value:
// shared by the option groups' own validate() (options.cc) and resolve_run (run_plan.cc).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "gradacc/errors.h"
#include "gradacc/options.h"  // kMaxSteps

namespace gradacc {

inline void require(bool ok, const std::string& message) {
  if (!ok) throw ConfigError(message);
}

// A finite number in [lo, hi].
inline void require_range(double v, double lo, double hi, const char* name) {
  require(std::isfinite(v) && v >= lo && v <= hi,
          fmt::format("{} must be a finite number in [{}, {}], got {}", name, lo, hi, v));
}

inline void require_count(int64_t v, int64_t lo, int64_t hi, const char* name) {
  require(v >= lo && v <= hi, fmt::format("{} must lie in {}..{}, got {}", name, lo, hi, v));
}

}  // namespace gradacc
