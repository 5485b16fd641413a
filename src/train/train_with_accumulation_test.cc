// train_with_accumulation(): the seeds' function, against the reference a user would write
// themselves: a plain LibTorch full-batch loop (mean loss over the window, backward, step) over the
// same windows, from the same weights, with the same optimizer kind. Also the loss's declared
// reduction: a mean declared as such trains the same weights as a sum, and a mean declared a sum
// is refused on the first micro-batch.
#include "gradacc/train_with_accumulation.h"

#include <limits>

#include <ATen/ops/randint.h>
#include <ATen/ops/randn.h>
#include <gtest/gtest.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/sgd.h>
#include <torch/utils.h>

#include "gradacc/errors.h"

namespace gradacc {
namespace {

constexpr int64_t kExamples = 96, kMicro = 8, kAccum = 4, kWindow = kMicro * kAccum;

torch::nn::Sequential make_net() {
  torch::manual_seed(7);
  return torch::nn::Sequential(torch::nn::Linear(6, 24), torch::nn::Tanh(), torch::nn::Linear(24, 4));
}

std::shared_ptr<TensorDataset> make_data() {
  torch::manual_seed(11);
  return std::make_shared<TensorDataset>(at::randn({kExamples, 6}), at::randint(0, 4, {kExamples}), 4);
}

double max_difference(torch::nn::Sequential& a, torch::nn::Sequential& b) {
  double worst = 0.0;
  const auto pa = a->parameters(), pb = b->parameters();
  for (size_t i = 0; i < pa.size(); ++i) worst = std::max(worst, (pa[i] - pb[i]).abs().max().item<double>());
  return worst;
}

// One full-batch step per window of kWindow examples, in order: what the user would have run
// with enough memory for the whole window.
std::vector<double> full_batch(torch::nn::Sequential& net, const TensorDataset& data, int64_t epochs) {
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.2).momentum(0.9));
  std::vector<double> losses;
  for (int64_t e = 0; e < epochs; ++e) {
    for (int64_t start = 0; start < kExamples; start += kWindow) {
      sgd.zero_grad();
      const at::Tensor x = data.inputs().narrow(0, start, kWindow), y = data.labels().narrow(0, start, kWindow);
      const at::Tensor loss = torch::nn::functional::cross_entropy(net->forward(x), y);
      loss.backward();
      sgd.step();
      losses.push_back(loss.item<double>());
    }
  }
  return losses;
}

TEST(TrainWithAccumulation, GivesTheWeightsOfFullBatchTrainingWithTheCallersOptimizer) {
  auto data = make_data();
  auto reference = make_net();
  const std::vector<double> expected = full_batch(reference, *data, 2);

  auto net = make_net();
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.2).momentum(0.9));
  const std::vector<double> losses = train_with_accumulation(net, data, sgd, kAccum,
                                                             TrainOptions()
                                                                 .batch(BatchOptions().micro_batch(kMicro))
                                                                 .data(DataOptions().epochs(2).shuffle(false))
                                                                 .logging(LoggingOptions().progress(false)));

  ASSERT_EQ(losses.size(), expected.size());
  for (size_t i = 0; i < losses.size(); ++i) EXPECT_NEAR(losses[i], expected[i], 1e-5) << "step " << i + 1;
  EXPECT_LE(max_difference(net, reference), 1e-5);
  EXPECT_FALSE(sgd.state().empty()) << "the caller's optimizer was not the one stepped";
}

// The mean, PyTorch's default reduction, declared as such: the same weights as the sum.
TEST(TrainWithAccumulation, AMeanLossDeclaredAsSuchTrainsTheSameWeights) {
  auto data = make_data();
  auto reference = make_net();
  full_batch(reference, *data, 1);
  const LossFn mean = [](const at::Tensor& out, const Batch& b) {
    return torch::nn::functional::cross_entropy(out, b.targets);
  };
  auto net = make_net();
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.2).momentum(0.9));
  train_with_accumulation(net, data, sgd, kAccum,
                          TrainOptions()
                              .batch(BatchOptions().micro_batch(kMicro).loss_reduction(LossReduction::kMean))
                              .data(DataOptions().epochs(1).shuffle(false))
                              .logging(LoggingOptions().progress(false)),
                          mean);
  EXPECT_LE(max_difference(net, reference), 1e-5);
}

