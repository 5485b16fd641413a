// The training step, top to bottom, in one function (train_steps; the code is in train_loop.cc):
//
//   window of examples (WindowSampler) → micro-batches → for each: copy to the device, forward and
//   loss under autocast, backward into the accumulator → window boundary: exact normalization,
//   clip, optimizer and schedule step (Accumulator::step) → report → the caller's callback
//   (log, checkpoint, stop).
//
// The Trainer (trainer.h) builds the parts and calls it; tests and `verify` call it directly.
#pragma once

#include <functional>
#include <vector>

#include <c10/core/Device.h>

#include "accumulate/accumulator.h"
#include "accumulate/auto_accum.h"
#include "base/stateful.h"
#include "batch/accum_schedule.h"
#include "batch/window_sampler.h"
#include "gradacc/dataset.h"
#include "gradacc/model.h"
#include "gradacc/precision.h"
#include "gradacc/step_report.h"
#include "gradacc/window_loss.h"
#include "sync/gradient_reducer.h"
#include "train/lr_scaling.h"

namespace gradacc {

// Where a run stands in its data, as a part of its checkpoints: train_steps() moves `next` past each
// window before the step's callback runs, so a checkpoint taken there saves where to continue.
struct LoopCursor final : Stateful {
  LoopPosition next;
  std::map<std::string, std::string> state() const override;  // "epoch", "window", "offset"
  void load_state(const std::map<std::string, std::string>& state) override;
};

// Everything one step touches. References: the caller owns them for the duration of the call.
struct LoopParts {
  Model& model;
  const LossFn& loss;
  Accumulator& accumulator;
  const Dataset& data;
  const WindowSampler& sampler;
  at::Device device = at::kCPU;
  Precision precision = Precision::kFp32;         // autocast of each micro-batch's forward and loss
  const AccumSchedule* accum_schedule = nullptr;  // window of step s: accum_schedule->at(s) micro-batches
  AutoAccum* auto_accum = nullptr;                // or: auto_accum->current(), decided after each step
  // A window that runs out of memory (c10::OutOfMemoryError: the CPU budget, or the GPU) is run
  // again from its first example with half the micro-batch, and the run goes on with that; its
  // partial gradient and loss are dropped, and the RNG is put back to the window's start. Single
  // process, fixed accumulation only (ranks would have to agree; a schedule fixes the micro-batch).
  bool replay_on_oom = false;
  // ZeRO-3: the root unit is gathered for each micro-batch and every unit freed after its
  // backward. A rank with no examples for a micro-batch runs a stand-in (the dataset's first
  // example, its loss times zero), so that it issues the same gathers as the others.
  ParameterGather* gather = nullptr;
  // The learning rate follows each window's planned global batch (null: it does not).
  LrScaler* lr_scaler = nullptr;
  // A loss over the whole window (gradacc/window_loss.h): each window by gradient caching, its
  // representations gathered over `reducer`'s ranks (null: one process). Null: the per-example loss.
  const WindowLoss* window_loss = nullptr;
  GradientReducer* reducer = nullptr;
};

// The planned global batch of the window after `steps_taken` windows: micro_batch × accumulation ×
// world size, with the accumulation of that step (schedule, auto) when it varies.
int64_t planned_window(const LoopParts& p, int64_t steps_taken);

// Runs up to `steps` optimizer steps from `position` (updated in place), fewer if `on_step` asks
// to stop. The backward runs outside autocast, as LibTorch recommends. Each report carries the
// window's peak tensor memory on the device (device/device.h) and the micro-batch it ran with.
// Throws PlanError when a dropped partial window leaves an epoch with no window at all, and
// MemoryError when a micro-batch of 1 runs out of memory.
std::vector<StepReport> train_steps(const LoopParts& parts, int64_t steps, LoopPosition& position,
                                    const StepCallback& on_step = {});

}  // namespace gradacc
