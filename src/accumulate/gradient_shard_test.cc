// ZeRO-2 over two real ranks (two threads, a real c10d Gloo group): each rank accumulates its half
// of every window in the shard alone, and the weights must come out as one process accumulating
// the whole window — with uneven micro-batches, a rank left without examples for a micro-batch,
// clipping on every step, and buckets small enough to cut parameters in pieces and to cross the
// shard edge. Also: the collectives of a window, and that no rank keeps a whole gradient.
#include "accumulate/gradient_shard.h"

#include <functional>
#include <memory>

#include <ATen/ops/randn.h>
#include <ATen/ops/tanh.h>
#include <gtest/gtest.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/adamw.h>
#include <torch/utils.h>

#include "accumulate/accumulator.h"
#include "gradacc/device.h"
#include "testing/ranks.h"
#include "testing/test_util.h"

namespace gradacc {
namespace {

constexpr int kSteps = 3;

// A network and how to run it: gradacc's hooks see only its parameters, in registration order.
struct Net {
  std::shared_ptr<torch::nn::Module> module;
  std::function<at::Tensor(const at::Tensor&)> forward;
};

torch::nn::Sequential seeded_sequential() {
  torch::manual_seed(11);
  return torch::nn::Sequential(torch::nn::Linear(6, 10), torch::nn::Tanh(), torch::nn::Linear(10, 3));
}

Net seeded_net() {
  torch::nn::Sequential seq = seeded_sequential();
  return {seq.ptr(), [seq](const at::Tensor& x) mutable { return seq->forward(x); }};
}

// The layer applied last is registered first: its gradients arrive first but lie in the buckets
// reduced last, so buckets fill out of order and a bucket is needed again while it is in flight.
Net seeded_reversed_net() {
  torch::manual_seed(11);
  auto module = std::make_shared<torch::nn::Module>();
  auto late = module->register_module("late", torch::nn::Linear(10, 3));
  auto early = module->register_module("early", torch::nn::Linear(6, 10));
  return {module, [late, early](const at::Tensor& x) mutable { return late->forward(at::tanh(early->forward(x))); }};
}

// The window of step s, as micro-batches per rank: rank 0 has three (5, 3 and 2 rows), rank 1 two
// (4 and 4 rows) and an empty third; world 1 runs the union as its own micro-batches.
struct Rows {
  at::Tensor x, y;
};
std::vector<std::vector<Rows>> window(int step) {
  torch::manual_seed(100 + step);
  const std::vector<std::vector<int64_t>> sizes = {{5, 3, 2}, {4, 4, 0}};
  std::vector<std::vector<Rows>> out(2);
  for (int r = 0; r < 2; ++r) {
    for (int64_t n : sizes[r]) out[r].push_back({at::randn({n, 6}), at::randn({n, 3})});
  }
  return out;
}

at::Tensor squared_error(Net& net, const Rows& b) { return (net.forward(b.x) - b.y).pow(2).sum(); }

AccumulatorOptions options() { return AccumulatorOptions().nominal_count_(18).max_grad_norm_(0.05); }

at::Tensor flat_weights(const Net& net) {
  std::vector<at::Tensor> parts;
  for (const at::Tensor& p : net.module->parameters()) parts.push_back(p.detach().reshape({-1}));
  return at::cat(parts);
}

struct TwoRanks {
  at::Tensor expected;  // one process, the whole window
  std::vector<at::Tensor> weights = std::vector<at::Tensor>(2);
  std::vector<std::vector<StepReport>> reports = std::vector<std::vector<StepReport>>(2);
  std::vector<int64_t> buckets = std::vector<int64_t>(2), staging = std::vector<int64_t>(2),
                       peak_staging = std::vector<int64_t>(2);
};

// kSteps windows on two real Gloo ranks under ZeRO-2 (buckets of `bucket_bytes`), and the same
// windows in one process.
TwoRanks two_ranks_and_one_process(const std::function<Net()>& make, int64_t bucket_bytes) {
  TwoRanks out;
  Net whole = make();
  torch::optim::AdamW whole_opt(whole.module->parameters(), torch::optim::AdamWOptions(0.01));
  Accumulator reference(*whole.module, whole_opt, nullptr, options());
  for (int s = 0; s < kSteps; ++s) {
    for (const auto& rank : window(s)) {
      for (const Rows& b : rank) {
        if (b.x.size(0) > 0) reference.accumulate(squared_error(whole, b), b.x.size(0), b.x.size(0));
      }
    }
    EXPECT_LT(reference.step().clip_coef, 1.0) << "clipping must act for the test to see the global norm";
  }
  out.expected = flat_weights(whole);

  std::vector<std::vector<std::vector<Rows>>> windows;
  for (int s = 0; s < kSteps; ++s) windows.push_back(window(s));
  std::vector<Net> nets = {make(), make()};
  testing::on_ranks(2, at::kCPU, [&](Communicator& c, int rank) {
    Net& net = nets[rank];
    ZeroShard zero(*net.module, rank, 2, std::nullopt, /*stage=*/2);
    torch::optim::AdamW opt(std::vector<at::Tensor>{zero.shard_param()}, torch::optim::AdamWOptions(0.01));
    Accumulator acc(*net.module, opt, nullptr, options(), nullptr, nullptr, &zero);
    acc.set_reducer(&c);
    acc.set_overlap(bucket_bytes);
    for (int s = 0; s < kSteps; ++s) {
      for (const Rows& b : windows[s][rank]) {
        if (b.x.size(0) == 0)
          acc.empty_micro_batch();
        else
          acc.accumulate(squared_error(net, b), b.x.size(0), b.x.size(0));
        for (const at::Tensor& p : net.module->parameters())
          EXPECT_FALSE(p.grad().defined()) << "a whole gradient kept";
      }
      out.reports[rank].push_back(acc.step());
    }
    EXPECT_FALSE(acc.flat_grad().defined());
    out.buckets[rank] = acc.gradient_shard()->buckets();
    out.staging[rank] = acc.gradient_shard()->staging_bytes();
    out.peak_staging[rank] = acc.gradient_shard()->peak_staging_bytes();
    out.weights[rank] = flat_weights(net);
  });
  return out;
}

TEST(GradientShard, TwoRanksAccumulateInTheirShardsExactlyAsOneProcess) {
  // 12-element buckets, capped at 1/8 of the shard (7): parameters cut in pieces.
  const TwoRanks r = two_ranks_and_one_process(seeded_net, 48);
  for (int rank = 0; rank < 2; ++rank) {
    ASSERT_TRUE(r.weights[rank].defined());
    EXPECT_LT((r.weights[rank] - r.expected).abs().max().item<double>(), 1e-5) << "rank " << rank;
    // 103 parameters in buckets of 7 elements, none across the shard edge at 52: 8 + 8 buckets.
    EXPECT_EQ(r.buckets[rank], 16);
    EXPECT_EQ(r.staging[rank], 2 * 7 * 4) << "two staging buffers of one bucket";
    for (const StepReport& step : r.reports[rank]) {
      EXPECT_EQ(step.samples, 18);
      EXPECT_EQ(step.allreduce_calls, 3 * 16 + 2) << "micro-batches × buckets reduces, the counts, the all-gather";
    }
  }
}

// Gradients in another order than the buckets': a bucket still in flight from the last micro-batch
// is waited for before it fills again (else the next micro-batch's gradient would be added into a
// buffer being reduced), and the pool grows for buckets that fill ahead of their turn.
TEST(GradientShard, GradientsOutOfBucketOrderStayExact) {
  const TwoRanks r = two_ranks_and_one_process(seeded_reversed_net, 48);
  for (int rank = 0; rank < 2; ++rank) {
    ASSERT_TRUE(r.weights[rank].defined());
    EXPECT_LT((r.weights[rank] - r.expected).abs().max().item<double>(), 1e-5) << "rank " << rank;
    EXPECT_GT(r.peak_staging[rank], 2 * 7 * 4) << "buckets filled ahead of their turn need buffers of their own";
    EXPECT_EQ(r.staging[rank], 2 * 7 * 4) << "the pool is back to two buffers between windows";
  }
}

// NCCL (on a GPU when there is one): one rank, its reduces to itself through a real
// ProcessGroupNCCL, against a plain accumulator on the same device. scripts/gpu-check.sh runs it.
TEST(Devices, NcclZero2OfOneRank) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  const at::Device cuda(at::kCUDA, 0);
  Net whole = seeded_net();
  whole.module->to(cuda);
  torch::optim::AdamW whole_opt(whole.module->parameters(), torch::optim::AdamWOptions(0.01));
  Accumulator reference(*whole.module, whole_opt, nullptr, options());
  Net net = seeded_net();
  net.module->to(cuda);
  std::vector<int64_t> calls;
  testing::on_ranks(1, cuda, [&](Communicator& c, int) {
    ZeroShard zero(*net.module, 0, 1, std::nullopt, /*stage=*/2);
    torch::optim::AdamW opt(std::vector<at::Tensor>{zero.shard_param()}, torch::optim::AdamWOptions(0.01));
    Accumulator acc(*net.module, opt, nullptr, options(), nullptr, nullptr, &zero);
    acc.set_reducer(&c);
    acc.set_overlap(48);
    for (int s = 0; s < kSteps; ++s) {
      for (const auto& rank : window(s)) {
        for (const Rows& b : rank) {
          if (b.x.size(0) == 0) continue;
          const Rows on{b.x.to(cuda), b.y.to(cuda)};
          acc.accumulate(squared_error(net, on), b.x.size(0), b.x.size(0));
          reference.accumulate(squared_error(whole, on), b.x.size(0), b.x.size(0));
        }
      }
      calls.push_back(acc.step().allreduce_calls);
      reference.step();
    }
  });
  EXPECT_LT((flat_weights(net) - flat_weights(whole)).abs().max().item<double>(), 1e-5);
  // 103 parameters in one shard, buckets of 12 elements (1/8 of the shard is 13): 9 buckets, five
  // micro-batches per window.
  for (int64_t n : calls) EXPECT_EQ(n, 5 * 9 + 2);
}

}  // namespace
}  // namespace gradacc
