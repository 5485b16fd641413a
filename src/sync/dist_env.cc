#include "sync/dist_env.h"

#include <cstdlib>

#include <c10/util/Logging.h>
#include <fmt/format.h>

#include "base/parse.h"
#include "gradacc/errors.h"

namespace gradacc {
namespace {

std::optional<int64_t> integer_env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  try {
    return parse_int(v);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(fmt::format("environment variable {}: {}", name, e.what()));
  }
}

}  // namespace

DistEnv DistEnv::from_environment() {
  DistEnv e;
  const auto world = integer_env("WORLD_SIZE");
  if (!world) return e;
  if (*world < 1 || *world > 65536) throw ConfigError(fmt::format("WORLD_SIZE must be in 1..65536, got {}", *world));
  e.world_size = static_cast<int>(*world);
  const auto rank = integer_env("RANK");
  if (!rank && e.world_size > 1) throw ConfigError(fmt::format("WORLD_SIZE={} but RANK is not set", e.world_size));
  if (rank && (*rank < 0 || *rank >= e.world_size)) {
    throw ConfigError(fmt::format("RANK={} is outside 0..{} (WORLD_SIZE={})", *rank, e.world_size - 1, e.world_size));
  }
  e.rank = static_cast<int>(rank.value_or(0));
  e.local_rank = static_cast<int>(integer_env("LOCAL_RANK").value_or(e.rank));
  if (const char* addr = std::getenv("MASTER_ADDR"); addr && *addr) e.master_addr = addr;
  const auto port = integer_env("MASTER_PORT");
  if (port && (*port < 1 || *port > 65535))
    throw ConfigError(fmt::format("MASTER_PORT must be in 1..65535, got {}", *port));
  if (port) e.master_port = static_cast<int>(*port);
  // torchrun writes str(bool); torch reads only "True" as true. Anything else is refused rather
  // than read as false, which would make rank 0 start a second store on the launcher's port.
  if (const char* agent = std::getenv("TORCHELASTIC_USE_AGENT_STORE"); agent && *agent) {
    const std::string v = agent;
    if (v != "True" && v != "False")
      throw ConfigError(fmt::format("TORCHELASTIC_USE_AGENT_STORE must be True or False, got '{}'", v));
    e.launcher_hosts_store = v == "True";
  }
  const auto attempt = integer_env("TORCHELASTIC_RESTART_COUNT");
  if (attempt && (*attempt < 0 || *attempt > 1000000))
    throw ConfigError(fmt::format("TORCHELASTIC_RESTART_COUNT must be in 0..1000000, got {}", *attempt));
  e.attempt = attempt.value_or(0);
  return e;
}

void quiet_c10d_logs() {
  if (!std::getenv("TORCH_CPP_LOG_LEVEL")) FLAGS_caffe2_log_level = 3;  // FATAL only
}

}  // namespace gradacc
