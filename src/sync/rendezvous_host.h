// RendezvousHost: the c10d TCPStore that a launcher keeps for the ranks it starts, as torchrun's
// agent does. Hosting it in the launcher instead of in rank 0 has two gains:
//   - the port is bound before any rank starts, and port 0 lets the kernel pick a free one, so
//     two jobs on one machine (or a busy ephemeral port range) never race for a fixed number;
//   - the store outlives a rank that dies or stalls, rank 0 included, so the survivors can still
//     hold their roll call and name the ranks that stopped answering.
// The ranks learn of it from TORCHELASTIC_USE_AGENT_STORE=True (sync/dist_env.h) and all join it
// as clients, as they do under torchrun.
//
// Errors: the constructor throws DistributedError with one line when the port cannot be bound.
// Thread safety: c10d serves the store on a thread of its own; the object itself is not shared.
// Lifetime: the store closes with the object; start the ranks after it and end it after them.
#pragma once

#include <memory>
#include <string>

namespace gradacc {

class RendezvousHost {
 public:
  // Listens on `port` (0: a free port the kernel picks); `address` is how this process reaches it.
  RendezvousHost(const std::string& address, int port);
  ~RendezvousHost();
  RendezvousHost(const RendezvousHost&) = delete;
  RendezvousHost& operator=(const RendezvousHost&) = delete;

  int port() const { return port_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace gradacc
