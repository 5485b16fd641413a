// The promises that depend on the device, checked on every device this machine has: each test runs
// once on the CPU and once on CUDA, and the CUDA case skips (saying why) where there is no usable
// GPU. fp32 on CUDA runs with TF32 off (gradacc's default), so the tolerances are float rounding.
#include "gradacc/device.h"

#include <filesystem>
#include <iostream>
#include <numeric>
#include <sstream>

#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/equal.h>
#include <gtest/gtest.h>
#include <torch/optim/sgd.h>
#include <torch/utils.h>

#include "accumulate/accumulator.h"
#include "app/job.h"
#include "builtin/fashion_mnist.h"
#include "builtin/models.h"
#include "builtin/text.h"
#include "gradacc/optimizer.h"
#include "gradacc/precision.h"
#include "gradacc/safetensors.h"
#include "gradacc/trainer.h"
#include "memory/planner.h"
#include "precision/loss_scaler.h"
#include "testing/test_util.h"
#include "train/train_loop.h"

namespace gradacc {
namespace {

using testing::but;
using testing::rel_diff;
using testing::temp_path;

constexpr const char* kText = "/usr/share/common-licenses/GPL-3";

class OnDevice : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() != "cpu" && !cuda_available()) {
      GTEST_SKIP() << "no CUDA case here: " << (cuda_linked() ? "no usable CUDA device or driver" : "a CPU-only build");
    }
    device_ = resolve_device(GetParam());
    if (device_.is_cuda()) set_cuda_tf32(false);
  }
  at::Device device_{at::kCPU};
};

INSTANTIATE_TEST_SUITE_P(Devices, OnDevice, ::testing::Values("cpu", "cuda"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

ModelSpec gpt_spec() {
  ModelSpec s;
  s.kind = ModelKind::kGpt;
  s.layers = 2;
  s.heads = 2;
  s.dim = 32;
  s.context = 64;
  return s;
}

struct Case {
  ModelSpec spec;
  std::shared_ptr<Dataset> data;
  int64_t classes;
};

Case workload(const std::string& name) {
  if (name == "gpt") {
    static auto text = load_text(kText, 64).train;
    return {gpt_spec(), text->head(100), kByteVocab};
  }
  static auto images = load_fashion_mnist(kFashionMnistDir, Split::kTrain);
  return {name == "mlp" ? ModelSpec{ModelKind::kMlp} : ModelSpec{ModelKind::kCnn, NormKind::kGroup}, images->head(100),
          10};
}

std::shared_ptr<Network> seeded(const Case& w, const at::Device& device) {
  torch::manual_seed(11);
  auto m = make_model(w.spec, w.classes);
  m->to(device);
  return m;
}

std::vector<at::Tensor> snapshot(Network& m) {
  std::vector<at::Tensor> out;
  for (const auto& p : m.parameters()) out.push_back(p.detach().to(at::kCPU, at::kDouble));
  return out;
}

// One optimizer step through the training path itself (train_steps → Accumulator::step, plain SGD
// with lr 1, so the update *is* the window gradient and any error in the count rescale shows at
// full size), against an independent full-batch gradient of the same window (mean over its items,
// one backward). Windows of 64 over 100 examples: the second window is a short one of 36, split
// 16 + 16 + 4 (the last micro-batch short too); for gpt the micro-batches are padded text.
TEST_P(OnDevice, SgdStepEqualsFullBatchGradientIncludingTheShortWindow) {
  for (const std::string name : {"mlp", "cnn", "gpt"}) {
    const Case w = workload(name);
    const BatchPlan plan = BatchPlan::resolve({64, 16, std::nullopt, std::nullopt});
    const WindowSampler sampler(w.data->size(), plan, {/*shuffle=*/true, /*seed=*/3, /*drop_partial=*/false, 0});
    auto model = seeded(w, device_);
    torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(1.0));
    const bool text = name == "gpt";
    Accumulator acc(*model, sgd, nullptr,
                    AccumulatorOptions()
                        .normalization_(text ? Normalization::kPerItem : Normalization::kPerSample)
                        .nominal_count_(64));
    LoopPosition pos;
    testing::run_steps(model, acc, *w.data, sampler, 1, device_, pos);  // the full window: prime the position
    const std::vector<at::Tensor> before = snapshot(*model);
    const Window window = sampler.window_at(sampler.epoch_order(0), 0, 1, 64, plan.accumulation_steps);
    std::vector<int64_t> all;
    for (const auto& mb : window.micro_batches) all.insert(all.end(), mb.begin(), mb.end());
    ASSERT_EQ(all.size(), 36u);
    const std::vector<StepReport> r = testing::run_steps(model, acc, *w.data, sampler, 1, device_, pos);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].samples, 36);
    const std::vector<at::Tensor> after = snapshot(*model);

    // Reference: the same weights, the whole short window at once, mean loss, one backward.
    auto ref = seeded(w, device_);
    {
      torch::NoGradGuard no_grad;
      auto rp = ref->parameters();
      for (size_t i = 0; i < rp.size(); ++i) rp[i].copy_(before[i]);
    }
    const Batch b = w.data->gather(all).to(device_);
    summed_cross_entropy(ref->forward(b.inputs), b.targets).div(static_cast<double>(b.items)).backward();
    double num = 0, den = 0;
    auto rp = ref->parameters();
    for (size_t i = 0; i < rp.size(); ++i) {
      const at::Tensor update = before[i] - after[i];
      const at::Tensor g = rp[i].grad().to(at::kCPU, at::kDouble);
      num += (update - g).pow(2).sum().item<double>();
      den += g.pow(2).sum().item<double>();
    }
    // fp32: the measured difference is ~1e-7 (summation order); a wrong count is off by ≥ 1e-1.
    EXPECT_LT(std::sqrt(num / den), 2e-6) << name;
  }
}

