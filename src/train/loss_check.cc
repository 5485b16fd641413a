#include "train/loss_check.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "gradacc/device.h"
#include "gradacc/errors.h"
#include "train/evaluation.h"

namespace gradacc {
namespace {

struct Measured {
  double loss = 0.0, items = 0.0;
};

bool close(double a, double b) { return std::abs(a - b) <= 1e-2 * std::max({std::abs(a), std::abs(b), 1e-12}); }

}  // namespace

void require_loss_value(const at::Tensor& loss_sum, bool training) {
  if (!loss_sum.defined()) throw ConfigError("the loss returned an undefined tensor");
  if (loss_sum.numel() != 1 || !at::isFloatingType(loss_sum.scalar_type())) {
    throw ConfigError(
        fmt::format("the loss must return one floating-point number, the sum of the batch's loss terms; "
                    "it returned a {} tensor of shape [{}]",
                    c10::toString(loss_sum.scalar_type()), fmt::join(loss_sum.sizes(), "x")));
  }
  if (training && !loss_sum.requires_grad()) {
    throw ConfigError(
        "the loss carries no gradient back to the model (it requires no grad): compute it from the model's outputs "
        "with tensor operations, without detach(), item() or NoGradGuard");
  }
}

void check_loss_reduction(Model& model, const LossFn& loss, const Dataset& data, int64_t micro_batch,
                          LossReduction declared, const at::Device& device, Precision precision) {
  // Four examples (or the micro-batch, if smaller) tell the two apart: the check stays cheap and
  // far inside any memory budget the run was planned for.
  const int64_t n = std::min({std::max<int64_t>(micro_batch, 2), int64_t{4}, data.size()});
  if (n < 2) return;
  std::vector<int64_t> all(static_cast<size_t>(n));
  std::iota(all.begin(), all.end(), 0);
  const std::vector<int64_t> first(all.begin(), all.begin() + n / 2), second(all.begin() + n / 2, all.end());

  const at::Tensor rng = generator_state(device);  // a model with randomness in eval mode draws nothing new
  std::vector<Measured> m;
  for_each_eval_batch(model, data, {all, first, second}, device, precision,
                      [&](const Batch& batch, const at::Tensor& out) {
                        const at::Tensor l = loss(out, batch);
                        require_loss_value(l, /*training=*/false);
                        m.push_back({l.item<double>(), static_cast<double>(batch.items)});
                      });
  set_generator_state(device, rng);
  const Measured &whole = m[0], &a = m[1], &b = m[2];
  if (whole.items <= 0 || a.items <= 0 || b.items <= 0) return;

  const bool sums = close(whole.loss, a.loss + b.loss);
  const bool means = close(whole.loss, (a.items * a.loss + b.items * b.loss) / whole.items);
  const std::string seen = fmt::format("the loss of {} examples is {:.6g}, of their halves {:.6g} and {:.6g}", n,
                                       whole.loss, a.loss, b.loss);
  if (declared == LossReduction::kSum && means && !sums) {
    throw ConfigError(
        fmt::format("the loss returns the mean of its terms but is declared a sum ({}): return their sum "
                    "(reduction kSum), or declare "
                    "options.batch().loss_reduction(gradacc::LossReduction::kMean)",
                    seen));
  }
  if (declared == LossReduction::kMean && sums && !means) {
    throw ConfigError(
        fmt::format("the loss returns the sum of its terms but is declared a mean ({}): declare "
                    "options.batch().loss_reduction(gradacc::LossReduction::kSum)",
                    seen));
  }
}

}  // namespace gradacc
