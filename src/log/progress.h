// A one-line terminal progress bar counted in optimizer steps, with loss and ETA.
// It draws only when stderr is a terminal; otherwise every call does nothing.
#pragma once

#include <chrono>
#include <cstdint>

namespace gradacc {

class ProgressBar {
 public:
  // `first_step`: steps already done before this bar (a resumed run); the ETA uses only the
  // steps timed by this bar.
  explicit ProgressBar(int64_t total_steps, int64_t first_step = 0);
  ~ProgressBar();  // ends the line it drew
  void update(int64_t step, double loss);

 private:
  int64_t total_, first_;
  bool enabled_;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace gradacc
