// The Communicator's collectives between two ranks of one process (two threads, a real TCPStore
// and a real c10d group over loopback), against sums and concatenations computed here: Gloo on the
// CPU always; NCCL on a GPU when there is one (one rank alone: NCCL does not put two ranks on one
// device).
#include "sync/communicator.h"

#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <gtest/gtest.h>

#include "gradacc/device.h"
#include "testing/ranks.h"

namespace gradacc {
namespace {

using testing::on_ranks;

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

  // ZeRO-2's reduces: each to its root, which alone is guaranteed the sum.
  at::Tensor to_first = base * (rank + 1), to_last = base * (rank + 1) * 3;
  c.start_reduce(to_first, 0);
  c.start_reduce(to_last, world - 1);
  c.wait_pending();
  if (rank == 0) {
    EXPECT_TRUE(at::equal(to_first.cpu(), (base * sum_factor).cpu()));
  }
  if (rank == world - 1) {
    EXPECT_TRUE(at::equal(to_last.cpu(), (base * sum_factor * 3).cpu()));
  }

  EXPECT_TRUE(c.all_agree(true));
  EXPECT_FALSE(c.all_agree(rank != world - 1));  // the last rank says no: every rank hears it
  EXPECT_EQ(c.calls(), 7) << "one sum, a reduce-scatter, an all-gather, two started sums and two reduces";
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
