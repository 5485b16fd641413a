// resolve_run(): a run's option groups, each checked by itself (options.h), resolved together with
// the ranks and the data set into the numbers the loop uses; the checks that span groups are here.
#include "train/run_plan.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include <fmt/format.h>

#include "checkpoint/checkpoint.h"
#include "gradacc/device.h"
#include "gradacc/errors.h"
#include "train/option_checks.h"
#include "train/zero_choice.h"

namespace gradacc {
namespace {

// The window and the run's length (BatchOptions and DataOptions, with the ranks and the data).
struct Windows {
  BatchPlan batch;
  std::optional<AccumSchedule> accum_schedule;
  std::optional<AutoAccumOptions> auto_accum;
  std::optional<int64_t> requested_micro_batch;
  EpochLayout epoch;
  int64_t total_steps = 0;
};

Windows resolve_windows(const TrainOptions& options, const DistEnv& env, int64_t dataset_size) {
  const BatchOptions& o = options.batch();
  const DataOptions& d = options.data();
  const std::optional<int64_t> budget = options.memory().budget();
  Windows w;
  if (!o.accum_schedule().empty()) {
    require(d.steps().has_value(), "an accumulation schedule needs steps (the run's length in optimizer steps)");
    require(!budget, "a memory budget plans one micro-batch for the run: drop the accumulation schedule");
    try {
      w.accum_schedule = AccumSchedule::parse(o.accum_schedule());
    } catch (const PlanError& e) {
      throw ConfigError(e.what());
    }
  }
  if (o.micro_batch_tokens() && *o.micro_batch_tokens() == 0)
    require(budget.has_value(),
            "micro_batching tokens without N needs memory_budget (the planner chooses N): give tokens:N or a budget");
  // Accumulation that follows the noise scale: from the starting accumulation, the micro-batch fixed.
  if (o.accum_auto()) {
    require(!budget, "accum auto keeps the micro-batch fixed: drop memory_budget, give micro_batch");
    require(d.steps().has_value(), "accum auto needs steps (the run's length in optimizer steps)");
    require(options.distributed().sync() == SyncMode::kPerWindow || env.world_size == 1,
            "accum auto measures the noise scale, which needs --sync window");
    AutoAccumOptions a;
    a.min_accum = o.accum_auto_min().value_or(env.world_size > 1 ? 1 : 2);
    a.max_accum = o.accum_auto_max();
    a.warmup = o.accum_auto_warmup();
    a.interval = o.accum_auto_every();
    a.micro_batch = *o.micro_batch();
    a.world_size = env.world_size;
    require(a.min_accum >= 1 && a.max_accum >= a.min_accum && a.max_accum <= 1000000,
            fmt::format("accum auto needs 1 ≤ MIN ≤ MAX ≤ 1000000, got MIN {} and MAX {}", a.min_accum, a.max_accum));
    require(
        a.min_accum > 1 || env.world_size > 1,
        "accum auto starting at 1 micro-batch on one process has nothing small to compare the window with: MIN ≥ 2");
    w.auto_accum = a;
  }
  const int64_t first_accum = w.accum_schedule ? w.accum_schedule->at(0) : w.auto_accum ? w.auto_accum->min_accum : 0;
  // A memory budget: the Trainer measures the model and picks the micro-batch (and accumulation)
  // for the global batch; until then the plan holds the user's micro-batch, or the whole share.
  std::optional<int64_t> micro_batch = o.micro_batch(), accumulation_steps = o.accumulation_steps();
  if (budget) {
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
  // Token-budget micro-batches: the window is the global batch (or the accumulation schedule's);
  // the sampler cuts each rank's share.
  if (o.micro_batch_tokens() && !w.accum_schedule)
    micro_batch = (*o.global_batch() + env.world_size - 1) / env.world_size;
  w.batch =
      BatchPlan::resolve({o.global_batch(), micro_batch,
                          w.accum_schedule || w.auto_accum ? std::optional<int64_t>(first_accum) : accumulation_steps,
                          env.world_size, /*short_last_micro=*/budget || o.micro_batch_tokens()});
  if (options.logging().noise_scale() && !budget && !w.accum_schedule && !w.auto_accum &&
      w.batch.accumulation_steps == 1 && env.world_size == 1) {
    throw ConfigError(
        "noise_scale needs a window of more than one micro-batch: accumulation_steps is 1 and world_size is 1, so "
        "there is nothing small to compare the window with");
  }
  if (w.batch.micro_batch > dataset_size) {
    throw ConfigError(fmt::format("micro-batch of {} is larger than the training data ({} examples)",
                                  w.batch.micro_batch, dataset_size));
  }
  if (budget && (o.micro_batch() || o.accumulation_steps())) w.requested_micro_batch = w.batch.micro_batch;
  w.epoch = EpochLayout::of(w.batch, dataset_size, d.drop_partial());
  w.total_steps = d.steps() ? *d.steps() : d.epochs().value_or(1) * w.epoch.windows();
  require(w.total_steps <= kMaxSteps,
          fmt::format("the run would take {} steps, more than {}", w.total_steps, kMaxSteps));
  return w;
}

// The learning-rate schedule: checked now, built by the Trainer with the optimizer's peak rate. The
// warmup: as given; else ⌈ratio × horizon⌉ (Hugging Face's warmup_ratio); else DeepSpeed's 1000
// for its schedules, 5% of the run for cosine/linear, none for constant.
SchedulePlan resolve_schedule(const ScheduleOptions& o, int64_t total_steps) {
  const int64_t horizon = o.horizon().value_or(total_steps);
  const int64_t warmup = o.warmup() && (*o.warmup() > 0 || !o.warmup_ratio()) ? *o.warmup()
                         : o.warmup_ratio()
                             ? static_cast<int64_t>(std::ceil(*o.warmup_ratio() * static_cast<double>(horizon)))
                             : (is_deepspeed(o.kind())                ? 1000
                                : o.kind() == ScheduleKind::kConstant ? 0
                                                                      : horizon / 20);
  SchedulePlan s;
  s.shape = LrScheduleOptions{o.kind(), 1.0, warmup, horizon, o.min_lr()};
  s.shape.warmup_start = o.warmup_start();
  s.shape.log_warmup = o.log_warmup();
  s.shape.warmup_min_ratio = o.warmup_min_ratio();
  s.shape.cos_min_ratio = o.cos_min_ratio();
  LrScheduleOptions check = s.shape;
  check.base_lr = std::max(1.0, o.min_lr());
  try {
    LrSchedule schedule(check);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(e.what());
  }
  s.lr_scaling = o.lr_scaling();
  s.base_batch = o.lr_scaling() != LrScaling::kNone ? *o.base_batch() : 0.0;
  return s;
}

PrecisionPlan resolve_precision(const PrecisionOptions& o, const DistEnv& env) {
  PrecisionPlan p;
  p.compute = o.compute_or_params();
  if (o.param_dtype() != Precision::kFp32)
    (o.grad_accum_dtype() == Precision::kFp32 ? p.master_params : p.param_dtype) = scalar_type(o.param_dtype());
  if (env.distributed() && p.param_dtype) {
    throw ConfigError(fmt::format("data-parallel training sums gradients in fp32, not {} (use grad_accum_dtype fp32)",
                                  to_string(o.grad_accum_dtype())));
  }
  if (p.compute != Precision::kFp16) return p;
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
  p.loss_scaler = s;
  return p;
}

// Data parallel: ZeRO and overlap. `zero auto` starts on ZeRO-1; the memory planner may take 2.
DistributedPlan resolve_distributed(const TrainOptions& options, const DistEnv& env, std::vector<std::string>& notes) {
  const DistributedOptions& o = options.distributed();
  if (o.world_size() && *o.world_size() != env.world_size) {
    throw ConfigError(
        fmt::format("world_size is {} in the options, but WORLD_SIZE is {}", *o.world_size(), env.world_size));
  }
  DistributedPlan p;
  std::tie(p.zero, p.zero_auto) =
      resolve_zero_stage(o, options.memory().budget().has_value(), env.distributed(), notes);
  if (p.zero == 1 && !p.zero_auto && o.overlap().value_or(false))
    notes.push_back("note: overlap does not apply with zero 1: its reduce-scatter runs once, at the window boundary");
  if (o.comm_dtype() != Precision::kFp32 && !env.distributed()) {
    notes.push_back(fmt::format("note: comm_dtype {} applies to data parallel; one process sends no gradients",
                                to_string(o.comm_dtype())));
  }
  p.sync = o.sync();
  p.timeout_seconds = o.timeout();
  p.bucket_bytes = static_cast<int64_t>(o.bucket_mb() * (1 << 20));
  p.comm_dtype = o.comm_dtype();
  p.gather = ParameterGatherOptions{o.reshard_after_forward().value_or(!o.accumulate_unsharded().value_or(false)),
                                    o.prefetch(), o.accumulate_unsharded().value_or(false)};
  p.zero3_auto = p.zero == 3 && !o.reshard_after_forward() && !o.accumulate_unsharded() && options.memory().budget();
  p.overlap = o.overlap().value_or(true) && env.distributed() && o.sync() == SyncMode::kPerWindow && !p.zero;
  return p;
}

// Resuming defaults the directory to the checkpoint's own; "auto" resumes when there is a checkpoint.
CheckpointPolicy resolve_checkpoints(const CheckpointOptions& o) {
  CheckpointPolicy c{o.dir(), o.save_every(), o.keep(), resolve_resume(o.resume(), o.dir())};
  if (c.dir.empty() && !c.resume_from.empty()) c.dir = std::filesystem::path(c.resume_from).parent_path().string();
  return c;
}

// Rank 0 logs; the noise scale is measured when anything reads it.
LoggingOptions resolve_logging(const TrainOptions& options, const DistEnv& env, bool auto_accum,
                               std::vector<std::string>& notes) {
  LoggingOptions l = options.logging();
  const ScheduleOptions& s = options.schedule();
  if (s.lr_scaling() == LrScaling::kAdaScale && !l.noise_scale() && !auto_accum)
    notes.push_back(
        "note: --lr-scaling adascale measures the gradient noise scale (as --noise-scale does): its gain comes from "
        "those estimates");
  else if (s.lr_scaling() == LrScaling::kNone && s.base_batch())
    notes.push_back(
        "note: --base-batch is read by --lr-scaling only, which is none here: the learning rate is as given");
  l.noise_scale(l.noise_scale() || auto_accum || s.lr_scaling() == LrScaling::kAdaScale);
  if (l.noise_scale()) {
    require(options.batch().normalization() != Normalization::kNaiveMicroMean,
            "the noise scale needs per-item normalization");
    require(options.distributed().sync() == SyncMode::kPerWindow || env.world_size == 1,
            "the noise scale needs --sync window (every-micro-batch sync mixes the ranks' first micro-batches)");
  }
  if (env.rank != 0) l.log_path("").tensorboard_dir("").progress(false).print_every(0);
  return l;
}

}  // namespace

RunPlan resolve_run(const TrainOptions& options, const DistEnv& env, int64_t dataset_size) {
  if (dataset_size < 1) throw DataError("the training data set is empty");
  options.validate();
  const Windows w = resolve_windows(options, env, dataset_size);
  std::vector<std::string> notes;
  DistributedPlan distributed = resolve_distributed(options, env, notes);
  LoggingOptions logging = resolve_logging(options, env, w.auto_accum.has_value(), notes);
  at::Device device = at::kCPU;
  try {
    // Data parallel on "cuda": one GPU per local rank, as torchrun's LOCAL_RANK says.
    const std::string& name = options.device().name();
    device = resolve_device(name == "cuda" && env.distributed() ? fmt::format("cuda:{}", env.local_rank) : name);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(e.what());
  }
  const DataOptions& d = options.data();
  return RunPlan{
      .requested = options,
      .batch = w.batch,
      .accum_schedule = w.accum_schedule,
      .auto_accum = w.auto_accum,
      .micro_batch_tokens = options.batch().micro_batch_tokens(),
      .requested_micro_batch = w.requested_micro_batch,
      .total_steps = w.total_steps,
      .last_step = std::min(w.total_steps, options.checkpoint().stop_at().value_or(w.total_steps)),
      .epoch = w.epoch,
      .dataset_size = dataset_size,
      .sampler = WindowSamplerOptions{d.shuffle(), d.seed(), d.drop_partial(), env.rank},
      .env = env,
      .schedule = resolve_schedule(options.schedule(), w.total_steps),
      .precision = resolve_precision(options.precision(), env),
      .distributed = distributed,
      .checkpoint = resolve_checkpoints(options.checkpoint()),
      .memory = options.memory(),
      .logging = logging,
      .device = device,
      .notes = notes,
  };
}

LrScheduleOptions RunPlan::lr_schedule(double peak_lr) const {
  LrScheduleOptions o = schedule.shape;
  o.base_lr = peak_lr;
  return o;
}

AccumulatorOptions RunPlan::accumulator_options() const {
  // Pre-scaled by the examples of a full window: windows whose items equal their samples
  // (classification) then need no rescale at all (the factor at the boundary is exactly 1).
  AccumulatorOptions a;
  a.normalization = requested.batch().normalization();
  a.max_grad_norm = requested.batch().clip();
  a.nominal_count = a.normalization == Normalization::kNaiveMicroMean ? batch.accumulation_steps : batch.global_batch;
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
  const bool same_count =
      plan.env.distributed() && (plan.distributed.sync == SyncMode::kEveryMicroBatch || plan.distributed.zero >= 2);
  return TokenBudget{budget, std::move(lengths), same_count, packed_row_length};
}

}  // namespace gradacc
