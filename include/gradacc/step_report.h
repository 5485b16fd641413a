// What training reports: StepReport, what one optimizer step did (the Accumulator fills it at the
// window boundary, where the loss and the norm are the only values read from the device; the
// training loop adds the step's peak memory; one JSONL line per step is written from it); the
// StepContext and StepCallback a Trainer calls after each step; the LoopPosition a checkpoint
// saves; and Evaluation, a held-out pass.
//
// Thread safety: plain values.
#pragma once

#include <cstdint>
#include <functional>

namespace gradacc {

struct StepReport {
  int64_t step = 0;        // 1-based count of optimizer steps taken, this one included
  double loss = 0.0;       // window loss: Σ loss terms / count (not the last micro-batch's)
  double grad_norm = 0.0;  // L2 norm of the exact window gradient before clipping
  double clip_coef = 1.0;  // factor clipping applied (1 = not clipped)
  double lr = 0.0;         // learning rate used for this update
  double lr_scale = 1.0;   // the factor in it that follows the batch (--lr-scaling; 1 without)
  double lr_position = 0;  // AdaScale: the schedule's position Σ r after this update (0 otherwise)
  int64_t samples = 0, items = 0, micro_batches = 0;
  double boundary_seconds = 0.0;                     // wall time of step(): norm, rescale/clip, update, zeroing
  bool skipped = false;                              // the window gradient was not finite: no update, no schedule step
  int64_t allreduce_calls = 0, allreduce_bytes = 0;  // data-parallel traffic of this step
  int64_t parameter_gathers = 0;                     // ZeRO-3: units gathered in this window (all-gathers)
  bool stop_requested = false;  // the stop flag was set on this rank or, data parallel, on any rank
  double loss_scale = 1.0;      // the loss scale this window was computed with (1 without a scaler)
  int64_t peak_bytes = 0;       // most tensor memory live during the window (device/device.h)
  int64_t micro_batch = 0;      // the micro-batch size the window ran with (smaller after a replay)
  int64_t oom_replays = 0;      // times the window ran out of memory and was run again, halved
  // A window loss (gradient caching): what this rank held between the passes (its batches and
  // representations, the window's representations and their gradients).
  int64_t window_cache_bytes = 0;
  // Sequence data (targets [B, T]): positions the window computed over all ranks, padding included
  // (rows × longest row of each micro-batch), against its `items`; 0 for fixed-shape examples.
  int64_t computed_items = 0;
  // The gradient noise scale (accumulate/noise_scale.h), when it is measured: moving averages.
  bool noise_measured = false;
  double noise_scale = 0.0, grad_sq_est = 0.0, trace_sigma_est = 0.0;
};

// Where a training loop stands in the data: the next window to run. With the sampler's seed this
// is the whole data position (the order of an epoch is a pure function of seed and epoch), so a
// checkpoint that saves it resumes on exactly the next example.
struct LoopPosition {
  int64_t epoch = 0;
  int64_t window = 0;  // windows already run in this epoch
  int64_t offset = 0;  // examples of this epoch's order already consumed
};

// What the loop tells its observer after each optimizer step.
struct StepContext {
  int64_t epoch = 0;     // epoch of the window just run
  double seconds = 0.0;  // wall time of the whole step
  LoopPosition next;     // where the loop resumes: a checkpoint taken now saves this
};

// Called after each optimizer step; returns false to stop the loop after this step.
using StepCallback = std::function<bool(const StepReport&, const StepContext&)>;

// A pass over held-out data (classification): the mean loss per item, and the accuracy.
struct Evaluation {
  double loss = 0.0, accuracy = 0.0;
};

}  // namespace gradacc
