// resolve_run(): the one place where a run's options are checked and turned into numbers.
#include "train/run_plan.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include <fmt/format.h>

#include "checkpoint/checkpoint.h"
#include "gradacc/device.h"
#include "gradacc/errors.h"
#include "log/run_log.h"
#include "train/zero_choice.h"

namespace gradacc {
namespace {

constexpr int64_t kMaxSteps = int64_t{1} << 40;
constexpr int64_t kMaxThreads = 1024;

void require(bool ok, const std::string& message) {
  if (!ok) throw ConfigError(message);
}

// A finite number in [lo, hi].
void require_range(double v, double lo, double hi, const char* name) {
  require(std::isfinite(v) && v >= lo && v <= hi,
          fmt::format("{} must be a finite number in [{}, {}], got {}", name, lo, hi, v));
}

void require_count(int64_t v, int64_t lo, int64_t hi, const char* name) {
  require(v >= lo && v <= hi, fmt::format("{} must lie in {}..{}, got {}", name, lo, hi, v));
}

std::optional<LossScalerOptions> loss_scaler_of(const TrainOptions& o, Precision precision) {
  const bool any = o.loss_scale_init() || o.loss_scale_growth() || o.loss_scale_backoff() || o.loss_scale_interval() ||
                   o.loss_scale_hysteresis() || o.loss_scale_min() || o.loss_scale_fixed();
  if (precision != Precision::kFp16) {
    require(!any, fmt::format("loss scaling applies to fp16 only; this run's precision is {}", to_string(precision)));
    return std::nullopt;
  }
  LossScalerOptions s;
  if (o.loss_scale_init()) s.init_scale = *o.loss_scale_init();
  if (o.loss_scale_growth()) s.growth_factor = *o.loss_scale_growth();
  if (o.loss_scale_backoff()) s.backoff_factor = *o.loss_scale_backoff();
  if (o.loss_scale_interval()) s.growth_interval = *o.loss_scale_interval();
  if (o.loss_scale_hysteresis()) s.hysteresis = *o.loss_scale_hysteresis();
  if (o.loss_scale_min()) s.min_scale = *o.loss_scale_min();
  if (o.loss_scale_fixed()) {
    s.init_scale = *o.loss_scale_fixed();
    s.dynamic = false;
  }
  try {
    LossScaler check(s);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(e.what());
  }
  return s;
}

}  // namespace

RunPlan resolve_run(const TrainOptions& o, const DistEnv& env, int64_t dataset_size) {
  if (dataset_size < 1) throw DataError("the training data set is empty");
  // Length.
  require(!(o.steps() && o.epochs()), "give either steps or epochs, not both");
  if (o.steps()) require_count(*o.steps(), 1, kMaxSteps, "steps");
  if (o.epochs()) require_count(*o.epochs(), 1, 1000000, "epochs");
  if (o.stop_at()) require_count(*o.stop_at(), 1, kMaxSteps, "stop_at");
  if (o.warmup()) require_count(*o.warmup(), 0, kMaxSteps, "warmup");
  require_range(o.clip(), 0.0, 1e12, "clip");
  require_range(o.min_lr(), 0.0, 1e6, "min_lr");
  require_range(o.dist_timeout(), 1e-3, 1e7, "dist_timeout");
  require_range(o.bucket_mb(), 1e-3, 1e6, "bucket_mb");
  require_count(o.threads(), 0, kMaxThreads, "threads");
  require_count(o.save_every(), 0, kMaxSteps, "save_every");
  require_count(o.keep_checkpoints(), 1, 1000000, "keep_checkpoints");

  // The batch: world size from the environment (a configured one must agree).
  if (o.world_size() && *o.world_size() != env.world_size) {
    throw ConfigError(
        fmt::format("world_size is {} in the options, but WORLD_SIZE is {}", *o.world_size(), env.world_size));
  }
  std::optional<AccumSchedule> accum_schedule;
  if (!o.accum_schedule().empty()) {
    require(!o.global_batch() && !o.accumulation_steps(),
            "an accumulation schedule replaces global_batch and accumulation_steps: give micro_batch only");
    require(o.steps().has_value(), "an accumulation schedule needs steps (the run's length in optimizer steps)");
    try {
      accum_schedule = AccumSchedule::parse(o.accum_schedule());
    } catch (const PlanError& e) {
      throw ConfigError(e.what());
    }
  }
  // Token-budget micro-batches: the window is the global batch (or the accumulation schedule's);
  // the sampler cuts each rank's share.
  if (o.micro_batch_tokens()) {
    if (*o.micro_batch_tokens() == 0) {
      require(o.memory_budget().has_value(),
              "micro_batching tokens without N needs memory_budget (the planner chooses N): give tokens:N or a budget");
    } else {
      require_count(*o.micro_batch_tokens(), 1, int64_t{1} << 40, "micro_batch_tokens");
    }
    require(!o.accum_auto(),
            "micro_batching tokens:N with accum auto: auto grows windows of a fixed micro-batch; drop one of them");
    if (accum_schedule) {
      // The schedule's windows stay those of fixed micro-batches (micro_batch × accumulation ×
      // world sequences); only how each is cut changes.
      require(o.micro_batch().has_value(),
              "micro_batching tokens:N with an accumulation schedule needs micro_batch: the windows are micro_batch × "
              "the schedule's accumulation × world_size sequences, each cut by tokens");
    } else {
      require(!o.micro_batch() && !o.accumulation_steps(),
              "micro_batching tokens:N cuts each window by tokens: drop micro_batch and accumulation_steps (the window "
              "is global_batch)");
      require(o.global_batch().has_value(),
              "micro_batching tokens:N needs global_batch (sequences per optimizer step)");
    }
    require(o.normalization() != Normalization::kNaiveMicroMean,
            "micro_batching tokens:N needs per-item normalization (the naive mean assumes equal micro-batches)");
  }
  // Accumulation that follows the noise scale: from the starting accumulation, the micro-batch fixed.
  std::optional<AutoAccumOptions> auto_accum;
  if (o.accum_auto()) {
    require(accum_schedule == std::nullopt,
            "accum auto decides the accumulation itself: drop the accumulation schedule (accum_schedule)");
    require(!o.global_batch(), "accum auto sets the global batch from the noise scale: drop global_batch");
    require(!o.accumulation_steps(), "accum auto decides the accumulation: drop accumulation_steps");
    require(!o.memory_budget(), "accum auto keeps the micro-batch fixed: drop memory_budget, give micro_batch");
    require(o.micro_batch().has_value(), "accum auto needs micro_batch (examples per forward/backward pass)");
    require(o.steps().has_value(), "accum auto needs steps (the run's length in optimizer steps)");
    require(o.normalization() != Normalization::kNaiveMicroMean, "accum auto needs per-item normalization");
    require(o.sync() == SyncMode::kPerWindow || env.world_size == 1,
            "accum auto measures the noise scale, which needs --sync window");
    AutoAccumOptions a;
    a.min_accum = o.accum_auto_min().value_or(env.world_size > 1 ? 1 : 2);
    a.max_accum = o.accum_auto_max();
    a.warmup = o.accum_auto_warmup();
    a.interval = o.accum_auto_every();
    a.micro_batch = *o.micro_batch();
    a.world_size = env.world_size;
    require_count(a.warmup, 0, kMaxSteps, "accum_auto_warmup");
    require_count(a.interval, 1, kMaxSteps, "accum_auto_every");
    require(a.min_accum >= 1 && a.max_accum >= a.min_accum && a.max_accum <= 1000000,
            fmt::format("accum auto needs 1 ≤ MIN ≤ MAX ≤ 1000000, got MIN {} and MAX {}", a.min_accum, a.max_accum));
    require(
        a.min_accum > 1 || env.world_size > 1,
        "accum auto starting at 1 micro-batch on one process has nothing small to compare the window with: MIN ≥ 2");
    auto_accum = a;
  }
  const int64_t first_accum = accum_schedule ? accum_schedule->at(0) : auto_accum ? auto_accum->min_accum : 0;
  // A memory budget: the Trainer measures the model and picks the micro-batch (and accumulation)
  // for the global batch; until then the plan holds the user's micro-batch, or the whole share.
  std::optional<int64_t> micro_batch = o.micro_batch(), accumulation_steps = o.accumulation_steps();
  if (o.memory_budget()) {
    require(*o.memory_budget() > 0, fmt::format("memory_budget must be positive, got {}", *o.memory_budget()));
    require(!accum_schedule, "a memory budget plans one micro-batch for the run: drop the accumulation schedule");
    if (!o.global_batch()) {
      throw ConfigError(o.accumulation_steps()
                            ? "memory_budget with accumulation_steps needs global_batch: give the global batch, and "
                              "the planner chooses the micro-batch and the accumulation"
                            : "memory_budget needs global_batch: the planner chooses the micro-batch and accumulation "
                              "for it");
    }
    if (accumulation_steps) {  // global and accumulation fix the micro-batch: the user's, to check
      micro_batch =
          BatchPlan::resolve({o.global_batch(), std::nullopt, accumulation_steps, env.world_size}).micro_batch;
      accumulation_steps.reset();
    }
    if (!micro_batch) micro_batch = std::min((*o.global_batch() + env.world_size - 1) / env.world_size, dataset_size);
  }
  if (o.micro_batch_tokens() && !accum_schedule)
    micro_batch = (*o.global_batch() + env.world_size - 1) / env.world_size;
  const BatchPlan batch =
      BatchPlan::resolve({o.global_batch(), micro_batch,
                          accum_schedule || auto_accum ? std::optional<int64_t>(first_accum) : accumulation_steps,
                          env.world_size, /*short_last_micro=*/o.memory_budget() || o.micro_batch_tokens()});
  if (o.noise_scale() && !o.memory_budget() && !accum_schedule && !auto_accum && batch.accumulation_steps == 1 &&
      env.world_size == 1) {
    throw ConfigError(
        "noise_scale needs a window of more than one micro-batch: accumulation_steps is 1 and world_size is 1, so "
        "there "
        "is nothing small to compare the window with");
  }
  if (batch.micro_batch > dataset_size) {
    throw ConfigError(fmt::format("micro-batch of {} is larger than the training data ({} examples)", batch.micro_batch,
                                  dataset_size));
  }
  const EpochLayout epoch = EpochLayout::of(batch, dataset_size, o.drop_partial());
  const int64_t total_steps = o.steps() ? *o.steps() : o.epochs().value_or(1) * epoch.windows();
  require(total_steps <= kMaxSteps, fmt::format("the run would take {} steps, more than {}", total_steps, kMaxSteps));
  const int64_t last_step = std::min(total_steps, o.stop_at().value_or(total_steps));

  // Learning-rate schedule: checked now, built by the Trainer with the optimizer's peak rate. The
  // warmup: as given; else ⌈ratio × horizon⌉ (Hugging Face's warmup_ratio); else DeepSpeed's 1000
  // for its schedules, 5% of the run for cosine/linear, none for constant.
  if (o.schedule_steps()) require_count(*o.schedule_steps(), 1, kMaxSteps, "schedule_steps");
  if (o.warmup_ratio()) require_range(*o.warmup_ratio(), 0.0, 1.0, "warmup_ratio");
  const int64_t horizon = o.schedule_steps().value_or(total_steps);
  const bool deepspeed_schedule = o.schedule() == ScheduleKind::kDsWarmup ||
                                  o.schedule() == ScheduleKind::kDsWarmupDecay ||
                                  o.schedule() == ScheduleKind::kDsWarmupCosine;
  const int64_t warmup = o.warmup() && (*o.warmup() > 0 || !o.warmup_ratio()) ? *o.warmup()
                         : o.warmup_ratio()
                             ? static_cast<int64_t>(std::ceil(*o.warmup_ratio() * static_cast<double>(horizon)))
                             : (deepspeed_schedule                        ? 1000
                                : o.schedule() == ScheduleKind::kConstant ? 0
                                                                          : horizon / 20);
  LrScheduleOptions lr_shape{o.schedule(), 1.0, warmup, horizon, o.min_lr()};
  lr_shape.warmup_start = o.warmup_start();
  lr_shape.log_warmup = o.log_warmup();
  lr_shape.warmup_min_ratio = o.warmup_min_ratio();
  lr_shape.cos_min_ratio = o.cos_min_ratio();
  try {
    LrScheduleOptions check = lr_shape;
    check.base_lr = std::max(1.0, o.min_lr());
    LrSchedule schedule(check);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(e.what());
  }
  std::vector<std::string> notes;
  if (o.lr_scaling() != LrScaling::kNone) {
    require(o.base_batch().has_value(), fmt::format("lr_scaling {} needs --base-batch B0: the global batch the "
                                                    "learning rate was tuned at",
                                                    to_string(o.lr_scaling())));
    require(*o.base_batch() > 0 && *o.base_batch() <= 1e15,
            fmt::format("base_batch must be a positive count of samples (or tokens), got {}", *o.base_batch()));
    const bool ds = o.schedule() == ScheduleKind::kDsWarmup || o.schedule() == ScheduleKind::kDsWarmupDecay ||
                    o.schedule() == ScheduleKind::kDsWarmupCosine;
    require(o.lr_scaling() != LrScaling::kAdaScale || !ds,
            "adascale reads the schedule at fractional positions: use constant, cosine or linear, not DeepSpeed's");
    if (o.lr_scaling() == LrScaling::kAdaScale && !o.noise_scale() && !auto_accum)
      notes.push_back(
          "note: --lr-scaling adascale measures the gradient noise scale (as --noise-scale does): its "
          "gain comes from those estimates");
  } else if (o.base_batch()) {
    notes.push_back(
        "note: --base-batch is read by --lr-scaling only, which is none here: the learning rate is as given");
  }
  require_count(o.print_every(), 0, kMaxSteps, "print_every");
  const bool noise_scale = o.noise_scale() || auto_accum || o.lr_scaling() == LrScaling::kAdaScale;
  if (noise_scale) {
    require_range(o.noise_scale_ema(), 0.0, 0.999999, "noise_scale_ema");
    require(o.normalization() != Normalization::kNaiveMicroMean, "the noise scale needs per-item normalization");
    require(o.sync() == SyncMode::kPerWindow || env.world_size == 1,
            "the noise scale needs --sync window (every-micro-batch sync mixes the ranks' first micro-batches)");
  }

  // Data parallel: ZeRO and overlap. `zero auto` starts on ZeRO-1; the memory planner may take 2.
  const auto [zero, zero_auto] = resolve_zero_stage(o, env.distributed(), notes);
  require(!o.overlap().value_or(false) || o.sync() == SyncMode::kPerWindow,
          "overlap starts the window's reduction during the last backward: it needs --sync window");
  if (zero == 1 && !zero_auto && o.overlap().value_or(false))
    notes.push_back("note: overlap does not apply with zero 1: its reduce-scatter runs once, at the window boundary");
  if (o.comm_dtype() != Precision::kFp32 && !env.distributed()) {
    notes.push_back(fmt::format("note: comm_dtype {} applies to data parallel; one process sends no gradients",
                                to_string(o.comm_dtype())));
  }
  const bool overlap = o.overlap().value_or(true) && env.distributed() && o.sync() == SyncMode::kPerWindow && !zero;

  // Precision.
  const Precision precision = o.precision().value_or(o.param_dtype());
  if (o.param_dtype() != Precision::kFp32 && precision != o.param_dtype()) {
    throw ConfigError(fmt::format("param_dtype {} computes in {}: precision {} does not fit it",
                                  to_string(o.param_dtype()), to_string(o.param_dtype()), to_string(precision)));
  }
  if (o.grad_accum_dtype() != Precision::kFp32 && o.grad_accum_dtype() != o.param_dtype()) {
    throw ConfigError(fmt::format("grad_accum_dtype is fp32 or the param_dtype ({}), not {}",
                                  to_string(o.param_dtype()), to_string(o.grad_accum_dtype())));
  }
  std::optional<at::ScalarType> master_params, param_dtype;
  if (o.param_dtype() != Precision::kFp32) {
    (o.grad_accum_dtype() == Precision::kFp32 ? master_params : param_dtype) = scalar_type(o.param_dtype());
  }
  if (env.distributed() && param_dtype) {
    throw ConfigError(fmt::format("data-parallel training sums gradients in fp32, not {} (use grad_accum_dtype fp32)",
                                  to_string(o.grad_accum_dtype())));
  }
  const std::optional<LossScalerOptions> loss_scaler = loss_scaler_of(o, precision);

  // Checkpoints: resuming defaults the directory to the checkpoint's own.
  CheckpointPolicy checkpoint{o.checkpoint_dir(), o.save_every(), o.keep_checkpoints(), ""};
  if (!o.resume().empty()) {
    checkpoint.resume_from = resolve_checkpoint(o.resume());
    if (checkpoint.dir.empty()) checkpoint.dir = std::filesystem::path(checkpoint.resume_from).parent_path().string();
  }
  require(o.save_every() == 0 || !checkpoint.dir.empty(), "save_every needs a checkpoint directory (--checkpoint-dir)");
  require(!o.stop_at() || !checkpoint.dir.empty(),
          "stop_at needs a checkpoint directory (--checkpoint-dir) to continue from");
  require(o.tensorboard_dir().empty() || tensorboard_supported(),
          "this gradacc was built without TensorBoard support (protobuf was not found at build time): drop "
          "tensorboard_dir, or install libprotobuf-dev and protobuf-compiler and rebuild");

  at::Device device = at::kCPU;
  try {
    // Data parallel on "cuda": one GPU per local rank, as torchrun's LOCAL_RANK says.
    device =
        resolve_device(o.device() == "cuda" && env.distributed() ? fmt::format("cuda:{}", env.local_rank) : o.device());
  } catch (const std::invalid_argument& e) {
    throw ConfigError(e.what());
  }

  return RunPlan{
      .batch = batch,
      .accum_schedule = accum_schedule,
      .total_steps = total_steps,
      .last_step = last_step,
      .epoch = epoch,
      .dataset_size = dataset_size,
      .sampler = WindowSamplerOptions{o.shuffle(), o.seed(), o.drop_partial(), env.rank},
      .env = env,
      .sync = o.sync(),
      .dist_timeout_seconds = o.dist_timeout(),
      .bucket_bytes = static_cast<int64_t>(o.bucket_mb() * (1 << 20)),
      .comm_dtype = o.comm_dtype(),
      .zero = zero,
      .zero_auto = zero_auto,
      .gather = ParameterGatherOptions{o.reshard_after_forward().value_or(!o.accumulate_unsharded().value_or(false)),
                                       o.prefetch(), o.accumulate_unsharded().value_or(false)},
      .zero3_auto =
          zero == 3 && !o.reshard_after_forward() && !o.accumulate_unsharded() && o.memory_budget().has_value(),
      .overlap = overlap,
      .notes = notes,
      .device = device,
      .tf32 = o.tf32(),
      .threads = o.threads(),
      .precision = precision,
      .master_params = master_params,
      .param_dtype = param_dtype,
      .loss_scaler = loss_scaler,
      .normalization = o.normalization(),
      .clip = o.clip(),
      .schedule = o.schedule(),
      .warmup_steps = warmup,
      .min_lr = o.min_lr(),
      .lr_shape = lr_shape,
      .lr_scaling = o.lr_scaling(),
      .base_batch = o.lr_scaling() != LrScaling::kNone ? *o.base_batch() : 0.0,
      .checkpoint = checkpoint,
      .log_path = env.rank == 0 ? o.log_path() : "",
      .tensorboard_dir = env.rank == 0 ? o.tensorboard_dir() : "",
      .progress = o.progress() && env.rank == 0,
      .print_every = env.rank == 0 ? o.print_every() : 0,
      .identity = o.identity(),
      .memory_budget = o.memory_budget(),
      .requested_micro_batch = o.memory_budget() && (o.micro_batch() || o.accumulation_steps())
                                   ? std::optional<int64_t>(batch.micro_batch)
                                   : std::nullopt,
      .activation_checkpointing = o.activation_checkpointing(),
      .noise_scale_ema = noise_scale ? std::optional<double>(o.noise_scale_ema()) : std::nullopt,
      .auto_accum = auto_accum,
      .micro_batch_tokens = o.micro_batch_tokens(),
  };
}

LrScheduleOptions RunPlan::lr_schedule(double peak_lr) const {
  LrScheduleOptions o = lr_shape;
  o.base_lr = peak_lr;
  return o;
}

AccumulatorOptions RunPlan::accumulator_options() const {
  // Pre-scaled by the examples of a full window: windows whose items equal their samples
  // (classification) then need no rescale at all (the factor at the boundary is exactly 1).
  AccumulatorOptions a;
  a.normalization = normalization;
  a.max_grad_norm = clip;
  a.nominal_count = normalization == Normalization::kNaiveMicroMean ? batch.accumulation_steps : batch.global_batch;
  return a;
}

TokenBudget token_budget(const RunPlan& plan, std::shared_ptr<const std::vector<int64_t>> lengths,
                         int64_t packed_row_length) {
  if (!plan.micro_batch_tokens) return {};
  const int64_t budget = *plan.micro_batch_tokens;
  const int64_t longest = *std::max_element(lengths->begin(), lengths->end());
  if (longest > budget)
    throw ConfigError(
        fmt::format("micro_batching tokens:{} is smaller than the longest sequence ({} tokens)", budget, longest));
  if (packed_row_length > budget)
    throw ConfigError(
        fmt::format("micro_batching tokens:{} holds no packed row of {} tokens", budget, packed_row_length));
  // Collectives every micro-batch: every rank runs the busiest rank's count.
  const bool same_count = plan.env.distributed() && (plan.sync == SyncMode::kEveryMicroBatch || plan.zero >= 2);
  return TokenBudget{budget, std::move(lengths), same_count, packed_row_length};
}

}  // namespace gradacc
