// AccumSchedule: accumulation steps as a function of the optimizer step (batch-size warmup).
//
// "0:2,200:4,600:8" means 2 micro-batches per window from step 0, 4 from step 200, 8 from step
// 600, with the micro-batch fixed, so the global batch grows 2× twice. Normalization stays exact
// as the window grows: the accumulator divides by each window's real count.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace gradacc {

class AccumSchedule {
 public:
  // Throws PlanError (one line) unless the spec is "step:accum" pairs, comma-separated, starting at
  // step 0, with strictly increasing steps and accumulation ≥ 1.
  static AccumSchedule parse(const std::string& spec);
  // Accumulation steps of optimizer step `step` (0-based).
  int64_t at(int64_t step) const;
  const std::vector<std::pair<int64_t, int64_t>>& points() const { return points_; }

 private:
  std::vector<std::pair<int64_t, int64_t>> points_;
};

}  // namespace gradacc