// The same window's gradient on CUDA and on the CPU (fp32, TF32 off): equal within float rounding.
TEST_P(OnDevice, GradientMatchesTheCpu) {
  if (!device_.is_cuda()) GTEST_SKIP() << "compares a device with the CPU";
  for (const std::string name : {"mlp", "cnn", "gpt"}) {
    const Case w = workload(name);
    std::vector<int64_t> idx(32);
    std::iota(idx.begin(), idx.end(), 0);
    std::vector<at::Tensor> grads;
    for (const at::Device d : {at::Device(at::kCPU), device_}) {
      auto m = seeded(w, at::kCPU);
      m->to(d);
      const Batch b = w.data->gather(idx).to(d);
      summed_cross_entropy(m->forward(b.inputs), b.targets).div(static_cast<double>(b.items)).backward();
      grads.push_back(testing::flat_grads(*m).to(at::kCPU));
    }
    EXPECT_LT(rel_diff(grads[1], grads[0]), 1e-5) << name;
  }
}

// bf16 autocast: accumulating 4 micro-batches equals the bf16 full batch within bf16 rounding.
TEST_P(OnDevice, Bf16AccumulationMatchesBf16FullBatch) {
  const Case w = workload("gpt");
  std::vector<int64_t> idx(32);
  std::iota(idx.begin(), idx.end(), 0);
  auto ref = seeded(w, device_);
  const Batch full = w.data->gather(idx).to(device_);
  at::Tensor loss;
  {
    AutocastGuard autocast(device_.type(), Precision::kBf16);
    loss = summed_cross_entropy(ref->forward(full.inputs), full.targets);
  }
  loss.div(static_cast<double>(full.items)).backward();
  const at::Tensor reference = testing::flat_grads(*ref).to(at::kCPU);

  auto m = seeded(w, device_);
  torch::optim::SGD sgd(m->parameters(), 0.1);
  Accumulator acc(*m, sgd, nullptr, AccumulatorOptions().normalization_(Normalization::kPerItem).nominal_count_(32));
  for (int64_t s = 0; s < 32; s += 8) {
    const Batch b = w.data->gather(std::vector<int64_t>(idx.begin() + s, idx.begin() + s + 8)).to(device_);
    at::Tensor l;
    {
      AutocastGuard autocast(device_.type(), Precision::kBf16);
      l = summed_cross_entropy(m->forward(b.inputs), b.targets);
    }
    acc.accumulate(l, b.samples, b.items);
  }
  // Measured on the CPU: ~2e-3 (bf16 products summed in other groupings); the bf16-vs-fp32 gap is ~3e-2.
  EXPECT_LT(rel_diff(acc.window_gradient().to(at::kCPU), reference), 2e-2);
}

