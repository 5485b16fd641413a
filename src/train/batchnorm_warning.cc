// batchnorm_warning() (gradacc/trainer.h): BatchNorm is the one common layer whose output depends
// on how a window is split into micro-batches, so accumulation cannot match full-batch training.
#include <string>

#include <fmt/format.h>
#include <torch/nn/module.h>

#include "gradacc/trainer.h"

namespace gradacc {

std::string batchnorm_warning(const torch::nn::Module& module, const BatchPlan& plan) {
  if (plan.accumulation_steps == 1) return "";
  int64_t layers = 0;
  for (const auto& m : module.modules(/*include_self=*/true)) {
    if (m->name().find("BatchNorm") != std::string::npos) ++layers;
  }
  if (layers == 0) return "";
  return fmt::format(
      "warning: the model's {} BatchNorm layer(s) normalize each micro-batch of {} with that micro-batch's own mean "
      "and "
      "variance, so accumulating {} micro-batches is not the same as training on batches of {} (and running statistics "
      "update {} times per optimizer step); use GroupNorm or LayerNorm (gradacc's cnn: --norm group or layer) for "
      "exact "
      "accumulation",
      layers, plan.micro_batch, plan.accumulation_steps, plan.global_batch / plan.world_size, plan.accumulation_steps);
}

}  // namespace gradacc
