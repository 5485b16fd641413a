// Mixed precision with accumulation: autocast guard, dynamic loss scaling folded into the window
// factor, fp32 accumulation and master weights for low-precision parameters. References are fp32
// (or fp64) computations of the same gradients; tolerances are stated per test.
#include <limits>

#include <ATen/autocast_mode.h>
#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/ones.h>
#include <gtest/gtest.h>
#include <torch/optim/sgd.h>
#include <torch/utils.h>

#include "accumulate/accumulator.h"
#include "builtin/fashion_mnist.h"
#include "builtin/models.h"
#include "gradacc/errors.h"
#include "gradacc/optimizer.h"
#include "gradacc/precision.h"
#include "gradacc/trainer.h"
#include "precision/loss_scaler.h"
#include "testing/test_util.h"

namespace gradacc {
namespace {

using testing::flat_grads;
using testing::rel_diff;

Batch fashion_batch(int64_t n) {
  static auto data = load_fashion_mnist(kFashionMnistDir, Split::kTrain);
  std::vector<int64_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  return data->gather(idx);
}

std::shared_ptr<Network> seeded(const ModelSpec& spec) {
  torch::manual_seed(3);
  return make_model(spec, 10);
}

at::Tensor flat_params(torch::nn::Module& m) {
  std::vector<at::Tensor> v;
  for (const auto& p : m.parameters()) v.push_back(p.detach().reshape(-1).to(at::kDouble));
  return at::cat(v);
}

// Feeds `b` as micro-batches of `micro` under `precision`; `poison` multiplies one micro-batch's
// loss by +inf (an fp16 overflow, injected).
void accumulate_window(Network& model, Accumulator& acc, const Batch& b, int64_t micro, Precision precision,
                       int64_t poison = -1) {
  for (int64_t s = 0, m = 0; s < b.samples; s += micro, ++m) {
    const int64_t n = std::min(micro, b.samples - s);
    at::Tensor loss;
    {
      AutocastGuard autocast(at::kCPU, precision);
      loss = summed_cross_entropy(model.forward(b.inputs.narrow(0, s, n)), b.targets.narrow(0, s, n));
    }
    if (m == poison) loss = loss * std::numeric_limits<double>::infinity();
    acc.accumulate(loss, n, n);
  }
}

TEST(AutocastGuard, EnablesNestsAndRestores) {
  const at::Tensor a = at::ones({4, 4});
  ASSERT_FALSE(at::autocast::is_autocast_enabled(at::kCPU));
  {
    AutocastGuard outer(at::kCPU, Precision::kBf16);
    EXPECT_TRUE(at::autocast::is_autocast_enabled(at::kCPU));
    EXPECT_EQ(at::matmul(a, a).scalar_type(), at::kBFloat16);
    {
      AutocastGuard inner(at::kCPU, Precision::kFp16);
      EXPECT_EQ(at::matmul(a, a).scalar_type(), at::kHalf);
      AutocastGuard off(at::kCPU, Precision::kFp32);  // fp32 leaves the state alone
      EXPECT_EQ(at::matmul(a, a).scalar_type(), at::kHalf);
    }
    EXPECT_EQ(at::autocast::get_autocast_dtype(at::kCPU), at::kBFloat16);
    EXPECT_EQ(at::matmul(a, a).scalar_type(), at::kBFloat16);
  }
  EXPECT_FALSE(at::autocast::is_autocast_enabled(at::kCPU));
  EXPECT_EQ(at::matmul(a, a).scalar_type(), at::kFloat);
}

TEST(LossScaler, BacksOffOnOverflowGrowsAfterTheIntervalAndRoundTripsItsState) {
  LossScaler s(LossScalerOptions().init_scale_(1024).growth_interval_(3));
  s.update(false);
  s.update(false);
  EXPECT_EQ(s.scale(), 1024);
  s.update(false);
  EXPECT_EQ(s.scale(), 2048);  // third good window in a row
  s.update(false);
  s.update(true);
  EXPECT_EQ(s.scale(), 1024);
  EXPECT_EQ(s.growth_tracker(), 0);  // an overflow restarts the run of good windows
  EXPECT_EQ(s.skipped_steps(), 1);
  s.update(false);

  LossScaler t;
  t.load_state(s.state());
  EXPECT_EQ(t.scale(), s.scale());
  EXPECT_EQ(t.growth_tracker(), 1);
  EXPECT_EQ(t.skipped_steps(), 1);
  EXPECT_THROW(t.load_state({{"loss_scale", "-1"}}), std::invalid_argument);
  EXPECT_THROW(LossScaler(LossScalerOptions().backoff_factor_(1.5)), std::invalid_argument);
  EXPECT_THROW(LossScaler(LossScalerOptions().growth_interval_(0)), std::invalid_argument);
}

// One fp16-style overflow in one micro-batch of a window: no update, no schedule step, the
// gradient dropped, the scale halved; the next window trains normally.
TEST(LossScaling, OverflowInOneMicroBatchSkipsTheStepAndTheScheduleAndHalvesTheScale) {
  auto model = seeded({ModelKind::kMlp, NormKind::kNone});
  auto optimizer = make_optimizer(model->parameters(), OptimizerOptions());
  const LrSchedule schedule({ScheduleKind::kCosine, 1e-3, 2, 10, 0.0});
  LossScaler scaler;
  Accumulator acc(*model, *optimizer, &schedule, AccumulatorOptions().nominal_count_(128), nullptr, &scaler);
  const Batch b = fashion_batch(128);
  const at::Tensor before = flat_params(*model);

  accumulate_window(*model, acc, b, 32, Precision::kFp32, /*poison=*/2);
  const StepReport skipped = acc.step();
  EXPECT_TRUE(skipped.skipped);
  EXPECT_FALSE(std::isfinite(skipped.grad_norm));
  EXPECT_TRUE(at::equal(before, flat_params(*model)));  // weights unchanged, bit for bit
  EXPECT_EQ(scaler.scale(), 32768);                     // 65536 × 0.5
  EXPECT_EQ(acc.steps_taken(), 1);
  EXPECT_EQ(acc.updates_applied(), 0);
  EXPECT_EQ(acc.flat_grad().abs().max().item<float>(), 0.0f);  // the bad gradient is dropped

  accumulate_window(*model, acc, b, 32, Precision::kFp32);
  const StepReport next = acc.step();
  EXPECT_FALSE(next.skipped);
  EXPECT_EQ(next.loss_scale, 32768);
  EXPECT_EQ(next.lr, skipped.lr);  // the schedule did not advance: warmup step 0 again
  EXPECT_EQ(next.lr, schedule.lr_at(0));
  EXPECT_FALSE(at::equal(before, flat_params(*model)));
  EXPECT_EQ(acc.updates_applied(), 1);
}

// A window that overflows whatever the scale (here its loss is inf) is skipped while backing off
// can help; once the scale is below 2^-24, fp16's smallest step, training stops with
// NumericalError instead of skipping for ever, the weights untouched.
TEST(LossScaling, OverflowBelowTheSmallestUsefulScaleStopsTraining) {
  auto model = seeded({ModelKind::kMlp, NormKind::kNone});
  torch::optim::SGD sgd(model->parameters(), 0.1);
  LossScaler scaler(LossScalerOptions().init_scale_(0x1p-22));
  Accumulator acc(*model, sgd, nullptr, AccumulatorOptions().nominal_count_(64), nullptr, &scaler);
  const Batch b = fashion_batch(64);
  const at::Tensor before = flat_params(*model);
  for (const double scale : {0x1p-22, 0x1p-23, 0x1p-24}) {  // skipped: the scale may still help
    accumulate_window(*model, acc, b, 16, Precision::kFp32, /*poison=*/0);
    const StepReport r = acc.step();
    EXPECT_TRUE(r.skipped);
    EXPECT_EQ(r.loss_scale, scale);
  }
  accumulate_window(*model, acc, b, 16, Precision::kFp32, /*poison=*/0);  // at 2^-25
  try {
    acc.step();
    FAIL() << "a window overflowing below the smallest useful scale was skipped again";
  } catch (const NumericalError& e) {
    EXPECT_NE(std::string(e.what()).find("step 4: "), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("even at loss scale 2.98023e-08"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(at::equal(before, flat_params(*model)));
  EXPECT_EQ(acc.flat_grad().abs().max().item<float>(), 0.0f);  // the window was discarded
}

// The loss scale S is a power of two, so in fp32 the scaled buffer is exactly S × the unscaled
// one: the whole window stays scaled (no unscale per micro-batch), the norm and the clip see the
// unscaled gradient, and the update equals the unscaled run's.
TEST(LossScaling, UnscalesOncePerWindowAndClipsUnscaledGradients) {
  const Batch b = fashion_batch(256);
  auto plain_model = seeded({ModelKind::kMlp, NormKind::kNone});
  auto scaled_model = seeded({ModelKind::kMlp, NormKind::kNone});
  torch::optim::SGD plain_opt(plain_model->parameters(), 0.1), scaled_opt(scaled_model->parameters(), 0.1);
  const auto options = AccumulatorOptions().nominal_count_(256).max_grad_norm_(0.05);  // clips
  LossScaler scaler;
  Accumulator plain(*plain_model, plain_opt, nullptr, options);
  Accumulator scaled(*scaled_model, scaled_opt, nullptr, options, nullptr, &scaler);

  // After every micro-batch the buffer is still S × the plain one: nothing was unscaled.
  for (int64_t s = 0; s < 256; s += 32) {
    const Batch mb{b.inputs.narrow(0, s, 32), b.targets.narrow(0, s, 32), 32, 32};
    plain.accumulate(summed_cross_entropy(plain_model->forward(mb.inputs), mb.targets), 32, 32);
    scaled.accumulate(summed_cross_entropy(scaled_model->forward(mb.inputs), mb.targets), 32, 32);
    EXPECT_LT(rel_diff(scaled.flat_grad() / 65536.0, plain.flat_grad()), 1e-6) << "after micro-batch " << s / 32;
  }
  EXPECT_LT(rel_diff(scaled.window_gradient(), plain.window_gradient()), 1e-6);
  const StepReport a = plain.step(), c = scaled.step();
  EXPECT_LT(std::abs(c.grad_norm - a.grad_norm) / a.grad_norm, 1e-6);  // the unscaled norm
  ASSERT_LT(a.clip_coef, 0.5);                                         // clipping is active
  EXPECT_LT(std::abs(c.clip_coef - a.clip_coef) / a.clip_coef, 1e-6);  // scaled, it would be 65536× smaller
  EXPECT_LT((flat_params(*scaled_model) - flat_params(*plain_model)).abs().max().item<double>(), 1e-7);
}

// The scale grows after growth_interval good windows, inside a training loop.
TEST(LossScaling, GrowsAfterTheIntervalOfGoodWindows) {
  auto model = seeded({ModelKind::kMlp, NormKind::kNone});
  torch::optim::SGD sgd(model->parameters(), 0.01);
  LossScaler scaler(LossScalerOptions().init_scale_(256).growth_interval_(4));
  Accumulator acc(*model, sgd, nullptr, AccumulatorOptions().nominal_count_(64), nullptr, &scaler);
  const Batch b = fashion_batch(64);
  std::vector<double> scales;
  for (int i = 0; i < 9; ++i) {
    accumulate_window(*model, acc, b, 16, Precision::kFp16);
    scales.push_back(acc.step().loss_scale);
  }
  EXPECT_EQ(scales, (std::vector<double>{256, 256, 256, 256, 512, 512, 512, 512, 1024}));
}

// bf16 autocast: the accumulated window gradient against the full-batch gradient computed under
// the same autocast. They differ only by bf16 rounding of each weight-gradient GEMM's output
// (one rounding of the whole sum vs one per micro-batch): measured 2e-3 for this CNN; the
// tolerance is 2e-2. The fp32 gradient is also printed to show the scale of bf16 error itself.
TEST(MixedPrecision, Bf16AccumulatedMatchesBf16FullBatchWithinTolerance) {
  const Batch b = fashion_batch(256);
  const ModelSpec spec{ModelKind::kCnn, NormKind::kGroup};
  auto full = seeded(spec), acc_model = seeded(spec), fp32 = seeded(spec);
  {
    AutocastGuard autocast(at::kCPU, Precision::kBf16);
    at::cross_entropy_loss(full->forward(b.inputs), b.targets).backward();
  }
  at::cross_entropy_loss(fp32->forward(b.inputs), b.targets).backward();
  torch::optim::SGD sgd(acc_model->parameters(), 0.1);
  Accumulator acc(*acc_model, sgd, nullptr, AccumulatorOptions().nominal_count_(256));
  accumulate_window(*acc_model, acc, b, 32, Precision::kBf16);
  const double vs_full = rel_diff(acc.window_gradient(), flat_grads(*full));
  const double bf16_error = rel_diff(flat_grads(*full), flat_grads(*fp32));
  std::printf("bf16 accumulated vs bf16 full batch: %.2e; bf16 full vs fp32 full: %.2e\n", vs_full, bf16_error);
  EXPECT_LT(vs_full, 2e-2);
  EXPECT_GT(vs_full, 0.0);  // bf16 really ran (fp32 would agree to ~1e-7)
}

// Why fp32 accumulation buffers: with bf16 parameters, each micro-batch's gradient comes out of
// backward in bf16. Summing 64 of them in a bf16 buffer rounds every partial sum to 8 significant
// bits; summing them in fp32 does not. Reference: the same 64 bf16 micro-batch gradients summed
// in fp64. (Measured: bf16 buffer ~1e-2 relative error, fp32 buffer ~1e-7.)
TEST(MixedPrecision, Fp32AccumulationOfBf16GradientsBeatsABf16Buffer) {
  const int64_t micro = 4, count = 64, n = micro * count;
  const Batch b = fashion_batch(n);
  const ModelSpec spec{ModelKind::kMlp, NormKind::kNone};

  // bf16 parameters, gradients summed in bf16.
  auto low = seeded(spec);
  low->to(at::kBFloat16);
  torch::optim::SGD sgd_low(low->parameters(), 0.1);
  Accumulator acc_low(*low, sgd_low, nullptr, AccumulatorOptions().nominal_count_(n));
  accumulate_window(*low, acc_low, b, micro, Precision::kBf16);
  const at::Tensor g_low = acc_low.window_gradient().to(at::kDouble);

  // bf16 parameters with fp32 masters: gradients summed in fp32.
  auto mixed = seeded(spec);
  MasterWeights master(*mixed, at::kBFloat16);
  torch::optim::SGD sgd_mixed(master.masters(), 0.1);
  Accumulator acc_mixed(*mixed, sgd_mixed, nullptr, AccumulatorOptions().nominal_count_(n), &master);
  accumulate_window(*mixed, acc_mixed, b, micro, Precision::kBf16);
  const at::Tensor g_mixed = acc_mixed.window_gradient().to(at::kDouble);
  ASSERT_EQ(acc_mixed.flat_grad().scalar_type(), at::kFloat);

  // Reference: each micro-batch's bf16 gradient (same model, same scaling 1/n), summed in fp64.
  auto ref = seeded(spec);
  ref->to(at::kBFloat16);
  at::Tensor g_ref;
  for (int64_t s = 0; s < n; s += micro) {
    for (auto& p : ref->parameters()) p.mutable_grad() = at::Tensor();
    at::Tensor loss;
    {
      AutocastGuard autocast(at::kCPU, Precision::kBf16);
      loss = summed_cross_entropy(ref->forward(b.inputs.narrow(0, s, micro)), b.targets.narrow(0, s, micro));
    }
    (loss * (1.0 / static_cast<double>(n))).backward();
    const at::Tensor g = flat_grads(*ref).to(at::kDouble);
    g_ref = g_ref.defined() ? g_ref + g : g;
  }

  const double err_low = rel_diff(g_low, g_ref), err_mixed = rel_diff(g_mixed, g_ref);
  std::printf("relative error vs the fp64 sum of %lld bf16 micro-batch gradients: bf16 buffer %.2e, fp32 buffer %.2e\n",
              static_cast<long long>(count), err_low, err_mixed);
  EXPECT_GT(err_low, 1e-3);
  EXPECT_LT(err_mixed, 1e-5);
}

// Master weights: the update happens in fp32 and is cast back; the model stays bf16.
TEST(MixedPrecision, MasterWeightsUpdateInFp32AndCastBack) {
  const ModelSpec spec{ModelKind::kMlp, NormKind::kNone};
  auto model = seeded(spec);
  const at::Tensor initial = flat_params(*model);
  MasterWeights master(*model, at::kBFloat16);
  EXPECT_EQ(model->parameters()[0].scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(at::cat([&] {
                          std::vector<at::Tensor> v;
                          for (const auto& m : master.masters()) v.push_back(m.reshape(-1).to(at::kDouble));
                          return v;
                        }()),
                        initial));  // masters hold the exact fp32 initial weights
  torch::optim::SGD sgd(master.masters(), 1e-4);
  Accumulator acc(*model, sgd, nullptr, AccumulatorOptions().nominal_count_(64), &master);
  accumulate_window(*model, acc, fashion_batch(64), 16, Precision::kBf16);
  acc.step();
  // Tiny steps (lr 1e-4) move the fp32 masters; the bf16 model equals the masters rounded.
  EXPECT_GT((master.flat_masters().to(at::kDouble) - initial).abs().max().item<double>(), 0.0);
  EXPECT_TRUE(at::equal(flat_params(*model), master.flat_masters().to(at::kBFloat16).to(at::kDouble)));
  EXPECT_THROW(MasterWeights(*model, at::kBFloat16), std::invalid_argument);  // already bf16
}

}  // namespace
}  // namespace gradacc
