// The runs verify.cc compares: one Trainer each, from the same initial weights over the same
// windows. Besides running K optimizer steps, a run can capture its first window's gradient (the
// gradient the optimizer was handed, after the reduction and any clipping) in place of stepping,
// and a window loss can be trained the naive way, each micro-batch on its own.
//
// Thread safety: none; verify's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>

#include "gradacc/batch_plan.h"
#include "gradacc/model.h"
#include "gradacc/optimizer.h"
#include "gradacc/step_report.h"
#include "gradacc/trainer.h"
#include "gradacc/window_loss.h"

namespace gradacc {

struct VerifyRun {
  std::vector<StepReport> steps;
  Model model;
  BatchPlan plan;                    // as the Trainer resolved it (a memory budget's: as planned)
  int64_t micro_batch_tokens = 0;    // the token budget it ran (a memory budget's: as planned); 0: fixed
  std::vector<at::Tensor> gradient;  // capture runs: the first window's gradient, fp64 on the CPU
};

// Runs `trainer` for `steps` optimizer steps. `captured` is what gradient_capture() filled, if it
// made the trainer's optimizer.
VerifyRun run_trainer(Trainer& trainer, int64_t steps, std::shared_ptr<std::vector<at::Tensor>> captured = nullptr);

// An optimizer factory whose optimizer never changes a weight: each step() copies the gradients it
// is handed (fp64, CPU, in parameter order) into `*into`, replacing what an earlier step (the memory
// planner's probe) left. It keeps a learning rate, so schedules still run.
OptimizerFactory gradient_capture(std::shared_ptr<std::vector<at::Tensor>> into);

// ‖a − b‖₂ / ‖a‖₂ over lists of tensors of the same shapes; NaN when either is empty (a skipped
// step) or the shapes differ.
double relative_l2(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b);

// The reference's encoder for a window loss: the whole window's batch encoded in slices of `rows`
// examples, in order, with gradients, the slices' representations concatenated. One graph over the
// window and one backward, as a full batch; but dropout draws its masks slice by slice in the
// order gradient caching's passes do, so the two runs see the same masks.
WindowLoss encoded_in_slices(WindowLoss window, int64_t rows);

}  // namespace gradacc
