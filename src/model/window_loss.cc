#include "gradacc/window_loss.h"

#include <memory>

#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/matmul.h>
#include <c10/util/StringUtil.h>
#include <c10/util/accumulate.h>
#include <fmt/format.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/functional/normalization.h>

#include "gradacc/errors.h"

namespace gradacc {

at::Tensor info_nce_sum(const at::Tensor& a, const at::Tensor& b, double temperature) {
  if (a.dim() != 2 || b.dim() != 2 || a.sizes() != b.sizes() || a.size(0) < 1)
    throw ConfigError(fmt::format("info_nce_sum: two views of [N, d] rows expected, got {} and {}", c10::str(a.sizes()),
                                  c10::str(b.sizes())));
  if (!(temperature > 0)) throw ConfigError(fmt::format("info_nce_sum: temperature {} is not positive", temperature));
  namespace F = torch::nn::functional;
  const auto unit = F::NormalizeFuncOptions().dim(1);
  const at::Tensor logits = at::matmul(F::normalize(a, unit), F::normalize(b, unit).t()) / temperature;
  const at::Tensor self = at::arange(a.size(0), a.options().dtype(at::kLong));
  // Both directions, each a sum over the N samples, halved: one term per sample.
  const auto sum = F::CrossEntropyFuncOptions().reduction(torch::kSum);
  return 0.5 * (F::cross_entropy(logits, self, sum) + F::cross_entropy(logits.t(), self, sum));
}

std::vector<at::Tensor> WindowLoss::encode_rows(const Batch& batch) const {
  std::vector<at::Tensor> reps = encode(batch);
  if (reps.empty()) throw ConfigError("the window loss's encoder returned no representations");
  for (const at::Tensor& r : reps) {
    if (!r.defined() || r.dim() < 1 || r.size(0) != batch.samples) {
      throw ConfigError(
          fmt::format("the window loss's encoder returned representations of shape {} for a micro-batch "
                      "of {} samples: each needs one row per sample",
                      r.defined() ? c10::str(r.sizes()) : std::string("(none)"), batch.samples));
    }
  }
  return reps;
}

PerMicroBatchLoss per_micro_batch(WindowLoss window) {
  auto shapes = std::make_shared<std::vector<std::vector<int64_t>>>();  // the last encode's, per tensor
  auto w = std::make_shared<WindowLoss>(std::move(window));
  PerMicroBatchLoss p;
  p.forward = [w, shapes](const Batch& b) {
    const std::vector<at::Tensor> reps = w->encode_rows(b);
    shapes->clear();
    std::vector<at::Tensor> flat;
    for (const at::Tensor& r : reps) {
      shapes->push_back(r.sizes().vec());
      flat.push_back(r.to(at::kFloat).reshape({b.samples, -1}));
    }
    return at::cat(flat, 1);
  };
  p.loss = [w, shapes](const at::Tensor& outputs, const Batch& b) {
    std::vector<at::Tensor> reps;
    int64_t column = 0;
    for (const std::vector<int64_t>& shape : *shapes) {
      const int64_t width = c10::multiply_integers(shape.begin() + 1, shape.end());
      reps.push_back(outputs.narrow(1, column, width).reshape(shape));
      column += width;
    }
    return w->loss(reps, b.targets);
  };
  return p;
}

}  // namespace gradacc
