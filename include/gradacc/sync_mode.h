// When the gradients of a data-parallel window cross ranks.
#pragma once

#include <string>

namespace gradacc {

enum class SyncMode {
  kPerWindow,        // once per optimizer step, at the window boundary (the default)
  kEveryMicroBatch,  // after every micro-batch's backward, as DDP without no_sync(); for comparison
};

// "window" | "every-micro-batch"; ConfigError otherwise.
SyncMode parse_sync_mode(const std::string& name);
std::string to_string(SyncMode mode);

}  // namespace gradacc