// fp16 with a loss scale far too large: every window overflows, is skipped (weights untouched)
// and the scale backs off, on the device as on the CPU.
TEST_P(OnDevice, Fp16OverflowSkipsTheUpdateAndBacksOff) {
  const Case w = workload("mlp");
  auto m = seeded(w, device_);
  torch::optim::SGD sgd(m->parameters(), 0.1);
  LossScalerOptions so;
  so.init_scale = 1e38;  // the fp16 backward overflows at once
  LossScaler scaler(so);
  Accumulator acc(*m, sgd, nullptr, AccumulatorOptions().nominal_count_(32), nullptr, &scaler);
  const auto before = snapshot(*m);
  std::vector<int64_t> idx(32);
  std::iota(idx.begin(), idx.end(), 0);
  const Batch b = w.data->gather(idx).to(device_);
  at::Tensor l;
  {
    AutocastGuard autocast(device_.type(), Precision::kFp16);
    l = summed_cross_entropy(m->forward(b.inputs), b.targets);
  }
  acc.accumulate(l, b.samples, b.items);
  const StepReport r = acc.step();
  EXPECT_TRUE(r.skipped);
  EXPECT_EQ(scaler.scale(), 1e38 * so.backoff_factor);
  const auto after = snapshot(*m);
  for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(at::equal(before[i], after[i]));
}

// No host sync per micro-batch: the batch copy, forward, loss and backward of four micro-batches
// issue no synchronizing CUDA call; the boundary issues exactly one (the loss and norm read).
TEST_P(OnDevice, NoHostSyncInsideTheWindowAndOneAtTheBoundary) {
  if (!device_.is_cuda()) GTEST_SKIP() << "host syncs are a CUDA matter";
  for (const std::string name : {"mlp", "cnn", "gpt"}) {
    const Case w = workload(name);
    auto m = seeded(w, device_);
    auto opt = make_optimizer(m->parameters(), OptimizerOptions{});  // fused AdamW, as train uses
    const bool text = name == "gpt";
    Accumulator acc(*m, *opt, nullptr,
                    AccumulatorOptions()
                        .normalization_(text ? Normalization::kPerItem : Normalization::kPerSample)
                        .nominal_count_(32)
                        .max_grad_norm_(1.0));
    std::vector<Batch> host_batches;
    for (int64_t s = 0; s < 32; s += 8) {
      std::vector<int64_t> idx(8);
      std::iota(idx.begin(), idx.end(), s);
      host_batches.push_back(w.data->gather(idx));
    }
    for (int round = 0; round < 2; ++round) {  // the first round warms up kernels and allocators
      int64_t inside = 0, boundary = 0;
      {
        HostSyncCounter syncs;
        ASSERT_TRUE(syncs.supported());
        for (const Batch& hb : host_batches) {
          const Batch b = hb.to(device_);
          acc.accumulate(summed_cross_entropy(m->forward(b.inputs), b.targets), b.samples, b.items);
        }
        inside = syncs.count();
      }
      {
        HostSyncCounter syncs;
        acc.step();
        boundary = syncs.count();
      }
      if (round == 1) {
        EXPECT_EQ(inside, 0) << name << ": host syncs in 4 micro-batches";
        EXPECT_EQ(boundary, 1) << name << ": host syncs at the boundary";
      }
    }
  }
}

// The per-step peak memory is reported, and it holds at least the weights and the gradient buffer.
TEST_P(OnDevice, StepReportsPeakMemory) {
  install_cpu_memory_counter();
  const Case w = workload("gpt");
  auto m = seeded(w, device_);
  int64_t param_bytes = 0;
  for (const auto& p : m->parameters()) param_bytes += p.numel() * 4;
  torch::optim::SGD sgd(m->parameters(), 0.1);
  Accumulator acc(*m, sgd, nullptr, AccumulatorOptions().normalization_(Normalization::kPerItem).nominal_count_(32));
  const BatchPlan plan = BatchPlan::resolve({32, 8, std::nullopt, std::nullopt});
  const WindowSampler sampler(w.data->size(), plan, {true, 1, false, 0});
  LoopPosition pos;
  const auto reports = testing::run_steps(m, acc, *w.data, sampler, 2, device_, pos);
  for (const StepReport& r : reports) {
    EXPECT_GE(r.peak_bytes, 2 * param_bytes);
    EXPECT_LT(r.peak_bytes, 1LL << 30);
  }
}

// Stopped after step 3 with a checkpoint and resumed, a gpt run on padded text ends with the very
// bytes of the uninterrupted run, on the device as on the CPU.
TEST_P(OnDevice, CheckpointResumeIsBitExact) {
  JobConfig c = default_job();
  c.model = gpt_spec();
  c.data = std::string("text:") + kText;
  c.train_limit = 200;
  c.train.batch().micro_batch(8).accumulation_steps(2);
  c.train.data().steps(6);
  c.train.device().name(GetParam()).threads(2);
  c.train.logging().progress(false);
  const std::string tag = "dev_resume_" + GetParam();
  std::ostringstream out;
  JobConfig whole = c;
  whole.save_path = temp_path(tag + "_whole.safetensors");
  run_train_job(whole, out);
  JobConfig first = c;
  const std::string dir = temp_path(tag + "_ckpt");
  first.train.checkpoint().dir(dir).stop_at(3);
  run_train_job(first, out);
  JobConfig second = c;
  second.train.checkpoint().resume(dir);
  second.save_path = temp_path(tag + "_resumed.safetensors");
  run_train_job(second, out);
  const TensorMap a = load_safetensors(whole.save_path), b = load_safetensors(second.save_path);
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) EXPECT_TRUE(at::equal(t, b.at(name))) << name;
  std::filesystem::remove_all(dir);
  std::filesystem::remove(whole.save_path);
  std::filesystem::remove(second.save_path);
}

