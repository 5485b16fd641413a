// TrainOptions: everything the training loop is asked to do, grouped by concern, each group a
// small builder in the style of LibTorch's own options:
//
//   gradacc::TrainOptions options;
//   options.batch().global_batch(256).micro_batch(32).clip(1.0);
//   options.data().epochs(3);
//   options.schedule().kind(gradacc::ScheduleKind::kCosine);
//
// or, as one expression, TrainOptions().batch(BatchOptions().global_batch(256).micro_batch(32)).
// A field with a range (GRADACC_ARG_IN) refuses a value outside it where the value is written;
// each group's validate() checks what needs two of its fields (both: ConfigError, one line naming
// the option and the value). What depends on several groups, the data-parallel environment or the
// data set's size is checked once, when the Trainer resolves the options into its immutable plan.
// Every default and range is stated here; the defaults also in docs/config.md (from the CLI's table).
//
// Thread safety: plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
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

// A field as GRADACC_ARG whose every write is checked against [lo, hi] (an optional one: its value,
// when set). The setter and the mutable accessor (a Checked<T>) throw ConfigError naming the field,
// so a value out of range is refused where it is written, and a range is declared once, here.
#define GRADACC_ARG_IN(T, name, lo, hi, ...)                                                      \
 public:                                                                                          \
  auto name(T new_value)->decltype(*this) {                                                       \
    ::gradacc::check_in_range<T>(#name, new_value, lo, hi);                                       \
    name##_ = std::move(new_value);                                                               \
    return *this;                                                                                 \
  }                                                                                               \
  const T& name() const noexcept { return name##_; }                                              \
  ::gradacc::Checked<T> name() noexcept { return ::gradacc::Checked<T>(name##_, lo, hi, #name); } \
                                                                                                  \
 private:                                                                                         \
  T name##_ = __VA_ARGS__

namespace gradacc {

inline constexpr int64_t kMaxSteps = int64_t{1} << 40;  // the longest run, in optimizer steps

// The bound of a ranged field's values: T, or U for std::optional<U>.
template <typename T>
struct RangeBound {
  using type = T;
};
template <typename T>
struct RangeBound<std::optional<T>> {
  using type = T;
};
template <typename T>
using range_bound_t = typename RangeBound<T>::type;

// ConfigError unless lo <= value <= hi (a double also finite): "NAME must lie in LO..HI, got V",
// or "NAME must be a finite number in [LO, HI], got V".
void check_value_in_range(const char* name, int64_t value, int64_t lo, int64_t hi);
void check_value_in_range(const char* name, double value, double lo, double hi);

template <typename T>
void check_in_range(const char* name, const T& value, range_bound_t<T> lo, range_bound_t<T> hi) {
  if constexpr (std::is_same_v<T, range_bound_t<T>>) {
    check_value_in_range(name, value, lo, hi);
  } else if (value) {
    check_value_in_range(name, *value, lo, hi);
  }
}

// What the mutable accessor of a GRADACC_ARG_IN field returns: it reads as the value (an optional
// one as a std::optional), and checks each value assigned to it. Lives as long as its options.
template <typename T>
class Checked {
  static constexpr bool kOptional = !std::is_same_v<T, range_bound_t<T>>;

 public:
  Checked(T& slot, range_bound_t<T> lo, range_bound_t<T> hi, const char* name) noexcept
      : slot_(slot), lo_(lo), hi_(hi), name_(name) {}
  Checked& operator=(T value) {
    check_in_range<T>(name_, value, lo_, hi_);
    slot_ = std::move(value);
    return *this;
  }
  Checked(const Checked&) = default;
  Checked& operator=(const Checked& other) { return *this = other.get(); }  // a.clip() = b.clip(): the value
  const T& get() const noexcept { return slot_; }
  operator const T&() const noexcept { return slot_; }  // NOLINT: reads as the value
  template <typename U>
  friend bool operator==(const Checked& field, const U& other) {
    return field.slot_ == other;
  }
  // std::optional's reads, for an optional field.
  explicit operator bool() const noexcept requires kOptional { return slot_.has_value(); }
  bool has_value() const noexcept requires kOptional { return slot_.has_value(); }
  const range_bound_t<T>& operator*() const noexcept requires kOptional { return *slot_; }
  const range_bound_t<T>& value() const requires kOptional { return slot_.value(); }
  range_bound_t<T> value_or(range_bound_t<T> fallback) const requires kOptional { return slot_.value_or(fallback); }

 private:
  T& slot_;
  range_bound_t<T> lo_, hi_;
  const char* name_;
};

inline constexpr int64_t kZeroAuto = -1;  // DistributedOptions::zero: the memory planner chooses the stage

// The window: its size (any two of global / micro / accumulation give the third, DeepSpeed's
// rule), how it is cut into micro-batches, and how its gradient is formed and clipped.
struct BatchOptions {
  GRADACC_ARG(std::optional<int64_t>, global_batch, std::nullopt);        // examples per step, all ranks
  GRADACC_ARG(std::optional<int64_t>, micro_batch, std::nullopt);         // examples per forward/backward
  GRADACC_ARG(std::optional<int64_t>, accumulation_steps, std::nullopt);  // micro-batches per step
  GRADACC_ARG(std::string, accum_schedule, "");  // "0:2,200:4": accumulation by step (micro_batch + steps)
  // Token-budget micro-batches (text): each window of global_batch sequences (each rank's share)
  // sorted by length and cut into micro-batches of at most this many tokens (rows × longest row).
  // Replaces micro_batch and accumulation_steps; the windows are the same as with them. With a
  // memory budget, N is checked against it; 0 lets the memory planner choose N.
  GRADACC_ARG_IN(std::optional<int64_t>, micro_batch_tokens, 0, int64_t{1} << 40, std::nullopt);
  // Accumulation that follows the measured gradient noise scale (needs micro_batch and steps).
  // Starts at accum_auto_min (unset: 2, or 1 data parallel, where the ranks' shares are the small
  // batches), at most accum_auto_max.
  GRADACC_ARG(bool, accum_auto, false);
  GRADACC_ARG(std::optional<int64_t>, accum_auto_min, std::nullopt);
  GRADACC_ARG(int64_t, accum_auto_max, 64);
  GRADACC_ARG_IN(int64_t, accum_auto_warmup, 0, kMaxSteps, 20);  // optimizer steps before the first decision
  GRADACC_ARG_IN(int64_t, accum_auto_every, 1, kMaxSteps, 10);   // optimizer steps between decisions
  // What a window's loss is averaged over: its items (Batch::items: samples for classification,
  // real tokens for text), which is exact for both. kNaiveMicroMean exists for `verify`.
  GRADACC_ARG(Normalization, normalization, Normalization::kPerItem);
  // Whether the LossFn returns the sum of the batch's loss terms or their mean (model.h).
  GRADACC_ARG(LossReduction, loss_reduction, LossReduction::kSum);
  GRADACC_ARG_IN(double, clip, 0.0, 1e12, 0.0);  // the window gradient's global L2 norm at most this; 0 = off

 public:
  void validate() const;
};

// How much data, and in which order: the run's length (steps, or epochs; default 1 epoch).
struct DataOptions {
  GRADACC_ARG_IN(std::optional<int64_t>, steps, 1, kMaxSteps, std::nullopt);
  GRADACC_ARG_IN(std::optional<int64_t>, epochs, 1, 1000000, std::nullopt);
  GRADACC_ARG(uint64_t, seed, 0);  // the epoch permutations
  GRADACC_ARG(bool, shuffle, true);
  GRADACC_ARG(bool, drop_partial, false);  // the short last window of an epoch: rescale (default) or drop

 public:
  void validate() const;
};

// The learning rate, counted in optimizer steps (lr_schedule.h). The peak rate is the optimizer's.
struct ScheduleOptions {
  GRADACC_ARG(ScheduleKind, kind, ScheduleKind::kConstant);
  GRADACC_ARG_IN(std::optional<int64_t>, warmup, 0, kMaxSteps,
                 std::nullopt);  // unset: 5% of the run for cosine/linear, else 0
  GRADACC_ARG_IN(std::optional<double>, warmup_ratio, 0.0, 1.0,
                 std::nullopt);                                 // warmup = ⌈ratio × horizon⌉ when warmup is unset
  GRADACC_ARG(WarmupStart, warmup_start, WarmupStart::kStep1);  // (s+1)/W, or s/W
  GRADACC_ARG_IN(double, min_lr, 0.0, 1e6, 0.0);                // the floor the decay ends at
  GRADACC_ARG_IN(std::optional<int64_t>, horizon, 1, kMaxSteps,
                 std::nullopt);  // the schedule's length; unset: the run's
  // The learning rate follows the batch: × lr_scale(rule, B_t, base_batch) (lr_schedule.h), B_t the
  // window's planned global batch; base_batch in samples (tokens with per-token normalization).
  GRADACC_ARG(LrScaling, lr_scaling, LrScaling::kNone);
  GRADACC_ARG(std::optional<double>, base_batch, std::nullopt);
  // The shape of the ds_* kinds (lr_schedule.h): log or linear warmup, and WarmupCosineLR's ratios.
  GRADACC_ARG(bool, log_warmup, true);
  GRADACC_ARG(double, warmup_min_ratio, 0.0);
  GRADACC_ARG(double, cos_min_ratio, 1e-4);

 public:
  void validate() const;
};

// Mixed precision (docs/precision.md). The loss-scale fields apply to fp16 only (unset: defaults).
struct PrecisionOptions {
  GRADACC_ARG(std::optional<Precision>, compute, std::nullopt);  // forward autocast; unset: param_dtype
  GRADACC_ARG(Precision, param_dtype, Precision::kFp32);
  GRADACC_ARG(Precision, grad_accum_dtype, Precision::kFp32);                // fp32 (masters) or param_dtype
  GRADACC_ARG(std::optional<double>, loss_scale_init, std::nullopt);         // 65536
  GRADACC_ARG(std::optional<double>, loss_scale_growth, std::nullopt);       // 2
  GRADACC_ARG(std::optional<double>, loss_scale_backoff, std::nullopt);      // 0.5
  GRADACC_ARG(std::optional<int64_t>, loss_scale_interval, std::nullopt);    // 2000
  GRADACC_ARG(std::optional<int64_t>, loss_scale_hysteresis, std::nullopt);  // 1: overflows before a backoff
  GRADACC_ARG(std::optional<double>, loss_scale_min, std::nullopt);          // none: the scale's floor
  GRADACC_ARG(std::optional<double>, loss_scale_fixed, std::nullopt);        // a static scale

 public:
  // The precision the forward computes in.
  Precision compute_or_params() const { return compute_.value_or(param_dtype_); }
  bool loss_scaling_set() const;
  void validate() const;
};

// Data parallel (ranks from the torchrun environment; docs/distributed.md, docs/zero.md).
struct DistributedOptions {
  GRADACC_ARG(std::optional<int64_t>, world_size, std::nullopt);  // checked against WORLD_SIZE
  GRADACC_ARG(SyncMode, sync, SyncMode::kPerWindow);
  GRADACC_ARG_IN(double, timeout, 1e-3, 1e7, 300.0);   // seconds before a dead or stalled rank is an error
  GRADACC_ARG_IN(double, bucket_mb, 1e-3, 1e6, 25.0);  // all-reduce bucket size
  // What gradients travel as: fp32, or bf16/fp16 with fp32 sums on each side and half the bytes
  // (counts and losses stay exact).
  GRADACC_ARG(Precision, comm_dtype, Precision::kFp32);
  // ZeRO stage: 0, 1 (optimizer state sharded over the ranks), 2 (gradients too), 3 (parameters
  // too, gathered unit by unit: units.h), or kZeroAuto: the memory planner takes 1 when it fits
  // the memory budget, else 2.
  GRADACC_ARG(int64_t, zero, 0);
  // ZeRO-3: free a unit's gathered parameters after its forward (and gather them again for its
  // backward), as FSDP's reshard_after_forward; false keeps them from forward to backward. Unset:
  // true, or with a memory budget the planner's choice (false when it fits: half the gathers).
  GRADACC_ARG(std::optional<bool>, reshard_after_forward, std::nullopt);
  // ZeRO-3 without communication inside a window (FSDP's no_sync): units stay gathered from their
  // first micro-batch to the boundary and the gradient is summed whole in fp32, then reduced once.
  // 4·P more bytes and the whole model held; 1/M of the traffic. Unset: false, or with a memory
  // budget the planner's choice (true when it fits). Needs zero 3.
  GRADACC_ARG(std::optional<bool>, accumulate_unsharded, std::nullopt);
  GRADACC_ARG(bool, prefetch, true);  // ZeRO-3: start the next unit's gather while one computes
  // Reduce during the last backward; unset: on when data parallel.
  GRADACC_ARG(std::optional<bool>, overlap, std::nullopt);

 public:
  void validate() const;
};

// Checkpoints and resume (docs/checkpoints.md).
struct CheckpointOptions {
  GRADACC_ARG(std::string, dir, "");                     // "" = none (a resume defaults it to the checkpoint's own)
  GRADACC_ARG_IN(int64_t, save_every, 0, kMaxSteps, 0);  // optimizer steps between checkpoints; 0: at the end only
  GRADACC_ARG_IN(int64_t, keep, 1, 1000000, 3);          // newest kept in dir
  GRADACC_ARG(std::string, resume, "");                  // a checkpoint file, a directory (its newest), or
                                                         // "auto": dir's newest if any, else a fresh run
  GRADACC_ARG_IN(std::optional<int64_t>, stop_at, 1, kMaxSteps,
                 std::nullopt);  // stop after this step, with a checkpoint

 public:
  void validate() const;
};

// Memory (docs/memory.md). With a budget, the Trainer measures the model and picks the largest
// micro-batch (and activation checkpointing, when needed) whose predicted peak tensor memory fits;
// the global batch must be given, and a micro-batch that does not fit is refused. The budget is
// also enforced: on the CPU an allocation past it fails, and the window is replayed with half the
// micro-batch.
struct MemoryOptions {
  GRADACC_ARG(std::optional<int64_t>, budget, std::nullopt);  // bytes of tensor memory on the device
  // Recompute each block's activations in the backward pass instead of keeping them: true/false,
  // or unset: on only when the memory budget needs it. Needs a model that supports it (ours do).
  GRADACC_ARG(std::optional<bool>, activation_checkpointing, std::nullopt);

 public:
  void validate() const;
};

// What the run measures and says (rank 0 writes; docs/tensorboard.md, docs/noise-scale.md).
struct LoggingOptions {
  GRADACC_ARG(std::string, log_path, "");  // one JSON line per optimizer step
  // A TensorBoard event file in this directory: every number of the step log as a scalar
  // "train/<field>" per optimizer step, Trainer::log_record's records, and the resolved run as text.
  // A resume adds a new file that continues the steps. ConfigError in a build without protobuf.
  GRADACC_ARG(std::string, tensorboard_dir, "");
  GRADACC_ARG(bool, progress, true);                             // a progress bar, when stdout is a terminal
  GRADACC_ARG_IN(int64_t, print_every, 0, kMaxSteps, 0);         // a line with the step's loss every N steps; 0: none
  GRADACC_ARG(bool, noise_scale, false);                         // measure the gradient noise scale each window
  GRADACC_ARG_IN(double, noise_scale_ema, 0.0, 0.999999, 0.95);  // decay of its moving averages

 public:
  void validate() const;
};

// Where it runs.
struct DeviceOptions {
  GRADACC_ARG(std::string, name, "cpu");         // "cpu", "cuda" or "cuda:N"
  GRADACC_ARG(bool, tf32, false);                // CUDA fp32 matmul/conv on TF32 tensor cores
  GRADACC_ARG_IN(int64_t, threads, 0, 1024, 0);  // intra-op threads; 0: LibTorch's default (all cores)

 public:
  void validate() const;
};

struct TrainOptions {
  GRADACC_ARG(BatchOptions, batch, {});
  GRADACC_ARG(DataOptions, data, {});
  GRADACC_ARG(ScheduleOptions, schedule, {});
  GRADACC_ARG(PrecisionOptions, precision, {});
  GRADACC_ARG(DistributedOptions, distributed, {});
  GRADACC_ARG(CheckpointOptions, checkpoint, {});
  GRADACC_ARG(MemoryOptions, memory, {});
  GRADACC_ARG(LoggingOptions, logging, {});
  GRADACC_ARG(DeviceOptions, device, {});
  // Extra "key=value" pairs a checkpoint must match to resume (the CLI adds the model's spec).
  GRADACC_ARG(StringMap, identity, {});

 public:
  // Every group's validate(), in the order above.
  void validate() const;
  // The group of type G (for code that handles every group alike, as the CLI's options table).
  template <typename G>
  G& group() noexcept {
    if constexpr (std::is_same_v<G, BatchOptions>)
      return batch_;
    else if constexpr (std::is_same_v<G, DataOptions>)
      return data_;
    else if constexpr (std::is_same_v<G, ScheduleOptions>)
      return schedule_;
    else if constexpr (std::is_same_v<G, PrecisionOptions>)
      return precision_;
    else if constexpr (std::is_same_v<G, DistributedOptions>)
      return distributed_;
    else if constexpr (std::is_same_v<G, CheckpointOptions>)
      return checkpoint_;
    else if constexpr (std::is_same_v<G, MemoryOptions>)
      return memory_;
    else if constexpr (std::is_same_v<G, LoggingOptions>)
      return logging_;
    else {
      static_assert(std::is_same_v<G, DeviceOptions>, "not a group of TrainOptions");
      return device_;
    }
  }
};

}  // namespace gradacc
