// Several ranks of one data-parallel group inside one test process: each on a thread of its own,
// with a real TCPStore and a real c10d group over loopback (Gloo on the CPU, NCCL on a GPU).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "sync/communicator.h"

namespace gradacc::testing {

// A TCP port nobody listens on now (the kernel's choice).
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

// Runs `body(communicator, rank)` on `world` ranks, each on a thread of its own; an exception on
// a rank fails the test, naming the rank.
inline void on_ranks(int world, at::Device device, const std::function<void(Communicator&, int)>& body,
                     CommunicatorOptions options = {}) {
  const int port = free_port();
  ASSERT_GT(port, 0);
  std::vector<std::thread> threads;
  std::vector<std::string> errors(world);
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        DistEnv env;
        env.rank = r;
        env.world_size = world;
        env.master_port = port;
        Communicator c(env, options.timeout_(std::chrono::seconds(60)).device_(device));
        body(c, r);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
}

}  // namespace gradacc::testing
