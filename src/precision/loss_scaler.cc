#include "precision/loss_scaler.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>
#include "gradacc/errors.h"

namespace gradacc {

LossScaler::LossScaler(LossScalerOptions o) : options_(o), scale_(o.init_scale), hysteresis_left_(o.hysteresis) {
  if (o.hysteresis < 1) throw ConfigError(fmt::format("loss scale hysteresis must be ≥ 1, got {}", o.hysteresis));
  if (!(o.min_scale >= 0) || !std::isfinite(o.min_scale) || o.min_scale > o.init_scale) {
    throw ConfigError(
        fmt::format("minimum loss scale must lie in [0, the initial scale {}], got {}", o.init_scale, o.min_scale));
  }
  if (!(o.init_scale > 0) || !std::isfinite(o.init_scale)) {
    throw ConfigError(fmt::format("loss scale must be positive and finite, got {}", o.init_scale));
  }
  if (!(o.growth_factor > 1) || !std::isfinite(o.growth_factor)) {
    throw ConfigError(fmt::format("loss scale growth factor must be > 1, got {}", o.growth_factor));
  }
  if (!(o.backoff_factor > 0 && o.backoff_factor < 1) || !std::isfinite(o.backoff_factor)) {
    throw ConfigError(fmt::format("loss scale backoff factor must lie in (0, 1), got {}", o.backoff_factor));
  }
  if (o.growth_interval < 1) {
    throw ConfigError(fmt::format("loss scale growth interval must be ≥ 1, got {}", o.growth_interval));
  }
}

void LossScaler::update(bool found_inf) {
  if (found_inf) {
    ++skipped_;
    good_in_a_row_ = 0;
    if (!options_.dynamic) return;
    if (hysteresis_left_ > 1) {  // tolerated: the step is skipped, the scale stays
      --hysteresis_left_;
      return;
    }
    scale_ = std::max(scale_ * options_.backoff_factor, options_.min_scale);
    return;
  }
  if (!options_.dynamic) return;
  if (++good_in_a_row_ == options_.growth_interval) {
    // Stay finite in fp32, where the scaled loss is formed (as PyTorch's scaler does).
    if (std::isfinite(static_cast<float>(scale_ * options_.growth_factor))) scale_ *= options_.growth_factor;
    good_in_a_row_ = 0;
    hysteresis_left_ = options_.hysteresis;
  }
}

std::map<std::string, std::string> LossScaler::state() const {
  return {{"loss_scale", fmt::format("{}", scale_)},  // shortest text that reads back exactly
          {"loss_scale_growth_tracker", std::to_string(good_in_a_row_)},
          {"loss_scale_skipped_steps", std::to_string(skipped_)},
          {"loss_scale_hysteresis_left", std::to_string(hysteresis_left_)}};
}

void LossScaler::load_state(const std::map<std::string, std::string>& state) {
  auto get = [&](const char* key) -> const std::string& {
    auto it = state.find(key);
    if (it == state.end()) throw ConfigError(fmt::format("loss scaler state has no '{}'", key));
    return it->second;
  };
  try {
    size_t used = 0;
    const std::string& s = get("loss_scale");
    const double scale = std::stod(s, &used);
    if (used != s.size() || !(scale > 0) || !std::isfinite(scale)) throw ConfigError(s);
    const int64_t tracker = std::stoll(get("loss_scale_growth_tracker"));
    const int64_t skipped = std::stoll(get("loss_scale_skipped_steps"));
    if (tracker < 0 || skipped < 0) throw ConfigError("negative count");
    const auto left = state.find("loss_scale_hysteresis_left");
    const int64_t hysteresis_left = left == state.end() ? options_.hysteresis : std::stoll(left->second);
    if (hysteresis_left < 1) throw ConfigError("hysteresis count below 1");
    scale_ = scale;
    good_in_a_row_ = tracker;
    skipped_ = skipped;
    hysteresis_left_ = hysteresis_left;
  } catch (const std::logic_error& e) {
    throw ConfigError(fmt::format("loss scaler state is malformed ({})", e.what()));
  }
}

}  // namespace gradacc
