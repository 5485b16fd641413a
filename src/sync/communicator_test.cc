// The Communicator's collectives between two ranks of one process (two threads, a real TCPStore
// and a real c10d group over loopback), against sums and concatenations computed here: Gloo on the
// CPU always; NCCL on a GPU when there is one (one rank alone: NCCL does not put two ranks on one
// device).
#include "sync/communicator.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <thread>

#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <gtest/gtest.h>

#include "gradacc/device.h"

namespace gradacc {
namespace {

// A TCP port nobody listens on now (the kernel's choice).
int free_port() {
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

// Runs `body(communicator, rank)` on `world` ranks, each on a thread of its own.
void on_ranks(int world, at::Device device, const std::function<void(Communicator&, int)>& body) {
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
        Communicator c(env, CommunicatorOptions().timeout_(std::chrono::seconds(60)).device_(device));
        body(c, r);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
}

// Rank r holds (r + 1) · [0, 1, ..., 2L-1]: the sum over two ranks is 3 · [0, ..., 2L-1].
void check_collectives(Communicator& c, int rank, at::Device device) {
  const int world = c.world_size();
  constexpr int64_t kShard = 5;
  const auto opts = at::TensorOptions().dtype(at::kFloat).device(device);
  const at::Tensor base = at::arange(kShard * world, opts);
  const double sum_factor = world * (world + 1) / 2.0;

  at::Tensor flat = base * (rank + 1);
  c.sum_across_ranks(flat);
  EXPECT_TRUE(at::equal(flat.cpu(), (base * sum_factor).cpu()));

  at::Tensor shard = at::zeros({kShard}, opts);
  c.reduce_scatter(base * (rank + 1), shard);
  EXPECT_TRUE(at::equal(shard.cpu(), (base.narrow(0, rank * kShard, kShard) * sum_factor).cpu()));

  at::Tensor gathered = at::zeros({kShard * world}, opts);
  c.all_gather(at::full({kShard}, static_cast<float>(rank), opts), gathered);
  std::vector<at::Tensor> expected;
  for (int r = 0; r < world; ++r) expected.push_back(at::full({kShard}, static_cast<float>(r), opts));
  EXPECT_TRUE(at::equal(gathered.cpu(), at::cat(expected).cpu()));

  // Overlap's buckets: started without waiting, waited for together.
  at::Tensor a = base * (rank + 1), b = base * (rank + 1) * 2;
  c.start_sum(a);
  c.start_sum(b);
  c.wait_pending();
  EXPECT_TRUE(at::equal(a.cpu(), (base * sum_factor).cpu()));
  EXPECT_TRUE(at::equal(b.cpu(), (base * sum_factor * 2).cpu()));

  EXPECT_TRUE(c.all_agree(true));
  EXPECT_FALSE(c.all_agree(rank != world - 1));  // the last rank says no: every rank hears it
  EXPECT_EQ(c.calls(), 5) << "one sum, a reduce-scatter, an all-gather and two started sums";
}

TEST(Communicator, GlooCollectivesOfTwoRanks) {
  on_ranks(2, at::kCPU, [](Communicator& c, int rank) { check_collectives(c, rank, at::kCPU); });
}

TEST(Devices, NcclCollectivesOfOneRank) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  on_ranks(1, at::Device(at::kCUDA, 0),
           [](Communicator& c, int rank) { check_collectives(c, rank, at::Device(at::kCUDA, 0)); });
}

}  // namespace
}  // namespace gradacc
