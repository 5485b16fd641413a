#include "accumulate/noise_scale.h"

#include <cmath>
#include <stdexcept>

#include <fmt/format.h>
#include "gradacc/errors.h"

namespace gradacc {

NoiseScaleEstimator::NoiseScaleEstimator(double decay) : decay_(decay) {
  if (!(decay >= 0 && decay < 1)) throw ConfigError(fmt::format("noise_scale_ema must lie in [0, 1), got {}", decay));
}

NoiseScaleReading NoiseScaleEstimator::update(double small_sq, double b_small, double big_sq, double b_big) {
  if (!(b_small > 0 && b_big > b_small)) return reading();  // nothing smaller to compare with
  const double grad_sq = (b_big * big_sq - b_small * small_sq) / (b_big - b_small);
  const double trace = (small_sq - big_sq) / (1.0 / b_small - 1.0 / b_big);
  if (!std::isfinite(grad_sq) || !std::isfinite(trace)) return reading();
  grad_sq_ema_ = decay_ * grad_sq_ema_ + (1.0 - decay_) * grad_sq;
  trace_ema_ = decay_ * trace_ema_ + (1.0 - decay_) * trace;
  ++windows_;
  return reading();
}

NoiseScaleReading NoiseScaleEstimator::reading() const {
  if (windows_ == 0) return {};
  const double correction = 1.0 - std::pow(decay_, static_cast<double>(windows_));
  NoiseScaleReading r;
  r.grad_sq = grad_sq_ema_ / correction;
  r.trace_sigma = trace_ema_ / correction;
  r.noise_scale = r.grad_sq > 0 ? r.trace_sigma / r.grad_sq : 0.0;
  return r;
}

std::map<std::string, std::string> NoiseScaleEstimator::state() const {
  return {{"noise_scale_grad_sq_ema", fmt::format("{}", grad_sq_ema_)},
          {"noise_scale_trace_ema", fmt::format("{}", trace_ema_)},
          {"noise_scale_windows", std::to_string(windows_)}};
}

void NoiseScaleEstimator::load_state(const std::map<std::string, std::string>& state) {
  const auto g = state.find("noise_scale_grad_sq_ema"), t = state.find("noise_scale_trace_ema"),
             n = state.find("noise_scale_windows");
  if (g == state.end() || t == state.end() || n == state.end()) return;
  try {
    size_t used = 0;
    const double grad_sq = std::stod(g->second, &used);
    if (used != g->second.size()) throw ConfigError(g->second);
    const double trace = std::stod(t->second, &used);
    if (used != t->second.size()) throw ConfigError(t->second);
    const int64_t windows = std::stoll(n->second);
    if (windows < 0 || !std::isfinite(grad_sq) || !std::isfinite(trace)) throw ConfigError("out of range");
    grad_sq_ema_ = grad_sq;
    trace_ema_ = trace;
    windows_ = windows;
  } catch (const std::logic_error& e) {
    throw ConfigError(fmt::format("noise scale state is malformed ({})", e.what()));
  }
}

}  // namespace gradacc
