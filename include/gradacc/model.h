// What a user brings to the Trainer besides data and an optimizer: a model, and a loss.
//
//   Model  any torch::nn::Module, with the function that runs it on a batch. Model::of(m) takes
//          any module whose forward(at::Tensor) maps the batch's inputs to outputs.
//   LossFn (outputs, batch) → a 0-dim tensor: the SUM of the batch's loss terms, one term per item
//          it reports (Batch::items), or their MEAN when declared so (LossReduction::kMean). The
//          accumulator divides the window's sum once by its real item count, which is what makes
//          accumulation exact.
#pragma once

#include <concepts>
#include <functional>
#include <memory>

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include "gradacc/dataset.h"
#include "gradacc/units.h"

namespace gradacc {

struct Model {
  std::shared_ptr<torch::nn::Module> module;  // parameters, buffers, train/eval, device
  std::function<at::Tensor(const Batch&)> forward;
  // Turns activation checkpointing of the model's blocks on or off; returns false when the model
  // cannot (checkpointed() in units.h). Empty: the model has no such switch.
  std::function<bool(bool)> set_activation_checkpointing;
  // The model's blocks (units.h), when it declares them: what ZeRO-3 gathers one at a time. Lives
  // in the module. Null: none declared (the whole model is one unit).
  Units* units = nullptr;

  // A module whose forward takes the inputs tensor (a std::shared_ptr<M> or a LibTorch ModuleHolder
  // such as torch::nn::Sequential), or one with `at::Tensor forward_batch(const Batch&)`, which is
  // then called with the whole batch. A module with a method `bool set_activation_checkpointing(bool)`
  // offers it to the memory planner; one with a member `gradacc::Units units` declares its blocks
  // (and offers checkpointing through them, unless it has that method).
  template <typename M>
  static Model of(std::shared_ptr<M> m) {
    Model model{m, {}, {}, nullptr};
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
    if constexpr (requires(M & x) {
                    { x.units } -> std::convertible_to<Units&>;
                  }) {
      model.units = &m->units;
      if (!model.set_activation_checkpointing)
        model.set_activation_checkpointing = [m](bool on) { return m->units.set_checkpointing(on); };
    }
    return model;
  }
  template <typename Impl>
  static Model of(const torch::nn::ModuleHolder<Impl>& holder) {
    return of(holder.ptr());
  }
};

// What the window loss is an average over.
enum class Normalization {
  kPerSample,  // loss = Σ per-sample losses / samples in the window (classification)
  kPerItem,    // loss = Σ per-item losses / items in the window (tokens that are not padding)
  // What popular loops do: each micro-batch's *mean* loss divided by the number of micro-batches
  // (nominal_count). Wrong whenever micro-batches hold different item counts; kept only so that
  // `gradacc verify` can show how wrong.
  kNaiveMicroMean,
};

// What a LossFn returns for a batch: the sum of its loss terms (gradacc's convention, and what
// makes a short window exact without any work), or their mean over the batch's items (PyTorch's
// default reduction). A mean is multiplied back by the batch's item count before the backward, so
// both are normalized exactly; the Trainer checks the declaration on the first micro-batch.
enum class LossReduction { kSum, kMean };

using LossFn = std::function<at::Tensor(const at::Tensor& outputs, const Batch& batch)>;

// Σ of cross-entropy terms over all targets that are not kIgnoreIndex. logits: [B, C] with
// targets [B], or [B, T, C] with targets [B, T]. With label_smoothing ε in [0, 1) each term is
// against (1 − ε)·one-hot + ε/C (as PyTorch's): still one term per item, so the sum stays exact
// under accumulation.
at::Tensor summed_cross_entropy(const at::Tensor& logits, const at::Tensor& targets, double label_smoothing = 0.0);
// The LossFn of summed_cross_entropy (the default loss, without smoothing).
LossFn cross_entropy_loss(double label_smoothing = 0.0);

}  // namespace gradacc
