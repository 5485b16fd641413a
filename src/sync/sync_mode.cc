#include "gradacc/sync_mode.h"

#include <stdexcept>

#include <fmt/format.h>

#include "base/parse.h"
#include "gradacc/errors.h"

namespace gradacc {

SyncMode parse_sync_mode(const std::string& name) {
  if (name == "window") return SyncMode::kPerWindow;
  if (name == "every-micro-batch") return SyncMode::kEveryMicroBatch;
  throw ConfigError(fmt::format("unknown sync mode '{}' (expected window or every-micro-batch)", shown(name)));
}

std::string to_string(SyncMode mode) { return mode == SyncMode::kPerWindow ? "window" : "every-micro-batch"; }

}  // namespace gradacc
