// The gradient noise scale B_simple = tr(Σ) / |G|² (McCandlish et al. 2018, "An Empirical Model of
// Large-Batch Training", appendix A): the batch size beyond which a larger batch stops buying
// proportionally fewer optimizer steps. Accumulation measures it nearly for free: each window
// holds the gradient of its first micro-batch (batch B_small) and the gradient of the whole window
// (B_big), whose squared norms estimate, without bias,
//
//     |G|²   ≈ (B_big |G_big|² − B_small |G_small|²) / (B_big − B_small)
//     tr(Σ)  ≈ (|G_small|² − |G_big|²) / (1/B_small − 1/B_big)
//
// B counts what the loss is averaged over: samples, or real tokens for text. Single-window
// estimates are noisy (either may come out negative), so the numerator and the denominator are
// each smoothed by an exponential moving average, bias-corrected as Adam's moments are, and
// B_simple is their ratio, as the paper advises.
//
// Thread safety: none; owned by one training loop.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include "base/stateful.h"

namespace gradacc {

struct NoiseScaleReading {
  double grad_sq = 0.0;      // EMA of the |G|² estimates
  double trace_sigma = 0.0;  // EMA of the tr(Σ) estimates
  double noise_scale = 0.0;  // trace_sigma / grad_sq (0 while grad_sq ≤ 0)
};

class NoiseScaleEstimator : public Stateful {
 public:
  // `decay` of the moving averages, in [0, 1). Throws ConfigError.
  explicit NoiseScaleEstimator(double decay = 0.95);
  // One window: squared norms of the mean gradients of its first micro-batch and of the whole
  // window, with the counts they are means over (b_small < b_big).
  NoiseScaleReading update(double small_sq, double b_small, double big_sq, double b_big);
  NoiseScaleReading reading() const;
  int64_t windows() const { return windows_; }

  // For checkpoints ("noise_scale_*" entries, printed to read back to the same doubles).
  std::map<std::string, std::string> state() const override;
  void load_state(const std::map<std::string, std::string>& state) override;  // absent entries: a fresh start

 private:
  double decay_;
  double grad_sq_ema_ = 0.0, trace_ema_ = 0.0;
  int64_t windows_ = 0;
};

}  // namespace gradacc
