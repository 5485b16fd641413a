// What a LossFn returns, checked on every micro-batch (its metadata only), and the loss's declared
// reduction (LossReduction: a sum of the batch's loss terms, or their mean), checked once on the
// first micro-batch. A loss declared a sum that returns a mean trains
// silently with wrong weights (each micro-batch's gradient shrunk by its own item count), so this
// is worth three small forwards at the start.
//
// The check: the loss of the whole micro-batch (n items) against the losses of its two halves
// (n1 and n2 items), in eval mode and without gradients. A sum satisfies L = L1 + L2, a mean
// L = (n1 L1 + n2 L2) / n; the two differ by about a factor of two, far beyond rounding. A loss
// that is neither (one that mixes the examples of a batch) is not judged here.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "gradacc/dataset.h"
#include "gradacc/model.h"
#include "gradacc/precision.h"

namespace gradacc {

// Throws ConfigError (one line) unless `loss_sum`, what a LossFn returned, is one floating-point
// number and, when `training`, carries a gradient back to the model. Reads only its metadata: no
// host sync.
void require_loss_value(const at::Tensor& loss_sum, bool training);

// Throws ConfigError (one line, with the three losses) when the loss behaves as the other
// reduction than `declared`, measured on the data set's first min(micro_batch, 4) examples (at
// least two; with fewer it does nothing). Changes
// nothing: the model's train/eval mode and the RNG are as they were.
void check_loss_reduction(Model& model, const LossFn& loss, const Dataset& data, int64_t micro_batch,
                          LossReduction declared, const at::Device& device, Precision precision);

}  // namespace gradacc
