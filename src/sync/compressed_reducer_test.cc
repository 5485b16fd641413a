// The 16-bit wire (sync/compressed_reducer.h) on 3 Gloo ranks of one process, against sums in
// fp64 computed here: every rank ends with the same values; each value's error stays within two
// roundings of its chunk's largest magnitude, whatever the ranks; reduce-scatter and a reduce to
// one rank round only the contributions; Inf travels; counted bytes are half an fp32 reduction's.
// Beside it, c10d's own bf16 all-reduce of the same numbers (Gloo sums in bf16), for the record.
#include "sync/compressed_reducer.h"

#include <cmath>
#include <cstdio>
#include <limits>

#include <ATen/ops/equal.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/zeros.h>
#include <gtest/gtest.h>

#include "testing/ranks.h"

namespace gradacc {
namespace {

using testing::on_ranks;

constexpr int kWorld = 3;
constexpr int64_t kN = 1000;  // not a multiple of 3: the last chunk is padded

// Rank r's contribution: normal values whose scale changes by decades along the buffer (1e-6 to
// 1e3), the same on every rank for a given r.
at::Tensor contribution(int r) {
  at::Generator g = at::detail::createCPUGenerator(100 + r);
  const at::Tensor scale = at::pow(10.0, (at::arange(kN, at::kDouble) / kN * 9 - 6).floor());
  return (at::randn({kN}, g, at::kDouble) * scale).to(at::kFloat);
}

at::Tensor exact_sum() {
  at::Tensor s = at::zeros({kN}, at::kDouble);
  for (int r = 0; r < kWorld; ++r) s += contribution(r).to(at::kDouble);
  return s;
}

// |error| of each value against u × (the sum over ranks of its chunk's largest contribution, plus
// the chunk's largest sum): the bound of two roundings. Returns the largest error / bound.
double worst_against_bound(const at::Tensor& got, int64_t chunk, double u, bool rounded_sum) {
  const at::Tensor err = (got.to(at::kDouble) - exact_sum()).abs();
  double worst = 0;
  for (int64_t b = 0; b < kN; b += chunk) {
    const int64_t n = std::min(chunk, kN - b);
    double bound = rounded_sum ? exact_sum().narrow(0, b, n).abs().max().item<double>() : 0.0;
    for (int r = 0; r < kWorld; ++r) bound += contribution(r).narrow(0, b, n).abs().max().item<double>();
    worst = std::max(worst, err.narrow(0, b, n).max().item<double>() / (u * bound));
  }
  return worst;
}

void check_wire(Communicator& c, int rank, at::ScalarType wire, double u) {
  CompressedReducer reducer(c, wire);
  const int64_t chunk = (kN + kWorld - 1) / kWorld;

  at::Tensor flat = contribution(rank);
  reducer.sum_across_ranks(flat);
  EXPECT_LE(worst_against_bound(flat, chunk, u, true), 1.0);
  at::Tensor first = flat.clone();
  c.sum_exact(first);  // every rank holds the same values: the sum of three copies is 3 ×
  EXPECT_TRUE(at::equal(first, flat * 3)) << "ranks disagree";

  // Buckets started together (overlap), and a reduce to one rank among them.
  at::Tensor a = contribution(rank), b = contribution(rank) * 2, to_last = contribution(rank);
  reducer.start_sum(a);
  reducer.start_reduce(to_last, kWorld - 1);
  reducer.start_sum(b);
  reducer.wait_pending();
  EXPECT_TRUE(at::equal(a, flat));
  EXPECT_LE(worst_against_bound(b / 2, chunk, u, true), 1.0);
  if (rank == kWorld - 1) {
    EXPECT_LE(worst_against_bound(to_last, kN, u, false), 1.0);
  }

  // ZeRO-1's reduce-scatter: the fp32 sum of the rounded contributions (one rounding).
  at::Tensor padded = at::zeros({kWorld * chunk});
  padded.narrow(0, 0, kN).copy_(contribution(rank));
  at::Tensor shard = at::zeros({chunk});
  reducer.reduce_scatter(padded, shard);
  at::Tensor whole = at::zeros({kWorld * chunk});
  c.all_gather(shard, whole);
  EXPECT_LE(worst_against_bound(whole.narrow(0, 0, kN), chunk, u, false), 1.0);

  // An overflow travels: fp16 loss scaling must still see it.
  at::Tensor inf = contribution(rank);
  if (rank == 1) inf[7] = std::numeric_limits<float>::infinity();
  reducer.sum_across_ranks(inf);
  EXPECT_TRUE(std::isinf(inf[7].item<float>()));

  EXPECT_EQ(reducer.bytes() - c.bytes(), 2 * (kN * 5 + kWorld * chunk)) << "2 bytes per value reduced";
}

TEST(CompressedReducer, Bf16WireSumsInFp32WithinTwoRoundings) {
  on_ranks(kWorld, at::kCPU,
           [](Communicator& c, int rank) { check_wire(c, rank, at::kBFloat16, std::ldexp(1.0, -8)); });
}

TEST(CompressedReducer, Fp16WireNeitherOverflowsNorUnderflows) {
  on_ranks(kWorld, at::kCPU, [](Communicator& c, int rank) { check_wire(c, rank, at::kHalf, std::ldexp(1.0, -11)); });
}

TEST(CompressedReducer, AgainstAReductionIn16Bits) {
  // The same numbers through c10d's bf16 all-reduce (every partial sum rounded to bf16) and
  // through the compressed reducer: the median relative error of each (printed for
  // docs/distributed.md), and ours no worse.
  on_ranks(kWorld, at::kCPU, [](Communicator& c, int rank) {
    CompressedReducer reducer(c, at::kBFloat16);
    at::Tensor ours = contribution(rank);
    reducer.sum_across_ranks(ours);
    at::Tensor theirs = contribution(rank).to(at::kBFloat16);
    c.sum_across_ranks(theirs);
    const at::Tensor exact = exact_sum();
    const auto rel = [&](const at::Tensor& t) { return ((t.to(at::kDouble) - exact).abs() / exact.abs()).median(); };
    const double mine = rel(ours).item<double>(), naive = rel(theirs).item<double>();
    if (rank == 0)
      std::printf("bf16 on the wire, 3 ranks: median relative error %.3g (fp32 sums) against %.3g (bf16 all-reduce)\n",
                  mine, naive);
    EXPECT_LE(mine, naive);
  });
}

}  // namespace
}  // namespace gradacc
