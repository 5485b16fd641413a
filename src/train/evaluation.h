// Evaluation on held-out data: the model in eval mode, no gradients, consecutive batches, under
// the run's autocast. One host read per batch (evaluation is not the hot loop).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include <c10/core/Device.h>

#include "gradacc/dataset.h"
#include "gradacc/model.h"
#include "gradacc/precision.h"
#include "gradacc/step_report.h"

namespace gradacc {

// Runs the model on each list of `batches` (indices into `data`) in eval mode, without gradients,
// under `precision`'s autocast, and calls fn(batch, outputs) for each; the model's train/eval mode
// is put back afterwards.
void for_each_eval_batch(Model& model, const Dataset& data, const std::vector<std::vector<int64_t>>& batches,
                         const at::Device& device, Precision precision,
                         const std::function<void(const Batch&, const at::Tensor&)>& fn);

// Mean loss per item over `data` (Σ loss terms / Σ items): nats per token for text.
double evaluate_loss(Model& model, const LossFn& loss, const Dataset& data, const at::Device& device,
                     int64_t batch = 64, Precision precision = Precision::kFp32);
// Both in one pass over `data` (classification): the mean loss per item and the accuracy.
Evaluation evaluate_loss_and_accuracy(Model& model, const LossFn& loss, const Dataset& data, const at::Device& device,
                                      int64_t batch = 1000, Precision precision = Precision::kFp32);
// Fraction of examples whose arg-max output is the target (classification).
double evaluate_accuracy(Model& model, const Dataset& data, const at::Device& device, int64_t batch = 1000,
                         Precision precision = Precision::kFp32);

}  // namespace gradacc
