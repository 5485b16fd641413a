#include "train/verify_runs.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <ATen/ops/cat.h>
#include <ATen/ops/zeros.h>
#include <torch/optim/optimizer.h>
#include <torch/optim/sgd.h>

#include "train/run_plan.h"

namespace gradacc {
namespace {

// Stands in for the user's optimizer in a capture run: SGD's options (a learning rate the schedule
// may set), no state, and a step that records instead of updating.
class GradientCapture : public torch::optim::Optimizer {
 public:
  GradientCapture(const std::vector<at::Tensor>& params, std::shared_ptr<std::vector<at::Tensor>> into)
      : torch::optim::Optimizer({torch::optim::OptimizerParamGroup(params)},
                                std::make_unique<torch::optim::SGDOptions>(1.0)),
        into_(std::move(into)) {}

  at::Tensor step(LossClosure closure = nullptr) override {
    (void)closure;
    // Every step overwrites: the memory planner's probe step (on zero gradients, before training)
    // comes first, the window's own last.
    into_->clear();
    for (const auto& group : param_groups()) {
      for (const at::Tensor& p : group.params()) {
        into_->push_back(p.grad().defined() ? p.grad().to(at::kCPU, at::kDouble)
                                            : at::zeros(p.sizes(), at::TensorOptions().dtype(at::kDouble)));
      }
    }
    return {};
  }

 private:
  std::shared_ptr<std::vector<at::Tensor>> into_;
};

}  // namespace

VerifyRun run_trainer(Trainer& trainer, int64_t steps, std::shared_ptr<std::vector<at::Tensor>> captured) {
  int64_t done = 0;
  trainer.on_step([&](const StepReport&, const StepContext&) { return ++done < steps; });
  TrainResult r = trainer.fit();
  VerifyRun run{
      std::move(r.history), trainer.model(), trainer.plan().batch, trainer.plan().micro_batch_tokens.value_or(0), {}};
  if (captured) run.gradient = *captured;
  return run;
}

OptimizerFactory gradient_capture(std::shared_ptr<std::vector<at::Tensor>> into) {
  return [into](const std::vector<at::Tensor>& params) -> std::shared_ptr<torch::optim::Optimizer> {
    return std::make_shared<GradientCapture>(params, into);
  };
}

double relative_l2(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  if (a.empty() || a.size() != b.size()) return std::numeric_limits<double>::quiet_NaN();
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!a[i].sizes().equals(b[i].sizes())) return std::numeric_limits<double>::quiet_NaN();
    diff += (a[i] - b[i]).square().sum().item<double>();
    norm += a[i].square().sum().item<double>();
  }
  return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-300);
}

WindowLoss encoded_in_slices(WindowLoss window, int64_t rows) {
  auto encode = std::move(window.encode);
  window.encode = [encode, rows](const Batch& b) {
    if (rows <= 0 || b.samples <= rows) return encode(b);
    std::vector<std::vector<at::Tensor>> parts;
    for (int64_t start = 0; start < b.samples; start += rows) {
      Batch slice;
      slice.samples = std::min(rows, b.samples - start);
      slice.inputs = b.inputs.narrow(0, start, slice.samples);
      slice.targets = b.targets.narrow(0, start, slice.samples);
      slice.items = slice.targets.dim() == 1 ? slice.samples : (slice.targets != kIgnoreIndex).sum().item<int64_t>();
      parts.push_back(encode(slice));
    }
    std::vector<at::Tensor> reps;
    for (size_t k = 0; k < parts.front().size(); ++k) {
      std::vector<at::Tensor> column;
      for (const auto& part : parts) column.push_back(part.at(k));
      reps.push_back(at::cat(column));
    }
    return reps;
  };
  return window;
}

}  // namespace gradacc
