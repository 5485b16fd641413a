// `gradacc verify`: accumulated training checked against full-batch training, built in.
//
// Two runs start from identical weights and see identical windows of examples: one processes each
// window in a single pass (micro-batch = global batch), the other in micro-batches under the
// requested plan. After K optimizer steps it compares the per-step window losses and every weight.
// Tolerances are measured, not guessed: see docs/verify.md.
#pragma once

#include <string>
#include <vector>

#include "gradacc/accumulate/batch_plan.h"
#include "gradacc/run/config.h"

namespace gradacc {

struct VerifyOptions {
  int64_t steps = 5;
  // Defaults come from measurement on fp32 CPU runs (docs/verify.md): exact accumulation stays
  // ≥ 5× below them over 20 AdamW steps, BatchNorm's mismatch is ≥ 25× above them after 5.
  double weight_tolerance = 5e-2;  // bound on max_rel_weight_diff
  double loss_tolerance = 5e-4;    // bound on the relative difference of any step's window loss
};

struct VerifyResult {
  BatchPlan full_plan, accumulated_plan;
  std::vector<double> full_loss, accumulated_loss, rel_loss_diff;
  double max_abs_weight_diff = 0.0;   // max over floating-point weights and buffers of |w_full − w_acc|
  double max_weight_movement = 0.0;   // max |w_full − w_initial|: how far training moved any weight
  double max_rel_weight_diff = 0.0;   // max_abs_weight_diff / max_weight_movement
  double max_rel_loss_diff = 0.0;
  std::string worst_tensor;  // where max |Δw| occurs
  // Per-item (text) runs also train with the naive scheme — each micro-batch's mean loss divided
  // by the accumulation steps — and report how far it strays from the full batch.
  bool has_naive = false;
  std::vector<double> naive_loss;
  double naive_max_rel_loss_diff = 0.0, naive_max_abs_weight_diff = 0.0, naive_max_rel_weight_diff = 0.0;
  bool pass = false;
  std::string explanation;  // why they differ, when we know (BatchNorm)
};

VerifyResult run_verify(const TrainConfig& config, const VerifyOptions& options);

std::string verify_json(const VerifyResult& result, const VerifyOptions& options);
std::string verify_text(const VerifyResult& result, const VerifyOptions& options);

}  // namespace gradacc
