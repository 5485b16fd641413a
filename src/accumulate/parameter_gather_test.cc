// ZeRO-3's parts below the Trainer: the stage-3 layout (ZeroShard), its units' memory coming and
// going, and ParameterGather over two real Gloo ranks (threads) driving a model of the user's own
// that declares its blocks with gradacc::Units — against one process training the whole windows.
#include "accumulate/parameter_gather.h"

#include <memory>
#include <vector>

#include <ATen/ops/cat.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/tanh.h>
#include <gtest/gtest.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/adamw.h>
#include <torch/utils.h>

#include "accumulate/accumulator.h"
#include "gradacc/device.h"
#include "gradacc/errors.h"
#include "gradacc/model.h"
#include "testing/ranks.h"

namespace gradacc {
namespace {

// Three blocks declared as units, and a head outside them (the root unit).
struct Blocks : torch::nn::Module {
  Blocks() {
    torch::manual_seed(5);
    for (int i = 0; i < 3; ++i) {
      blocks.push_back(register_module("b" + std::to_string(i), torch::nn::Linear(6, 6)));
      units.add(blocks.back().ptr());
    }
    head = register_module("head", torch::nn::Linear(6, 2));
  }
  at::Tensor forward(const at::Tensor& x) {
    at::Tensor h = x;
    for (size_t i = 0; i < blocks.size(); ++i)
      h = units.run(
          i, [this, i](const at::Tensor& in) { return at::tanh(blocks[i]->forward(in)); }, h);
    return head->forward(h);
  }
  std::vector<torch::nn::Linear> blocks;
  torch::nn::Linear head{nullptr};
  Units units;
};

std::vector<std::vector<int64_t>> layout() { return {{0, 1}, {2, 3}, {4, 5}, {6, 7}}; }  // 3 blocks, the head

at::Tensor flat(torch::nn::Module& m) {
  std::vector<at::Tensor> parts;
  for (const at::Tensor& p : m.parameters()) parts.push_back(p.detach().reshape({-1}).clone());
  return at::cat(parts);
}

TEST(ZeroShardStage3, RanksOwnEveryElementOnceAndUnitsComeAndGo) {
  const int world = 3;
  std::vector<int> owner(6 * 6 * 3 + 6 * 3 + 6 * 2 + 2, 0);
  for (int r = 0; r < world; ++r) {
    Blocks m;
    const at::Tensor before = flat(m);
    ZeroShard z(m, r, world, std::nullopt, 3, layout(), /*last_unit_first=*/true);
    EXPECT_EQ(z.units(), 4);
    int64_t covered = 0;
    for (const ZeroShard::OwnedRange& o : z.owned_ranges()) {
      for (int64_t e = o.element; e < o.element + o.length; ++e) ++owner[e];
      // The shard holds the parameters' own values at those places.
      EXPECT_TRUE(
          at::equal(z.shard_param().narrow(0, o.shard_offset, o.length), before.narrow(0, o.element, o.length)));
      covered += o.length;
    }
    EXPECT_LE(covered, z.length());
    for (size_t k = 1; k < z.segments().size(); ++k) EXPECT_LE(z.segments()[k - 1].end, z.segments()[k].begin);
    // Freeing a unit takes its memory and keeps its parameters' shapes; allocating gives it back.
    const at::Tensor w = m.blocks[1]->weight;
    z.free_unit(1);
    EXPECT_FALSE(z.unit_allocated(1));
    EXPECT_EQ(w.storage().nbytes(), 0u);
    EXPECT_EQ(w.sizes(), at::IntArrayRef({6, 6}));
    z.allocate_unit(1);
    EXPECT_EQ(w.storage().nbytes(), static_cast<size_t>(z.unit_bytes(1)));
  }
  for (int count : owner) EXPECT_EQ(count, 1) << "every element in exactly one rank's shard";

  Blocks m;
  EXPECT_THROW(ZeroShard(m, 0, 2, std::nullopt, 3, {{0, 1}, {1, 2}}), ConfigError);      // a parameter twice
  EXPECT_THROW(ZeroShard(m, 0, 2, std::nullopt, 3, {{0, 1, 2, 3, 4, 5}}), ConfigError);  // the head in none
  EXPECT_THROW(ZeroShard(m, 0, 2, std::nullopt, 2, layout()), ConfigError);              // units at stage 2
}

TEST(Units, RunWithoutAnObserverIsTheSegmentAndModelOfFindsThem) {
  auto m = std::make_shared<Blocks>();
  const Model model = Model::of(m);
  ASSERT_EQ(model.units, &m->units);
  const at::Tensor x = at::randn({4, 6});
  at::Tensor plain = x;
  for (auto& b : m->blocks) plain = at::tanh(b->forward(plain));
  EXPECT_TRUE(at::equal(m->forward(x), m->head->forward(plain)));
  EXPECT_TRUE(model.set_activation_checkpointing && model.set_activation_checkpointing(true));
  EXPECT_TRUE(at::allclose(m->forward(x), m->head->forward(plain)));
  EXPECT_THROW(m->units.run(
                   7, [](const at::Tensor& t) { return t; }, x),
               ConfigError);
  EXPECT_THROW(m->units.add(std::shared_ptr<torch::nn::Module>()), ConfigError);
  EXPECT_FALSE(Units().set_checkpointing(true)) << "no units, nothing to checkpoint";
}

// Two ranks, each with half of every window, under ZeRO-3 with resharding after the forward (and
// without), against one process; all-gathers per window micro-batches × (1 + 2 × 3), and between
// micro-batches no unit holds memory. Keeping units for the window with the gradient summed
// unsharded (no_sync): 1 + 3 gathers per window, every unit whole between its micro-batches and
// none after the step.
// `overlap_last`: unsharded accumulation's one reduction starts during the window's last backward.
void two_ranks_match_one_process(bool reshard, bool keep_for_window = false, bool overlap_last = false) {
  const AccumulatorOptions options = AccumulatorOptions().nominal_count_(16).max_grad_norm_(0.05);
  std::vector<std::vector<at::Tensor>> xs(3), ys(3);
  torch::manual_seed(9);
  for (int s = 0; s < 3; ++s) {
    for (int k = 0; k < 4; ++k) {  // micro-batches of 4 rows: ranks take k = 0, 1 and 2, 3
      xs[s].push_back(at::randn({4, 6}));
      ys[s].push_back(at::randn({4, 2}));
    }
  }
  const auto loss = [](Blocks& m, const at::Tensor& x, const at::Tensor& y) { return (m.forward(x) - y).pow(2).sum(); };
  Blocks whole;
  torch::optim::AdamW whole_opt(whole.parameters(), torch::optim::AdamWOptions(0.01));
  Accumulator reference(whole, whole_opt, nullptr, options);
  for (int s = 0; s < 3; ++s) {
    for (int k = 0; k < 4; ++k) reference.accumulate(loss(whole, xs[s][k], ys[s][k]), 4, 4);
    EXPECT_LT(reference.step().clip_coef, 1.0);
  }
  std::vector<Blocks> nets(2);
  std::vector<std::vector<int64_t>> gathers(2);
  testing::on_ranks(2, at::kCPU, [&](Communicator& c, int rank) {
    Blocks& net = nets[rank];
    ZeroShard zero(net, rank, 2, std::nullopt, 3, layout(), /*last_unit_first=*/true);
    torch::optim::AdamW opt(std::vector<at::Tensor>{zero.shard_param()}, torch::optim::AdamWOptions(0.01));
    Accumulator acc(net, opt, nullptr, options, nullptr, nullptr, &zero);
    acc.set_reducer(&c);
    acc.set_overlap(64);
    ParameterGather gather(zero, &net.units, &c, ParameterGatherOptions{reshard, true, keep_for_window});
    acc.set_parameter_gather(&gather);
    acc.set_accumulate_unsharded(keep_for_window);
    gather.shard();
    for (int s = 0; s < 3; ++s) {
      int64_t calls_after_first = 0;
      for (int k = 2 * rank; k < 2 * rank + 2; ++k) {
        if (overlap_last && k == 2 * rank + 1) acc.overlap_next_backward();
        {
          const GatheredMicroBatch scope(&gather);
          acc.accumulate(loss(net, xs[s][k], ys[s][k]), 4, 4);
        }
        for (int64_t u = 0; u < zero.units(); ++u) EXPECT_EQ(zero.unit_allocated(u), keep_for_window) << "unit " << u;
        if (k == 2 * rank) calls_after_first = c.calls();
      }
      // Unsharded: the reduces were issued by the last micro-batch itself, or wait for the step.
      if (keep_for_window) {
        EXPECT_EQ(c.calls() > calls_after_first, overlap_last) << "step " << s;
      }
      gathers[rank].push_back(acc.step().parameter_gathers);
      for (int64_t u = 0; u < zero.units(); ++u) EXPECT_FALSE(zero.unit_allocated(u)) << "after the step, unit " << u;
    }
    gather.unshard();  // whole again, on every rank
  });
  for (int rank = 0; rank < 2; ++rank) {
    EXPECT_LT((flat(nets[rank]) - flat(whole)).abs().max().item<double>(), 1e-6) << "rank " << rank;
    for (int64_t g : gathers[rank]) EXPECT_EQ(g, keep_for_window ? 1 + 3 : 2 * (1 + (reshard ? 2 : 1) * 3));
  }
}

TEST(ParameterGather, TwoRanksReshardingAfterTheForwardMatchOneProcess) { two_ranks_match_one_process(true); }
TEST(ParameterGather, TwoRanksKeepingUnitsToTheBackwardMatchOneProcess) { two_ranks_match_one_process(false); }
TEST(ParameterGather, TwoRanksAccumulatingUnshardedForTheWindowMatchOneProcess) {
  two_ranks_match_one_process(false, /*keep_for_window=*/true);
}
TEST(ParameterGather, UnshardedAccumulationReducesDuringTheLastBackwardAndStaysExact) {
  two_ranks_match_one_process(false, /*keep_for_window=*/true, /*overlap_last=*/true);
}

// NCCL (on a GPU when there is one): one rank whose units are gathered by a real ProcessGroupNCCL
// all-gather, against a plain accumulator on the same device. scripts/gpu-check.sh runs it.
TEST(Devices, NcclZero3OfOneRank) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  const at::Device cuda(at::kCUDA, 0);
  const AccumulatorOptions options = AccumulatorOptions().nominal_count_(8).max_grad_norm_(0.05);
  Blocks whole, net;
  whole.to(cuda);
  net.to(cuda);
  torch::optim::AdamW whole_opt(whole.parameters(), torch::optim::AdamWOptions(0.01));
  Accumulator reference(whole, whole_opt, nullptr, options);
  std::vector<int64_t> gathers;
  testing::on_ranks(1, cuda, [&](Communicator& c, int) {
    ZeroShard zero(net, 0, 1, std::nullopt, 3, layout(), /*last_unit_first=*/true);
    torch::optim::AdamW opt(std::vector<at::Tensor>{zero.shard_param()}, torch::optim::AdamWOptions(0.01));
    Accumulator acc(net, opt, nullptr, options, nullptr, nullptr, &zero);
    acc.set_reducer(&c);
    acc.set_overlap(64);
    ParameterGather gather(zero, &net.units, &c, ParameterGatherOptions{});
    acc.set_parameter_gather(&gather);
    gather.shard();
    torch::manual_seed(3);
    for (int s = 0; s < 3; ++s) {
      for (int k = 0; k < 2; ++k) {
        const at::Tensor x = at::randn({4, 6}).to(cuda), y = at::randn({4, 2}).to(cuda);
        {
          const GatheredMicroBatch scope(&gather);
          acc.accumulate((net.forward(x) - y).pow(2).sum(), 4, 4);
        }
        reference.accumulate((whole.forward(x) - y).pow(2).sum(), 4, 4);
      }
      gathers.push_back(acc.step().parameter_gathers);
      reference.step();
    }
    gather.unshard();
  });
  EXPECT_LT((flat(net) - flat(whole)).abs().max().item<double>(), 1e-5);
  for (int64_t g : gathers) EXPECT_EQ(g, 2 * (1 + 2 * 3));
}

}  // namespace
}  // namespace gradacc
