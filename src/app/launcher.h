// `gradacc launch --nproc N -- train ...`: starts N ranks of this program on one machine with the
// torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT),
// hosts their rendezvous store itself as torchrun's agent does (TORCHELASTIC_USE_AGENT_STORE=True;
// sync/rendezvous_host.h), on a free port unless one is given, forwards each rank's output line
// by line with a "[rank i] " prefix, forwards SIGINT/SIGTERM to all ranks, and when one rank
// fails stops the others (SIGTERM, then SIGKILL after a grace period) so that no rank is left
// waiting on a dead peer. With max_restarts it then starts all ranks again, as torchrun does, with
// TORCHELASTIC_RESTART_COUNT counting the attempts (a run with --resume auto continues from its
// newest checkpoint); a signal to the launcher stops it instead. The ranks inherit no descriptor
// beyond stdin, stdout and stderr, and get SIGTERM when the launcher dies (even by SIGKILL), so
// none trains on unwatched.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace gradacc {

struct LaunchOptions {
  int nproc = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;            // 0: a free port, picked when the store is bound
  std::string executable;         // the program each rank runs (default: this one)
  std::vector<std::string> args;  // its arguments, e.g. {"train", "--model", "mlp"}
  double grace_seconds = 10.0;    // SIGTERM → SIGKILL for the survivors of a failed rank
  int max_restarts = 0;           // times all ranks are started again after one failed (torchrun's)
};

// Returns 0 when every rank of an attempt succeeded, else the last attempt's first failure's exit status (128 + signal
// for a rank killed by a signal). Throws ConfigError for bad options, DistributedError when the store cannot be hosted
// (the port is taken). `out` receives the ranks' prefixed lines; `log` the launcher's own messages.
int launch_local(const LaunchOptions& options, std::ostream& out, std::ostream& log);

}  // namespace gradacc
