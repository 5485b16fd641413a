// The torchrun launch contract: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT. Any
// launcher that sets them (torchrun --no-python, SLURM or Kubernetes wrappers, `gradacc launch`)
// starts gradacc ranks. Unset WORLD_SIZE (or 1) means a single process.
//
// Who hosts the rendezvous store at MASTER_ADDR:MASTER_PORT: rank 0, unless the launcher says it
// does (TORCHELASTIC_USE_AGENT_STORE=True, as torchrun and `gradacc launch` set), in which case
// every rank is a client. TORCHELASTIC_RESTART_COUNT names the attempt, so that a restarted group
// on the launcher's long-lived store does not read the keys of the attempt before it.
#pragma once

#include <cstdint>
#include <string>

namespace gradacc {

struct DistEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool launcher_hosts_store = false;  // TORCHELASTIC_USE_AGENT_STORE=True
  int64_t attempt = 0;                // TORCHELASTIC_RESTART_COUNT

  bool distributed() const { return world_size > 1; }
  // Reads the environment; throws ConfigError (one line naming the variable) for a malformed or
  // inconsistent value (RANK ≥ WORLD_SIZE, a port outside 1..65535, ...).
  static DistEnv from_environment();
};

// Silences c10d's own log lines (each retry, each socket error) unless TORCH_CPP_LOG_LEVEL is set
// (INFO or WARNING bring them back): gradacc reports a failure itself, in one line. For the
// process; call before the first store or process group.
void quiet_c10d_logs();

}  // namespace gradacc
