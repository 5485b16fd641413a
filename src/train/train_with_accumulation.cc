// train_with_accumulation(): a Trainer over the caller's own optimizer, which it borrows.
#include "gradacc/train_with_accumulation.h"

#include <fmt/format.h>

#include "gradacc/errors.h"
#include "gradacc/trainer.h"

namespace gradacc::detail {
namespace {

// The caller's optimizer, lent to the Trainer (which asks its factory for the optimizer over the
// tensors it updates): it must be over exactly those tensors, in their order.
OptimizerFactory lend(torch::optim::Optimizer& optimizer) {
  return [&optimizer](const std::vector<at::Tensor>& params) {
    std::vector<at::Tensor> own;
    for (const auto& group : optimizer.param_groups())
      own.insert(own.end(), group.params().begin(), group.params().end());
    bool same = own.size() == params.size();
    for (size_t i = 0; same && i < own.size(); ++i)
      same = own[i].unsafeGetTensorImpl() == params[i].unsafeGetTensorImpl();
    if (params.empty()) throw ConfigError("train_with_accumulation: the module has no trainable parameters");
    if (!same) {
      throw ConfigError(
          fmt::format("train_with_accumulation: the optimizer holds {} tensors that are not the module's {} trainable "
                      "parameters in their "
                      "order; build it over module->parameters()",
                      own.size(), params.size()));
    }
    return std::shared_ptr<torch::optim::Optimizer>(&optimizer, [](torch::optim::Optimizer*) {});  // borrowed
  };
}

}  // namespace

std::vector<double> train_with_accumulation(Model model, std::shared_ptr<const Dataset> data,
                                            torch::optim::Optimizer& optimizer, int64_t accumulation_steps,
                                            TrainOptions options, LossFn loss) {
  if (accumulation_steps < 1)
    throw ConfigError(
        fmt::format("train_with_accumulation: accumulation_steps must be ≥ 1, got {}", accumulation_steps));
  if (!options.batch().micro_batch())
    throw ConfigError("train_with_accumulation needs the micro-batch size: options.batch().micro_batch(N)");
  if (options.batch().accumulation_steps() && *options.batch().accumulation_steps() != accumulation_steps)
    throw ConfigError(fmt::format("train_with_accumulation: accumulation_steps {} disagrees with the options' {}",
                                  accumulation_steps, *options.batch().accumulation_steps()));
  if (options.precision().param_dtype() != Precision::kFp32)
    throw ConfigError(
        "train_with_accumulation: low-precision parameters need fp32 master weights and an optimizer over them; "
        "use gradacc::Trainer with an OptimizerFactory");
  if (options.distributed().zero() != 0)
    throw ConfigError(
        "train_with_accumulation: ZeRO builds the optimizer over this rank's shard; use gradacc::Trainer with an "
        "OptimizerFactory");
  options.batch().accumulation_steps(accumulation_steps);
  Trainer trainer(std::move(model), lend(optimizer), std::move(data), std::move(options), std::move(loss));
  const TrainResult result = trainer.fit();
  std::vector<double> losses;
  losses.reserve(result.history.size());
  for (const StepReport& r : result.history) losses.push_back(r.loss);
  return losses;
}

}  // namespace gradacc::detail
