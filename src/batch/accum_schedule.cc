#include "batch/accum_schedule.h"

#include <sstream>

#include <fmt/format.h>

#include "gradacc/batch_plan.h"
#include "gradacc/errors.h"

namespace gradacc {

AccumSchedule AccumSchedule::parse(const std::string& spec) {
  AccumSchedule s;
  std::stringstream in(spec);
  std::string item;
  while (std::getline(in, item, ',')) {
    const auto colon = item.find(':');
    int64_t step = -1, accum = 0;
    try {
      size_t a = 0, b = 0;
      if (colon == std::string::npos) throw ConfigError(item);
      step = std::stoll(item.substr(0, colon), &a);
      accum = std::stoll(item.substr(colon + 1), &b);
      if (a != colon || b != item.size() - colon - 1) throw ConfigError(item);
    } catch (const std::exception&) {
      throw PlanError(fmt::format("accumulation schedule '{}': '{}' is not step:accumulation", spec, item));
    }
    if (accum < 1)
      throw PlanError(
          fmt::format("accumulation schedule '{}': accumulation {} at step {} must be ≥ 1", spec, accum, step));
    if (s.points_.empty() ? step != 0 : step <= s.points_.back().first) {
      throw PlanError(
          fmt::format("accumulation schedule '{}': steps must start at 0 and increase (got {})", spec, step));
    }
    s.points_.emplace_back(step, accum);
  }
  if (s.points_.empty()) throw PlanError("accumulation schedule is empty");
  return s;
}

int64_t AccumSchedule::at(int64_t step) const {
  int64_t accum = points_.front().second;
  for (const auto& [from, a] : points_) {
    if (step >= from) accum = a;
  }
  return accum;
}

}  // namespace gradacc
