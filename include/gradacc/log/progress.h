// A one-line terminal progress bar counted in optimizer steps, with loss and ETA.
// It draws only when stderr is a terminal; otherwise every call does nothing.
#pragma once

#include <chrono>
#include <cstdint>

namespace gradacc {

class ProgressBar {
 public:
  explicit ProgressBar(int64_t total_steps);
  ~ProgressBar();  // ends the line it drew
  void update(int64_t step, double loss);

 private:
  int64_t total_;
  bool enabled_;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace gradacc
