// Verification against full-batch training, built in (`gradacc verify`, and verify_accumulation()
// for any model).
//
// Two runs start from identical weights and see identical windows of examples: one processes each
// window in a single pass (micro-batch = the rank's whole window), the other in micro-batches under
// the requested plan. After K optimizer steps it compares the per-step window losses and every
// weight. Tolerances are measured, not guessed: see docs/verify.md.
#pragma once

#include <string>
#include <vector>

#include <functional>
#include <memory>

#include "gradacc/batch_plan.h"
#include "gradacc/dataset.h"
#include "gradacc/model.h"
#include "gradacc/optimizer.h"
#include "gradacc/options.h"

namespace gradacc {

struct VerifyOptions {
  int64_t steps = 5;
  // Defaults come from measurement on fp32 CPU runs (docs/verify.md): exact accumulation stays
  // ≥ 5× below them over 20 AdamW steps, BatchNorm's mismatch is ≥ 25× above them after 5.
  double weight_tolerance = 5e-2;  // bound on max_rel_weight_diff
  double loss_tolerance = 5e-4;    // bound on the relative difference of any step's window loss
  // Also train with the naive scheme (each micro-batch's mean / accumulation steps) and report how
  // far it strays: telling where micro-batches hold different item counts (padded text).
  bool compare_naive = false;
};

struct VerifyResult {
  BatchPlan full_plan, accumulated_plan;
  int64_t micro_batch_tokens = 0;  // the accumulated run's token budget per micro-batch (0: fixed micro-batches)
  std::vector<double> full_loss, accumulated_loss, rel_loss_diff;
  double max_abs_weight_diff = 0.0;  // max over floating-point weights and buffers of |w_full − w_acc|
  double max_weight_movement = 0.0;  // max |w_full − w_initial|: how far training moved any weight
  double max_rel_weight_diff = 0.0;  // max_abs_weight_diff / max_weight_movement
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

// `make_model` must return a model with the same initial weights on every call. The runs use
// `options` as given (their schedule, clipping, precision), without logs, progress or checkpoints;
// `options` must not hold an accumulation schedule. Throws ConfigError for bad options.
VerifyResult verify_accumulation(const std::function<Model()>& make_model, const OptimizerFactory& make_optimizer,
                                 std::shared_ptr<const Dataset> data, TrainOptions options, const LossFn& loss,
                                 const VerifyOptions& verify);

std::string verify_json(const VerifyResult& result, const VerifyOptions& options);
std::string verify_text(const VerifyResult& result, const VerifyOptions& options);

}  // namespace gradacc
