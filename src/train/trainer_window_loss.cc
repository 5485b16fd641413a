// The Trainer of a loss over the whole window (gradacc/window_loss.h): what it refuses, and the
// per-example loss and forward it stands in for (the Trainer's parts that need one say they cannot).
#include <fmt/format.h>

#include "gradacc/errors.h"
#include "gradacc/trainer.h"
#include "train/trainer_state.h"

namespace gradacc {
namespace {

void refuse(bool condition, const char* what) {
  if (condition) throw ConfigError(fmt::format("a window loss (gradient caching) does not support {} yet", what));
}

Model with_forward(Model model) {
  if (!model.forward) {
    model.forward = [](const Batch&) -> at::Tensor {
      throw ConfigError("this Trainer trains a window loss: its model has no forward of its own to evaluate");
    };
  }
  return model;
}

}  // namespace

void check_window_loss(const WindowLoss& window_loss, const TrainOptions& options, const Dataset* data) {
  if (!window_loss.encode || !window_loss.loss)
    throw ConfigError("a window loss needs an encoder and a loss (window_loss.h)");
  refuse(options.distributed().zero() == 3, "ZeRO-3 (its units' gathers per micro-batch)");
  refuse(options.batch().micro_batch_tokens().has_value(), "token-budget micro-batches");
  refuse(data && data->packed_row_length() > 0, "packed sequences");
  refuse(options.batch().normalization() == Normalization::kNaiveMicroMean, "the naive normalization");
  refuse(options.batch().loss_reduction() == LossReduction::kMean, "a mean-reduced loss: return the window's sum");
}

Trainer::Trainer(Model model, OptimizerFactory make_optimizer, std::shared_ptr<const Dataset> data,
                 TrainOptions options, WindowLoss window_loss)
    : Trainer(
          with_forward(std::move(model)), std::move(make_optimizer), std::move(data), std::move(options),
          [](const at::Tensor&, const Batch&) -> at::Tensor {
            throw ConfigError("a window loss has no per-example loss: evaluate the encoder yourself");
          },
          std::move(window_loss)) {}

}  // namespace gradacc