// The habit of every PyTorch user, undeclared: caught before the first step, in one line.
TEST(TrainWithAccumulation, AMeanLossDeclaredASumIsRefusedOnTheFirstMicroBatch) {
  auto data = make_data();
  auto net = make_net();
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.2));
  const LossFn mean = [](const at::Tensor& out, const Batch& b) {
    return torch::nn::functional::cross_entropy(out, b.targets);
  };
  try {
    train_with_accumulation(net, data, sgd, kAccum,
                            TrainOptions()
                                .batch(BatchOptions().micro_batch(kMicro))
                                .data(DataOptions().steps(1))
                                .logging(LoggingOptions().progress(false)),
                            mean);
    FAIL() << "a mean declared a sum trained";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("returns the mean"), std::string::npos) << what;
    EXPECT_NE(what.find("LossReduction::kMean"), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
  // ... and the other way round: a sum declared a mean.
  try {
    train_with_accumulation(net, data, sgd, kAccum,
                            TrainOptions()
                                .batch(BatchOptions().micro_batch(kMicro).loss_reduction(LossReduction::kMean))
                                .data(DataOptions().steps(1))
                                .logging(LoggingOptions().progress(false)));
    FAIL() << "a sum declared a mean trained";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("returns the sum"), std::string::npos) << e.what();
  }
}

// What a ready-made optimizer cannot honour, one line each.
TEST(TrainWithAccumulation, RefusesWhatABorrowedOptimizerCannotHonour) {
  auto data = make_data();
  auto net = make_net();
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.2));
  auto other = make_net();
  torch::optim::SGD elsewhere(other->parameters(), torch::optim::SGDOptions(0.2));
  const auto refused = [&](torch::optim::Optimizer& opt, TrainOptions o, const std::string& needle) {
    try {
      o.data().steps(1);
      train_with_accumulation(net, data, opt, kAccum, o);
      ADD_FAILURE() << "accepted: " << needle;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  refused(sgd, TrainOptions(), "needs the micro-batch size");
  refused(sgd,
          TrainOptions()
              .batch(BatchOptions().micro_batch(kMicro))
              .precision(PrecisionOptions().param_dtype(Precision::kBf16)),
          "fp32 master weights");
  refused(sgd, TrainOptions().batch(BatchOptions().micro_batch(kMicro).accumulation_steps(2)), "disagrees");
  refused(elsewhere, TrainOptions().batch(BatchOptions().micro_batch(kMicro)), "not the module's");
}

// Losses that cannot train are refused in one line before any update: not one number, not a
// floating-point one, or cut off from the model's graph.
TEST(TrainWithAccumulation, LossesThatCannotTrainAreRefusedInOneLine) {
  auto data = make_data();
  auto net = make_net();
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.2));
  const auto opts = TrainOptions()
                        .batch(BatchOptions().micro_batch(kMicro))
                        .data(DataOptions().steps(1))
                        .logging(LoggingOptions().progress(false));
  const auto terms = [](const at::Tensor& out, const Batch& b) {
    return torch::nn::functional::cross_entropy(
        out, b.targets, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  };
  const std::vector<std::pair<LossFn, std::string>> cases = {
      {terms, "tensor of shape ["},
      {[&](const at::Tensor& out, const Batch& b) { return terms(out, b).sum().to(at::kLong); }, "Long tensor"},
      {[&](const at::Tensor& out, const Batch& b) { return terms(out, b).sum().detach(); }, "no gradient back"},
  };
  for (const auto& [loss, needle] : cases) {
    try {
      train_with_accumulation(net, data, sgd, kAccum, opts, loss);
      ADD_FAILURE() << "trained with a loss that should be refused: " << needle;
    } catch (const ConfigError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(needle), std::string::npos) << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    }
  }
}

// A window whose gradient is not finite (here: NaN in one example of the first epoch) stops
// training with NumericalError, and its update is never applied: the weights are bit for bit
// those of a run stopped before that step.
TEST(TrainWithAccumulation, ANonFiniteWindowStopsTrainingWithTheLastGoodWeights) {
  auto data = make_data();
  at::Tensor inputs = data->inputs().clone();
  inputs[kExamples - 5][1] = std::numeric_limits<float>::quiet_NaN();
  const auto poisoned = std::make_shared<TensorDataset>(inputs, data->labels(), 4);
  const auto run = [&](torch::nn::Sequential& net, int64_t steps) {
    torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.2).momentum(0.9));
    return train_with_accumulation(net, poisoned, sgd, kAccum,
                                   TrainOptions()
                                       .batch(BatchOptions().micro_batch(kMicro))
                                       .data(DataOptions().steps(steps))
                                       .logging(LoggingOptions().progress(false)));
  };
  auto net = make_net();
  int64_t bad_step = 0;
  try {
    run(net, kExamples / kWindow);  // one epoch: every example, the poisoned one too
    FAIL() << "a NaN window was applied";
  } catch (const NumericalError& e) {
    const std::string what = e.what();
    ASSERT_EQ(what.rfind("step ", 0), 0u) << what;
    bad_step = std::stoll(what.substr(5));
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
  ASSERT_GE(bad_step, 1);
  auto before = make_net();
  if (bad_step > 1) {
    EXPECT_EQ(run(before, bad_step - 1).size(), static_cast<size_t>(bad_step - 1));
  }
  EXPECT_EQ(max_difference(net, before), 0.0);
  for (const at::Tensor& p : net->parameters()) EXPECT_TRUE(p.isfinite().all().item<bool>());
}

}  // namespace
}  // namespace gradacc
