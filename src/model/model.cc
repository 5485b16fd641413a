#include "gradacc/model.h"

#include <ATen/ops/cross_entropy_loss.h>
#include <fmt/format.h>

#include "gradacc/errors.h"

namespace gradacc {

at::Tensor summed_cross_entropy(const at::Tensor& logits, const at::Tensor& targets, double label_smoothing) {
  return at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}), /*weight=*/{},
                                at::Reduction::Sum, kIgnoreIndex, label_smoothing);
}

LossFn cross_entropy_loss(double label_smoothing) {
  if (!(label_smoothing >= 0.0 && label_smoothing < 1.0))
    throw ConfigError(fmt::format("label_smoothing must lie in [0, 1), got {}", label_smoothing));
  return [label_smoothing](const at::Tensor& outputs, const Batch& batch) {
    return summed_cross_entropy(outputs, batch.targets, label_smoothing);
  };
}

}  // namespace gradacc
