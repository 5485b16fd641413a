#include "train/lr_scaling.h"

#include <algorithm>

#include <fmt/format.h>

#include "base/parse.h"
#include "gradacc/errors.h"

namespace gradacc {

LrScaler::LrScaler(LrScaling rule, double base_batch, int64_t tokens_per_sample, const NoiseScaleEstimator* noise,
                   int64_t schedule_steps)
    : rule_(rule),
      base_(base_batch),
      tokens_per_sample_(tokens_per_sample),
      noise_(noise),
      schedule_steps_(schedule_steps) {
  if (tokens_per_sample < 1) throw ConfigError("lr scaling: tokens per sample must be ≥ 1");
  (void)lr_scale(LrScaling::kLinear, 1.0, base_);  // the base batch's checks
  if (rule_ == LrScaling::kAdaScale && (!noise_ || schedule_steps_ < 1))
    throw ConfigError("adascale needs the gradient noise scale's estimates and the schedule's length");
}

double LrScaler::factor(int64_t global_samples) {
  last_batch_ = batch_of(global_samples);
  if (rule_ != LrScaling::kAdaScale) return lr_scale(rule_, last_batch_, base_);
  const NoiseScaleReading n = noise_->reading();
  return adascale_gain(n.trace_sigma, n.grad_sq, last_batch_, base_);
}

std::optional<double> LrScaler::schedule_position() const {
  if (rule_ != LrScaling::kAdaScale) return std::nullopt;
  return position_;
}

void LrScaler::advance(double factor) {
  if (rule_ == LrScaling::kAdaScale) position_ += factor;
}

bool LrScaler::finished() const {
  return rule_ == LrScaling::kAdaScale && position_ >= static_cast<double>(schedule_steps_);
}

std::optional<std::string> LrScaler::resume_note(int64_t global_samples) const {
  const double now = batch_of(global_samples);
  if (last_batch_ <= 0 || now == last_batch_) return std::nullopt;
  if (rule_ == LrScaling::kAdaScale) {
    return fmt::format(
        "note: lr scaling adascale: the batch is {:g} at this resume ({:g} at the checkpoint): its gain is bounded by "
        "{:.6g} from here",
        now, last_batch_, now / base_);
  }
  return fmt::format(
      "note: lr scaling {}: the batch is {:g} at this resume ({:g} at the checkpoint), so the learning rate's factor "
      "changes here from {:.6g} to {:.6g}",
      to_string(rule_), now, last_batch_, lr_scale(rule_, last_batch_, base_), lr_scale(rule_, now, base_));
}

std::map<std::string, std::string> LrScaler::state() const {
  return {{"lr_scaling_batch", fmt::format("{}", last_batch_)}, {"lr_scaling_position", fmt::format("{}", position_)}};
}

void LrScaler::load_state(const std::map<std::string, std::string>& state) {
  for (auto [key, value] :
       {std::pair{"lr_scaling_batch", &last_batch_}, std::pair{"lr_scaling_position", &position_}}) {
    const auto it = state.find(key);
    if (it == state.end()) continue;  // a checkpoint of a run without scaling
    try {
      *value = parse_float(it->second);
    } catch (const std::exception&) {
      throw ConfigError(fmt::format("checkpoint: {} '{}' is not a number", key, shown(it->second)));
    }
    if (*value < 0) throw ConfigError(fmt::format("checkpoint: {} {} is negative", key, *value));
  }
}

std::unique_ptr<LrScaler> make_lr_scaler(const RunPlan& plan, const Dataset& data, const NoiseScaleEstimator* noise,
                                         const std::string& optimizer_kind) {
  if (plan.schedule.lr_scaling == LrScaling::kNone) return nullptr;
  if (plan.schedule.lr_scaling == LrScaling::kAdaScale && optimizer_kind != "sgd") {
    throw ConfigError(fmt::format(
        "adascale is defined for SGD (with or without momentum): {} adapts its own step sizes (--lr-scaling sqrt "
        "is the rule for it)",
        optimizer_kind));
  }
  int64_t tokens = 1;
  if (plan.requested.batch().normalization() == Normalization::kPerItem) {
    for (int64_t n : data.lengths()) tokens = std::max(tokens, n);
  }
  return std::make_unique<LrScaler>(plan.schedule.lr_scaling, plan.schedule.base_batch, tokens, noise,
                                    plan.schedule.shape.total_steps);
}

}  // namespace gradacc
