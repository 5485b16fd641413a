// RunPlan: a training run's options resolved, with the data-parallel environment and the data
// set's size, into the numbers the loop uses. Each option group checks itself (options.h);
// resolve_run() checks what spans groups, the ranks and the data. A RunPlan is immutable
// afterwards (every member is const), and the Trainer, the checkpointer and the log read it, never
// change it.
//
// Thread safety: immutable.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <c10/core/Device.h>

#include "accumulate/accumulator.h"
#include "accumulate/auto_accum.h"
#include "batch/accum_schedule.h"
#include "batch/window_sampler.h"
#include "checkpoint/checkpointer.h"
#include "gradacc/batch_plan.h"
#include "gradacc/options.h"
#include "precision/loss_scaler.h"
#include "sync/dist_env.h"

namespace gradacc {

// ScheduleOptions resolved: the warmup and horizon in steps, the factor that follows the batch.
struct SchedulePlan {
  LrScheduleOptions shape;                  // kind, warmup, horizon, floor, ds_* shape (its base_lr: the optimizer's)
  LrScaling lr_scaling = LrScaling::kNone;  // train/lr_scaling.h
  double base_batch = 0;                    // its B0 (0 without scaling)
};

// PrecisionOptions resolved into dtypes.
struct PrecisionPlan {
  Precision compute = Precision::kFp32;          // forward autocast
  std::optional<at::ScalarType> master_params;   // bf16/fp16 parameters with fp32 masters
  std::optional<at::ScalarType> param_dtype;     // bf16/fp16 parameters, gradients summed in that dtype
  std::optional<LossScalerOptions> loss_scaler;  // fp16
};

// DistributedOptions resolved against the ranks: the reduction and the ZeRO stage in effect.
struct DistributedPlan {
  SyncMode sync = SyncMode::kPerWindow;
  double timeout_seconds = 300;
  int64_t bucket_bytes = 0;
  Precision comm_dtype = Precision::kFp32;  // gradients on the wire: fp32, or 16-bit with fp32 sums
  // ZeRO stage in effect (data parallel only): 1: each rank holds 1/R of the optimizer state; 2: and
  // of the gradient; 3: and of the parameters. With zero_auto the memory planner chooses (zero
  // starts as 1).
  int zero = 0;
  bool zero_auto = false;
  ParameterGatherOptions gather;  // ZeRO-3: resharding after the forward, prefetch, no_sync
  bool zero3_auto = false;        // ZeRO-3 under a budget: the planner sets gather and accumulation
  bool overlap = false;           // the window's reduction starts bucket by bucket during the last backward
};

// The plan is made of the groups of TrainOptions resolved: the window and the run's length (batch
// and data), then one member per other group. A group with nothing to resolve is kept as given
// (validated), so that a new field of it needs no change here.
struct RunPlan {
  const TrainOptions requested;  // as given, every group validated
  // BatchOptions and DataOptions resolved.
  const BatchPlan batch;
  const std::optional<AccumSchedule> accum_schedule;
  const std::optional<AutoAccumOptions> auto_accum;    // set: accumulation follows the noise scale (batch: its start)
  const std::optional<int64_t> micro_batch_tokens;     // set: token-budget micro-batches (batch: one per rank)
  const std::optional<int64_t> requested_micro_batch;  // a micro-batch the user gave, to check against the budget
  const int64_t total_steps;                           // the run's length: the LR schedule's horizon
  const int64_t last_step;                             // where this invocation stops (stop_at, or total_steps)
  const EpochLayout epoch;                             // windows per epoch under `batch`
  const int64_t dataset_size;
  const WindowSamplerOptions sampler;
  const DistEnv env;
  const SchedulePlan schedule;
  const PrecisionPlan precision;
  const DistributedPlan distributed;
  const CheckpointPolicy checkpoint;
  const MemoryOptions memory;    // the budget the Trainer plans in (the batch above is then the planned one)
  const LoggingOptions logging;  // rank 0's; off elsewhere. noise_scale: on when anything reads it
  const at::Device device;
  const std::vector<std::string> notes;  // what the resolution decided that the user should hear

  bool lead() const { return env.rank == 0; }  // rank 0 logs, checkpoints, evaluates, saves
  // The LR schedule over an optimizer whose peak rate is `peak_lr` (DeepSpeed's WarmupLR and
  // WarmupDecayLR peak at warmup_max_lr, which the config sets as the optimizer's rate).
  LrScheduleOptions lr_schedule(double peak_lr) const;
  // Accumulation options for this plan: items, pre-scaled by the global batch, clipping.
  AccumulatorOptions accumulator_options() const;
  // What must be the same for a checkpoint to continue this run exactly.
  StringMap run_identity(const std::string& optimizer_kind) const;
  // "key=value" lines the ranks compare at start (everything that changes the result).
  std::string rank_description(const std::string& optimizer_kind) const;
};

// The token budget of a plan with micro_batching tokens:N over sequences of `lengths` (an empty
// budget without): ConfigError when a sequence, or a packed row, does not fit N.
TokenBudget token_budget(const RunPlan& plan, std::shared_ptr<const std::vector<int64_t>> lengths,
                         int64_t packed_row_length);

// Validates `options` against each other, the environment and a data set of `dataset_size`
// examples, and resolves them. Throws ConfigError or PlanError (one line naming the option and
// the value) for anything that cannot be meant.
RunPlan resolve_run(const TrainOptions& options, const DistEnv& env, int64_t dataset_size);

}  // namespace gradacc
