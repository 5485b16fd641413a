// Helpers shared by the unit tests (not part of the library).
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include <ATen/ops/abs.h>
#include <ATen/ops/cat.h>
#include <torch/nn/module.h>

#include "gradacc/options.h"
#include "gradacc/safetensors.h"
#include "memory/planner.h"
#include "train/train_loop.h"

namespace gradacc::testing {

// `options` with one change: but(ok, [](TrainOptions& o) { o.batch().clip(-1); }).
template <typename Change>
TrainOptions but(TrainOptions options, Change change) {
  change(options);
  return options;
}

// A path in the temp directory unique to this process.
inline std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("gradacc_test_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

// Every parameter's .grad, flattened and concatenated in parameter order.
inline at::Tensor flat_grads(torch::nn::Module& m) {
  std::vector<at::Tensor> g;
  for (const auto& p : m.parameters()) g.push_back(p.grad().reshape(-1));
  return at::cat(g);
}

// ‖a − b‖ / ‖b‖: the relative L2 difference of a from the reference b.
inline double rel_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).norm().item<double>() / b.norm().item<double>();
}

// The largest |a − b| over the tensors of two weight files with the same names.
inline double max_weight_difference(const std::string& a_path, const std::string& b_path) {
  const TensorMap a = load_safetensors(a_path), b = load_safetensors(b_path);
  double worst = 0.0;
  for (const auto& [name, t] : a) worst = std::max(worst, (t - b.at(name)).abs().max().item<double>());
  return worst;
}

// A memory budget with room for `loose`'s static part, `slack` bytes and `units` examples (or token
// positions) of activations, or for its boundary step if that is larger, over the 98% of a budget
// the planner fills: the budget a test gives to see the planner choose about `units`.
inline int64_t budget_for(const MemoryPlan& loose, int64_t units, int64_t slack) {
  const int64_t activations = loose.activations.fixed + units * loose.activations.per_example;
  return static_cast<int64_t>(
      static_cast<double>(loose.static_bytes + slack + std::max(activations, loose.step_bytes)) / 0.98);
}

// train_steps() for one of gradacc's networks with the default (summed cross-entropy) loss.
template <typename Net>
std::vector<StepReport> run_steps(const std::shared_ptr<Net>& net, Accumulator& acc, const Dataset& data,
                                  const WindowSampler& sampler, int64_t steps, const at::Device& device,
                                  LoopPosition& pos, const AccumSchedule* schedule = nullptr,
                                  Precision precision = Precision::kFp32) {
  Model model = Model::of(net);
  const LossFn loss = cross_entropy_loss();
  return train_steps(LoopParts{model, loss, acc, data, sampler, device, precision, schedule}, steps, pos);
}

}  // namespace gradacc::testing
