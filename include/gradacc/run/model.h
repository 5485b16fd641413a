// What a user brings to the Trainer besides data and an optimizer: a model, and a loss.
//
//   Model  any torch::nn::Module, with the function that runs it on a batch. Model::of(m) takes
//          any module whose forward(at::Tensor) maps the batch's inputs to outputs.
//   LossFn (outputs, batch) → the SUM of the batch's loss terms, one term per item it reports
//          (Batch::items), as a 0-dim tensor. Summed, never averaged: the accumulator divides by
//          the window's real item count, which is what makes accumulation exact.
#pragma once

#include <concepts>
#include <functional>
#include <memory>

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include "gradacc/data/dataset.h"

namespace gradacc {

struct Model {
  std::shared_ptr<torch::nn::Module> module;  // parameters, buffers, train/eval, device
  std::function<at::Tensor(const Batch&)> forward;
  // Turns activation checkpointing of the model's blocks on or off; returns false when the model
  // cannot (memory/activation_checkpoint.h). Empty: the model has no such switch.
  std::function<bool(bool)> set_activation_checkpointing;

  // A module whose forward takes the inputs tensor (a std::shared_ptr<M> or a LibTorch ModuleHolder
  // such as torch::nn::Sequential), or one with `at::Tensor forward_batch(const Batch&)`, which is
  // then called with the whole batch. A module with a method `bool set_activation_checkpointing(bool)`
  // offers it to the memory planner.
  template <typename M>
  static Model of(std::shared_ptr<M> m) {
    Model model{m, {}, {}};
    if constexpr (requires(M & x, const Batch& b) {
                    { x.forward_batch(b) } -> std::convertible_to<at::Tensor>;
                  }) {
      model.forward = [m](const Batch& b) { return m->forward_batch(b); };  // packed batches, too
    } else {
      model.forward = [m](const Batch& b) { return m->forward(b.inputs); };
    }
    if constexpr (requires(M & x) {
                    { x.set_activation_checkpointing(true) } -> std::convertible_to<bool>;
                  }) {
      model.set_activation_checkpointing = [m](bool on) { return m->set_activation_checkpointing(on); };
    }
    return model;
  }
  template <typename Impl>
  static Model of(const torch::nn::ModuleHolder<Impl>& holder) {
    return of(holder.ptr());
  }
};

using LossFn = std::function<at::Tensor(const at::Tensor& outputs, const Batch& batch)>;

// Σ of cross-entropy terms over all targets that are not kIgnoreIndex. logits: [B, C] with
// targets [B], or [B, T, C] with targets [B, T].
at::Tensor summed_cross_entropy(const at::Tensor& logits, const at::Tensor& targets);
// The LossFn of summed_cross_entropy (the default loss).
LossFn cross_entropy_loss();

}  // namespace gradacc
