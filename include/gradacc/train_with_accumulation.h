// train_with_accumulation(): the seeds' function, for a user who already has a module, data and
// a stock LibTorch optimizer over the module's parameters, and wants the window gradients of
// full-batch training:
//
//   auto net = std::make_shared<Net>();
//   torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.1));
//   std::vector<double> losses = gradacc::train_with_accumulation(
//       net, data, sgd, /*accumulation_steps=*/8,
//       gradacc::TrainOptions().batch(gradacc::BatchOptions().micro_batch(32)).data(gradacc::DataOptions().epochs(3)));
//
// It runs a gradacc::Trainer (trainer.h) with every promise it makes: each update is the window's
// full-batch gradient (micro_batch × accumulation_steps × world examples, a short last window
// rescaled by its real count), clipping on the window gradient, data parallel from the torchrun
// environment. The optimizer stays the caller's: it is stepped in place, never copied or freed.
//
//   module     a std::shared_ptr to any torch::nn::Module, a LibTorch ModuleHolder, or a Model
//   data       a gradacc Dataset (a shared_ptr to one), or a torch::data map-style dataset
//   optimizer  any torch::optim::Optimizer built over module->parameters(), in their order
//   options    TrainOptions; batch().micro_batch is required (the seeds' data loader batch size), and
//              accumulation_steps, when also set there, must agree with the argument
//   loss       a LossFn; the sum of the batch's loss terms, or their mean with
//              options.batch().loss_reduction(LossReduction::kMean)
//
// Returns the loss of each optimizer step (the window's true average). Throws ConfigError (one
// line) for what a ready-made optimizer cannot honour: low-precision parameters (fp32 masters need
// an optimizer over the masters), ZeRO (an optimizer over a shard), an optimizer over other
// tensors than the module's parameters; and whatever the Trainer throws.
//
// Thread safety: none; it runs one training loop on the calling thread.
#pragma once

#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include <torch/optim/optimizer.h>

#include "gradacc/dataset.h"
#include "gradacc/model.h"
#include "gradacc/options.h"
#include "gradacc/torch_dataset.h"

namespace gradacc {
namespace detail {

std::vector<double> train_with_accumulation(Model model, std::shared_ptr<const Dataset> data,
                                            torch::optim::Optimizer& optimizer, int64_t accumulation_steps,
                                            TrainOptions options, LossFn loss);

template <typename M>
Model as_model(M&& module) {
  if constexpr (std::is_same_v<std::decay_t<M>, Model>) {
    return std::forward<M>(module);
  } else {
    return Model::of(module);
  }
}

template <typename D>
std::shared_ptr<const Dataset> as_dataset(D&& data) {
  using T = std::decay_t<D>;
  if constexpr (std::is_convertible_v<T, std::shared_ptr<const Dataset>>) {
    return data;
  } else {
    return from_torch_dataset(std::forward<D>(data));  // a torch::data map-style dataset
  }
}

}  // namespace detail

template <typename M, typename D>
std::vector<double> train_with_accumulation(M&& module, D&& data, torch::optim::Optimizer& optimizer,
                                            int64_t accumulation_steps, TrainOptions options = TrainOptions(),
                                            LossFn loss = cross_entropy_loss()) {
  return detail::train_with_accumulation(detail::as_model(std::forward<M>(module)),
                                         detail::as_dataset(std::forward<D>(data)), optimizer, accumulation_steps,
                                         std::move(options), std::move(loss));
}

}  // namespace gradacc
