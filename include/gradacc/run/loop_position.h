// Where a training loop stands in the data: the next window to run. With the sampler's seed this
// is the whole data position (the order of an epoch is a pure function of seed and epoch), so a
// checkpoint that saves it resumes on exactly the next example.
#pragma once

#include <cstdint>

namespace gradacc {

struct LoopPosition {
  int64_t epoch = 0;
  int64_t window = 0;  // windows already run in this epoch
  int64_t offset = 0;  // examples of this epoch's order already consumed
};

}  // namespace gradacc