// Token-budget micro-batches of packed rows on the device: a row holding several sequences attends
// through a block-diagonal causal mask, which on CUDA runs another attention kernel than plain
// causal rows (memory-efficient attention with a mask, not flash). The run must still give the
// weights of fixed padded micro-batches over the same windows. SGD, not Adam: Adam's first update is
// about the sign of each gradient, so float rounding in a near-zero gradient could move a weight by
// 2·lr; SGD's differences stay the size of the gradients' rounding (fp32, TF32 off).
TEST_P(OnDevice, PackedTokenBudgetGivesTheWeightsOfFixedMicroBatches) {
  JobConfig c = default_job();
  c.model = gpt_spec();
  c.data = std::string("text:") + kText;
  c.train_limit = 160;
  c.optimizer.name = "sgd";
  c.optimizer.lr = 0.5;
  c.train.batch().global_batch(32);
  c.train.data().steps(4);
  c.train.device().name(GetParam()).threads(2);
  c.train.logging().progress(false);
  JobConfig fixed = c, packed = c;
  fixed.train.batch().micro_batch(8);
  packed.train.batch().micro_batch_tokens(256);  // 4 rows of the 64-token context
  packed.packing = true;
  fixed.save_path = temp_path("dev_fixed_" + GetParam() + ".safetensors");
  packed.save_path = temp_path("dev_packed_" + GetParam() + ".safetensors");
  std::ostringstream out;
  run_train_job(fixed, out);
  run_train_job(packed, out);
  const double worst = testing::max_weight_difference(fixed.save_path, packed.save_path);
  std::cout << "    " << GetParam() << ": max |Δw| packed token budget vs fixed micro-batches " << worst << "\n";
  EXPECT_LT(worst, 1e-5);
  std::filesystem::remove(fixed.save_path);
  std::filesystem::remove(packed.save_path);
}

// The memory planner on the device: it probes there (on CUDA, reading the caching allocator's
// statistics), and every step of the planned run peaks within the budget, without a replay. The
// budget is the generous plan's static part plus room for about 12 rows of the longest sequence.
TEST_P(OnDevice, AMemoryBudgetPlanKeepsEveryStepWithinIt) {
  install_cpu_memory_counter();
  const Case w = workload("gpt");  // 100 padded sequences of up to 64 tokens
  const auto options = [&] {
    return TrainOptions()
        .batch(BatchOptions().global_batch(48))
        .data(DataOptions().steps(3))
        .logging(LoggingOptions().progress(false))
        .device(DeviceOptions().name(GetParam()).threads(2));
  };
  const MemoryPlan loose = [&] {
    Trainer t(Model::of(seeded(w, at::kCPU)), optimizer_factory({}), w.data,
              but(options(), [](TrainOptions& o) { o.memory().budget(int64_t{8} << 30); }));
    return *t.memory_plan();
  }();
  const int64_t budget = testing::budget_for(loose, 12, 1 << 20);
  Trainer t(Model::of(seeded(w, at::kCPU)), optimizer_factory({}), w.data,
            but(options(), [&](TrainOptions& o) { o.memory().budget(budget); }));
  const MemoryPlan& m = *t.memory_plan();
  std::cout << "    " << GetParam() << ": budget " << budget << " bytes, micro-batch " << m.micro_batch
            << ", predicted peak " << m.predicted_peak << "\n";
  EXPECT_GT(m.micro_batch, 1);
  EXPECT_LT(m.micro_batch, 48);
  EXPECT_LE(m.predicted_peak, budget);
  const TrainResult r = t.fit();
  ASSERT_EQ(r.history.size(), 3u);
  for (const StepReport& s : r.history) {
    EXPECT_LE(s.peak_bytes, budget) << "step " << s.step;
    EXPECT_EQ(s.oom_replays, 0) << "step " << s.step;
  }
}

}  // namespace
}  // namespace gradacc
