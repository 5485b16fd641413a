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
#include "gradacc/window_loss.h"

namespace gradacc {

struct VerifyOptions {
  int64_t steps = 5;
  // Defaults come from measurement on fp32 CPU runs (docs/verify.md): exact accumulation stays
  // ≥ 5× below them over 20 AdamW steps, BatchNorm's mismatch is ≥ 25× above them after 5.
  double weight_tolerance = 5e-2;  // bound on max_rel_weight_diff
  double loss_tolerance = 5e-4;    // bound on the relative difference of any step's window loss
  // Also train with the naive scheme and report how far it strays: each micro-batch's mean /
  // accumulation steps (telling where micro-batches hold different item counts: padded text), or
  // for a window loss, each micro-batch's loss over its own examples only.
  bool compare_naive = false;
};

struct VerifyResult {
  BatchPlan full_plan, accumulated_plan;
  int64_t micro_batch_tokens = 0;  // the accumulated run's token budget per micro-batch (0: fixed micro-batches)
  std::vector<double> full_loss, accumulated_loss, rel_loss_diff;
  double max_abs_weight_diff = 0.0;  // max over floating-point weights and buffers of |w_full − w_acc|
  double max_weight_movement = 0.0;  // max |w_full − w_initial|: how far training moved any weight
  double max_rel_weight_diff = 0.0;  // max_abs_weight_diff / max_weight_movement
  // The first window's gradient as the optimizer receives it (after the reduction and any
  // clipping; under ZeRO this rank's shard), captured by one more run of each in place of a step:
  // ‖g_full − g_acc‖₂ / ‖g_full‖₂. NaN when a step was skipped (fp16 overflow).
  double grad_rel_l2 = 0.0;
  double max_rel_loss_diff = 0.0;
  std::string worst_tensor;  // where max |Δw| occurs
  // With compare_naive: the naive scheme's run (naive_scheme says which), against the full batch.
  bool has_naive = false;
  std::string naive_scheme;
  std::vector<double> naive_loss;
  double naive_max_rel_loss_diff = 0.0, naive_max_abs_weight_diff = 0.0, naive_max_rel_weight_diff = 0.0;
  double naive_grad_rel_l2 = 0.0;
  bool pass = false;
  std::string explanation;  // why they differ, when we know (BatchNorm)
};

// `make_model` must return a model with the same initial weights on every call. The runs use
// `options` as given (their schedule, clipping, precision), without logs, progress or checkpoints;
// `options` must not hold an accumulation schedule. Throws ConfigError for bad options.
VerifyResult verify_accumulation(const std::function<Model()>& make_model, const OptimizerFactory& make_optimizer,
                                 std::shared_ptr<const Dataset> data, TrainOptions options, const LossFn& loss,
                                 const VerifyOptions& verify);

// A model and the window loss whose encoder runs it (window_loss.h), built together.
struct WindowModel {
  Model model;
  WindowLoss loss;
};

// verify_accumulation for a loss over the whole window: the accumulated run trains by gradient
// caching, the reference takes each window in one forward and backward. With `compare_naive` it
// also trains the naive way: each micro-batch's loss over its own representations, so that only
// the micro-batch's other examples are negatives (another objective, not another rounding).
// `make` must return the same initial weights on every call.
VerifyResult verify_window_loss(const std::function<WindowModel()>& make, const OptimizerFactory& make_optimizer,
                                std::shared_ptr<const Dataset> data, TrainOptions options, const VerifyOptions& verify);

std::string verify_json(const VerifyResult& result, const VerifyOptions& options);
std::string verify_text(const VerifyResult& result, const VerifyOptions& options);

}  // namespace gradacc
