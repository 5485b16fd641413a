#include "sync/rendezvous_host.h"

#include <netdb.h>
#include <sys/socket.h>

#include <chrono>

#include <fmt/format.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "gradacc/errors.h"
#include "sync/dist_env.h"

namespace gradacc {

struct RendezvousHost::Impl {
  c10::intrusive_ptr<c10d::TCPStore> store;
};

RendezvousHost::RendezvousHost(const std::string& address, int port) : impl_(std::make_unique<Impl>()) {
  if (port < 0 || port > 65535)
    throw ConfigError(fmt::format("the rendezvous port must lie in 0..65535, got {}", port));
  // The store connects to itself at `address`; a name that does not resolve would only show as a
  // connect timeout, so it is asked first.
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(address.c_str(), nullptr, &hints, &found); rc != 0)
    throw ConfigError(fmt::format("the rendezvous address '{}' does not resolve: {}", address, ::gai_strerror(rc)));
  ::freeaddrinfo(found);
  quiet_c10d_logs();
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(port);
  so.isServer = true;
  so.waitWorkers = false;                 // the ranks meet each other through it; the host waits for none
  so.timeout = std::chrono::seconds(10);  // reaching itself: a local address answers at once
  try {
    impl_->store = c10::make_intrusive<c10d::TCPStore>(address, so);
  } catch (const std::exception& e) {
    const std::string what = e.what();
    throw DistributedError(
        fmt::format("cannot host the rendezvous store at {}:{}: {}", address, port, what.substr(0, what.find('\n'))));
  }
  port_ = impl_->store->getPort();
}

RendezvousHost::~RendezvousHost() = default;

}  // namespace gradacc
