// Several ranks of one data-parallel group inside one test process: each on a thread of its own,
// with a real TCPStore and a real c10d group over loopback (Gloo on the CPU, NCCL on a GPU).
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "sync/communicator.h"
#include "sync/rendezvous_host.h"

namespace gradacc::testing {

// Runs `body(communicator, rank)` on `world` ranks, each on a thread of its own; an exception on
// a rank fails the test, naming the rank. The store is hosted here, as `gradacc launch` hosts it,
// on a port the kernel picks: tests that run side by side never race for one.
inline void on_ranks(int world, at::Device device, const std::function<void(Communicator&, int)>& body,
                     CommunicatorOptions options = {}) {
  const RendezvousHost store("127.0.0.1", 0);
  options.timeout_(std::chrono::seconds(60)).device_(device);  // once, before the threads read it
  std::vector<std::thread> threads;
  std::vector<std::string> errors(world);
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        DistEnv env;
        env.rank = r;
        env.world_size = world;
        env.master_port = store.port();
        env.launcher_hosts_store = true;
        Communicator c(env, options);
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
