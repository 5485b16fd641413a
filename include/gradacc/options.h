// TrainOptions: everything the training loop is asked to do, as a builder in the style of
// LibTorch's own options (`TrainOptions().global_batch(256).micro_batch(32).clip(1.0)`).
//
// These are requests, not yet checked: Trainer resolves them once, with the data-parallel
// environment and the data set's size, into an immutable RunPlan (run/run_plan.h), and that is
// the only place they are validated. Every default is stated here and in docs/config.md.
//
// Thread safety: plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "gradacc/lr_schedule.h"
#include "gradacc/model.h"
#include "gradacc/precision.h"
#include "gradacc/safetensors.h"
#include "gradacc/sync_mode.h"

// A field with a chainable setter `name(value)` and getters `name()`, as LibTorch's TORCH_ARG.
#define GRADACC_ARG(T, name, ...)                    \
 public:                                             \
  auto name(T new_value)->decltype(*this) {          \
    name##_ = std::move(new_value);                  \
    return *this;                                    \
  }                                                  \
  const T& name() const noexcept { return name##_; } \
  T& name() noexcept { return name##_; }             \
                                                     \
 private:                                            \
  T name##_ = __VA_ARGS__

namespace gradacc {

inline constexpr int64_t kZeroAuto = -1;  // TrainOptions::zero: the memory planner chooses the stage

struct TrainOptions {
  // ── Batch: any two of global / micro / accumulation give the third (DeepSpeed semantics).
  GRADACC_ARG(std::optional<int64_t>, global_batch, std::nullopt);        // examples per step, all ranks
  GRADACC_ARG(std::optional<int64_t>, micro_batch, std::nullopt);         // examples per forward/backward
  GRADACC_ARG(std::optional<int64_t>, accumulation_steps, std::nullopt);  // micro-batches per step
  GRADACC_ARG(std::optional<int64_t>, world_size, std::nullopt);          // checked against WORLD_SIZE
  GRADACC_ARG(std::string, accum_schedule, "");  // "0:2,200:4": accumulation by step (micro_batch + steps)
  // Accumulation that follows the measured gradient noise scale (accumulate/auto_accum.h; needs
  // micro_batch and steps, measures the noise scale itself). Starts at accum_auto_min (unset: 2,
  // or 1 data parallel, where the ranks' shares are the small batches), at most accum_auto_max.
  // Token-budget micro-batches (text): each window of global_batch sequences (each rank's share)
  // sorted by length and cut into micro-batches of at most this many tokens (rows × longest row).
  // Replaces micro_batch and accumulation_steps; the windows are the same as with them. With a
  // memory_budget, N is checked against it; 0 lets the memory planner choose N.
  GRADACC_ARG(std::optional<int64_t>, micro_batch_tokens, std::nullopt);
  GRADACC_ARG(bool, accum_auto, false);
  GRADACC_ARG(std::optional<int64_t>, accum_auto_min, std::nullopt);
  GRADACC_ARG(int64_t, accum_auto_max, 64);
  GRADACC_ARG(int64_t, accum_auto_warmup, 20);  // optimizer steps before the first decision
  GRADACC_ARG(int64_t, accum_auto_every, 10);   // optimizer steps between decisions
  // ── Memory (docs/memory.md). With a budget, the Trainer measures the model and picks the largest
  // micro-batch (and activation checkpointing, when needed) whose predicted peak tensor memory fits;
  // global_batch must be given, and a micro_batch that does not fit is refused. The budget is also
  // enforced: on the CPU an allocation past it fails, and the window is replayed with half the
  // micro-batch.
  GRADACC_ARG(std::optional<int64_t>, memory_budget, std::nullopt);  // bytes of tensor memory on the device
  // Recompute each block's activations in the backward pass instead of keeping them: true/false,
  // or unset: on only when the memory budget needs it. Needs a model that supports it (ours do).
  GRADACC_ARG(std::optional<bool>, activation_checkpointing, std::nullopt);
  // ── Length: steps, or epochs (default 1 epoch).
  GRADACC_ARG(std::optional<int64_t>, steps, std::nullopt);
  GRADACC_ARG(std::optional<int64_t>, epochs, std::nullopt);
  // ── Learning-rate schedule, counted in optimizer steps. The peak rate is the optimizer's own.
  GRADACC_ARG(ScheduleKind, schedule, ScheduleKind::kConstant);
  GRADACC_ARG(std::optional<int64_t>, warmup, std::nullopt);       // unset: 5% of the run for cosine/linear, else 0
  GRADACC_ARG(double, min_lr, 0.0);                                // DeepSpeed's: warmup_min_lr
  GRADACC_ARG(std::optional<double>, warmup_ratio, std::nullopt);  // warmup = ⌈ratio × steps⌉ (Hugging Face)
  // The learning rate follows the batch: × lr_scale(rule, B_t, base_batch) (lr_schedule.h), B_t the
  // window's planned global batch; base_batch in samples (tokens with per-token normalization).
  GRADACC_ARG(LrScaling, lr_scaling, LrScaling::kNone);
  GRADACC_ARG(std::optional<double>, base_batch, std::nullopt);
  GRADACC_ARG(WarmupStart, warmup_start, WarmupStart::kStep1);        // (s+1)/W, or s/W (Hugging Face)
  GRADACC_ARG(std::optional<int64_t>, schedule_steps, std::nullopt);  // the schedule's horizon; unset: the run
  GRADACC_ARG(bool, log_warmup, true);         // DeepSpeed schedules: warmup_type log (else linear)
  GRADACC_ARG(double, warmup_min_ratio, 0.0);  // ds_warmup_cosine
  GRADACC_ARG(double, cos_min_ratio, 1e-4);    // ds_warmup_cosine
  // ── Clipping of the window gradient's global L2 norm; 0 = off.
  GRADACC_ARG(double, clip, 0.0);
  // ── Data order.
  GRADACC_ARG(uint64_t, seed, 0);  // the epoch permutations
  GRADACC_ARG(bool, shuffle, true);
  GRADACC_ARG(bool, drop_partial, false);  // the short last window of an epoch: rescale (default) or drop
  // ── Mixed precision (docs/precision.md).
  GRADACC_ARG(std::optional<Precision>, precision, std::nullopt);  // forward autocast; unset: param_dtype
  GRADACC_ARG(Precision, param_dtype, Precision::kFp32);
  GRADACC_ARG(Precision, grad_accum_dtype, Precision::kFp32);                // fp32 (masters) or param_dtype
  GRADACC_ARG(std::optional<double>, loss_scale_init, std::nullopt);         // fp16: 65536
  GRADACC_ARG(std::optional<double>, loss_scale_growth, std::nullopt);       // fp16: 2
  GRADACC_ARG(std::optional<double>, loss_scale_backoff, std::nullopt);      // fp16: 0.5
  GRADACC_ARG(std::optional<int64_t>, loss_scale_interval, std::nullopt);    // fp16: 2000
  GRADACC_ARG(std::optional<int64_t>, loss_scale_hysteresis, std::nullopt);  // fp16: 1 (DeepSpeed's: 2)
  GRADACC_ARG(std::optional<double>, loss_scale_min, std::nullopt);          // fp16: none (DeepSpeed's: 1)
  GRADACC_ARG(std::optional<double>, loss_scale_fixed, std::nullopt);        // fp16: a static scale
  // ── The gradient noise scale, measured each window (docs/noise-scale.md).
  GRADACC_ARG(bool, noise_scale, false);
  GRADACC_ARG(double, noise_scale_ema, 0.95);  // decay of its moving averages
  // ── Data parallel (ranks from the torchrun environment; docs/distributed.md).
  GRADACC_ARG(SyncMode, sync, SyncMode::kPerWindow);
  GRADACC_ARG(double, dist_timeout, 300.0);  // seconds before a dead or stalled rank is an error
  GRADACC_ARG(double, bucket_mb, 25.0);      // all-reduce bucket size
  // What gradients travel as (DeepSpeed's communication_data_type): fp32, or bf16/fp16 with fp32
  // sums on each side and half the bytes (sync/compressed_reducer.h; counts and losses stay exact).
  GRADACC_ARG(Precision, comm_dtype, Precision::kFp32);
  // ZeRO stage: 0, 1 (optimizer state sharded over the ranks), 2 (gradients too), 3 (parameters
  // too, gathered unit by unit: units.h), or kZeroAuto: the memory planner takes 1 when it fits
  // the memory_budget, else 2.
  GRADACC_ARG(int64_t, zero, 0);
  // ZeRO-3: free a unit's gathered parameters after its forward (and gather them again for its
  // backward), as FSDP's reshard_after_forward; false keeps them from forward to backward. Unset:
  // true, or with a memory_budget the planner's choice (false when it fits: half the gathers).
  GRADACC_ARG(std::optional<bool>, reshard_after_forward, std::nullopt);
  // ZeRO-3 without communication inside a window (FSDP's no_sync): units stay gathered from their
  // first micro-batch to the boundary and the gradient is summed whole in fp32, then reduced once.
  // 4·P more bytes and the whole model held; 1/M of the traffic. Unset: false, or with a
  // memory_budget the planner's choice (true when it fits). Needs zero 3; true contradicts
  // reshard_after_forward true.
  GRADACC_ARG(std::optional<bool>, accumulate_unsharded, std::nullopt);
  GRADACC_ARG(bool, prefetch, true);  // ZeRO-3: start the next unit's gather while one computes
  GRADACC_ARG(std::optional<bool>, overlap,
              std::nullopt);  // reduce during the last backward; unset: on when data parallel
  // ── Checkpoints and resume (docs/checkpoints.md).
  GRADACC_ARG(std::string, checkpoint_dir, "");
  GRADACC_ARG(int64_t, save_every, 0);  // optimizer steps between checkpoints; 0: at the end only
  GRADACC_ARG(int64_t, keep_checkpoints, 3);
  GRADACC_ARG(std::string, resume, "");                        // a checkpoint file, or a directory (its newest)
  GRADACC_ARG(std::optional<int64_t>, stop_at, std::nullopt);  // stop after this step, with a checkpoint
  // ── Where it runs, and what it says.
  GRADACC_ARG(std::string, device, "cpu");  // "cpu", "cuda" or "cuda:N"
  GRADACC_ARG(bool, tf32, false);           // CUDA fp32 matmul/conv on TF32 tensor cores
  GRADACC_ARG(int64_t, threads, 0);         // intra-op threads; 0: LibTorch's default (all cores)
  GRADACC_ARG(std::string, log_path, "");   // one JSON line per optimizer step
  // A TensorBoard event file in this directory (rank 0): every number of the step log as a scalar
  // "train/<field>" per optimizer step, Trainer::log_record's records, and the resolved run as text.
  // A resume adds a new file that continues the steps. ConfigError in a build without protobuf.
  GRADACC_ARG(std::string, tensorboard_dir, "");
  GRADACC_ARG(bool, progress, true);     // a progress bar, when stdout is a terminal
  GRADACC_ARG(int64_t, print_every, 0);  // a line with the step's loss every N steps; 0: none
  // What a window's loss is averaged over: its items (Batch::items: samples for classification,
  // real tokens for text), which is exact for both. kNaiveMicroMean exists for `verify`.
  GRADACC_ARG(Normalization, normalization, Normalization::kPerItem);
  // Whether the LossFn returns the sum of the batch's loss terms or their mean (model.h).
  GRADACC_ARG(LossReduction, loss_reduction, LossReduction::kSum);
  // Extra "key=value" pairs a checkpoint must match to resume (the CLI adds the model's spec).
  GRADACC_ARG(StringMap, identity, {});
};

}  // namespace gradacc
