#include "gradacc/model.h"

#include <ATen/ops/cross_entropy_loss.h>

namespace gradacc {

at::Tensor summed_cross_entropy(const at::Tensor& logits, const at::Tensor& targets) {
  return at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}), /*weight=*/{},
                                at::Reduction::Sum, kIgnoreIndex);
}

LossFn cross_entropy_loss() {
  return [](const at::Tensor& outputs, const Batch& batch) { return summed_cross_entropy(outputs, batch.targets); };
}

}  // namespace gradacc
