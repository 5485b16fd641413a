// Each option group's own checks (options.h): the ranges its fields declare (checked where a value is
// written) and what else one group can say wrong about itself. What needs several groups, the
// ranks or the data set is resolve_run's (train/run_plan.cc).
#include "gradacc/options.h"

#include <fmt/format.h>

#include "gradacc/errors.h"
#include "log/run_log.h"
#include "train/option_checks.h"

namespace gradacc {

void check_value_in_range(const char* name, int64_t value, int64_t lo, int64_t hi) {
  require_count(value, lo, hi, name);
}

void check_value_in_range(const char* name, double value, double lo, double hi) { require_range(value, lo, hi, name); }

void BatchOptions::validate() const {
  if (!accum_schedule_.empty())
    require(!global_batch_ && !accumulation_steps_,
            "an accumulation schedule replaces global_batch and accumulation_steps: give micro_batch only");
  if (micro_batch_tokens_) {
    require(!accum_auto_,
            "micro_batching tokens:N with accum auto: auto grows windows of a fixed micro-batch; drop one of them");
    if (!accum_schedule_.empty()) {
      // The schedule's windows stay those of fixed micro-batches (micro_batch × accumulation ×
      // world sequences); only how each is cut changes.
      require(micro_batch_.has_value(),
              "micro_batching tokens:N with an accumulation schedule needs micro_batch: the windows are micro_batch × "
              "the schedule's accumulation × world_size sequences, each cut by tokens");
    } else {
      require(!micro_batch_ && !accumulation_steps_,
              "micro_batching tokens:N cuts each window by tokens: drop micro_batch and accumulation_steps (the window "
              "is global_batch)");
      require(global_batch_.has_value(), "micro_batching tokens:N needs global_batch (sequences per optimizer step)");
    }
    require(normalization_ != Normalization::kNaiveMicroMean,
            "micro_batching tokens:N needs per-item normalization (the naive mean assumes equal micro-batches)");
  }
  if (accum_auto_) {
    require(accum_schedule_.empty(),
            "accum auto decides the accumulation itself: drop the accumulation schedule (accum_schedule)");
    require(!global_batch_, "accum auto sets the global batch from the noise scale: drop global_batch");
    require(!accumulation_steps_, "accum auto decides the accumulation: drop accumulation_steps");
    require(micro_batch_.has_value(), "accum auto needs micro_batch (examples per forward/backward pass)");
    require(normalization_ != Normalization::kNaiveMicroMean, "accum auto needs per-item normalization");
  }
}

void DataOptions::validate() const { require(!(steps_ && epochs_), "give either steps or epochs, not both"); }

void ScheduleOptions::validate() const {
  if (lr_scaling_ == LrScaling::kNone) return;
  require(base_batch_.has_value(), fmt::format("lr_scaling {} needs --base-batch B0: the global batch the learning "
                                               "rate was tuned at",
                                               to_string(lr_scaling_)));
  require(*base_batch_ > 0 && *base_batch_ <= 1e15,
          fmt::format("base_batch must be a positive count of samples (or tokens), got {}", *base_batch_));
  require(lr_scaling_ != LrScaling::kAdaScale || !is_deepspeed(kind_),
          "adascale reads the schedule at fractional positions: use constant, cosine or linear, not DeepSpeed's");
}

bool PrecisionOptions::loss_scaling_set() const {
  return loss_scale_init_ || loss_scale_growth_ || loss_scale_backoff_ || loss_scale_interval_ ||
         loss_scale_hysteresis_ || loss_scale_min_ || loss_scale_fixed_;
}

void PrecisionOptions::validate() const {
  const Precision compute = compute_or_params();
  if (param_dtype_ != Precision::kFp32 && compute != param_dtype_) {
    throw ConfigError(fmt::format("param_dtype {} computes in {}: precision {} does not fit it",
                                  to_string(param_dtype_), to_string(param_dtype_), to_string(compute)));
  }
  if (grad_accum_dtype_ != Precision::kFp32 && grad_accum_dtype_ != param_dtype_) {
    throw ConfigError(fmt::format("grad_accum_dtype is fp32 or the param_dtype ({}), not {}", to_string(param_dtype_),
                                  to_string(grad_accum_dtype_)));
  }
  require(compute == Precision::kFp16 || !loss_scaling_set(),
          fmt::format("loss scaling applies to fp16 only; this run's precision is {}", to_string(compute)));
}

void DistributedOptions::validate() const {
  require(
      zero_ == kZeroAuto || (zero_ >= 0 && zero_ <= 3),
      fmt::format(
          "zero is 0, 1 (the optimizer state sharded), 2 (the gradients too), 3 (the parameters too) or auto, got {}",
          zero_));
  if (accumulate_unsharded_.value_or(false)) {
    require(zero_ == 3,
            "accumulate_unsharded is ZeRO-3's mode without communication inside a window: it needs --zero 3");
    require(
        !reshard_after_forward_.value_or(false),
        "accumulate_unsharded keeps every unit gathered through the window: reshard_after_forward on contradicts it");
  }
  require(!overlap_.value_or(false) || sync_ == SyncMode::kPerWindow,
          "overlap starts the window's reduction during the last backward: it needs --sync window");
}

void CheckpointOptions::validate() const {
  // A resume continues in its checkpoint's own directory unless another is given.
  const bool has_dir = !dir_.empty() || !resume_.empty();
  require(save_every_ == 0 || has_dir, "save_every needs a checkpoint directory (--checkpoint-dir)");
  require(!stop_at_ || has_dir, "stop_at needs a checkpoint directory (--checkpoint-dir) to continue from");
  require(resume_ != "auto" || !dir_.empty(),
          "resume auto continues from the newest checkpoint of the checkpoint directory, if there is one: give the "
          "directory (--checkpoint-dir)");
}

void MemoryOptions::validate() const {
  if (budget_) require(*budget_ > 0, fmt::format("memory_budget must be positive, got {}", *budget_));
}

void LoggingOptions::validate() const {
  require(tensorboard_dir_.empty() || tensorboard_supported(),
          "this gradacc was built without TensorBoard support (protobuf was not found at build time): drop "
          "tensorboard_dir, or install libprotobuf-dev and protobuf-compiler and rebuild");
}

void DeviceOptions::validate() const {}  // its one range (threads) is checked where it is written

void TrainOptions::validate() const {
  batch_.validate();
  data_.validate();
  schedule_.validate();
  precision_.validate();
  distributed_.validate();
  checkpoint_.validate();
  memory_.validate();
  logging_.validate();
  device_.validate();
}

}  // namespace gradacc
