// What a run is, in words: the identity a checkpoint carries (a resume must match it) and the
// description every rank compares before training (ranks must agree on everything in it).
#include <fmt/format.h>

#include "train/run_plan.h"

namespace gradacc {

StringMap RunPlan::run_identity(const std::string& optimizer_kind) const {
  StringMap id;
  for (const auto& [k, v] : requested.identity()) id[k] = v;
  // A fixed window is its global batch: how it is split into micro-batches and ranks does not
  // change the gradient (exact accumulation), so a run may resume with another micro-batch or
  // world size (ZeRO reshards its optimizer state). Windows that grow with the accumulation are
  // micro_batch × world_size × accum: those stay fixed.
  // With --lr-scaling the learning rate follows the batch, so a resume may change the batch (another
  // world size, say): from there the factor follows the new one, and the Trainer says so.
  const bool batch_may_change = schedule.lr_scaling != LrScaling::kNone;
  if (!batch_may_change) id["global_batch"] = std::to_string(batch.global_batch);
  if (accum_schedule || auto_accum) {
    id["micro_batch"] = std::to_string(batch.micro_batch);
    id["accumulation_steps"] = std::to_string(batch.accumulation_steps);
    if (!batch_may_change) id["world_size"] = std::to_string(batch.world_size);
  }
  std::string schedule_text;
  if (accum_schedule) {
    for (const auto& [step, accum] : accum_schedule->points())
      schedule_text += fmt::format("{}{}:{}", schedule_text.empty() ? "" : ",", step, accum);
  }
  id["accum_schedule"] = schedule_text;
  // A token budget cuts the same windows as fixed micro-batches; it stays in the identity by kind
  // only, so that a run planned by a memory budget resumes with whatever budget is planned then.
  id["micro_batching"] = micro_batch_tokens ? "tokens" : "fixed";
  id["accum_auto"] = auto_accum ? fmt::format("{}:{} warmup {} every {}", auto_accum->min_accum, auto_accum->max_accum,
                                              auto_accum->warmup, auto_accum->interval)
                                : "off";
  id["normalization"] = requested.batch().normalization() == Normalization::kPerItem ? "per-item" : "naive";
  id["optimizer"] = optimizer_kind;
  id["lr_scaling"] = schedule.lr_scaling == LrScaling::kNone
                         ? "none"
                         : fmt::format("{} base {}", to_string(schedule.lr_scaling), schedule.base_batch);
  id["train_examples"] = std::to_string(dataset_size);
  id["seed"] = std::to_string(sampler.seed);
  id["shuffle"] = sampler.shuffle ? "on" : "off";
  id["partial_window"] = sampler.drop_partial ? "drop" : "rescale";
  id["precision"] = to_string(precision.compute);
  id["param_dtype"] =
      precision.master_params || precision.param_dtype
          ? std::string(c10::toString(precision.master_params ? *precision.master_params : *precision.param_dtype))
          : "fp32";
  id["grad_accum_dtype"] = precision.param_dtype ? "param" : "fp32";
  return id;
}

std::string RunPlan::rank_description(const std::string& optimizer_kind) const {
  std::string d;
  for (const auto& [k, v] : run_identity(optimizer_kind)) d += k + "=" + v + "\n";
  d += fmt::format(
      "total_steps={}\nlast_step={}\nschedule={}\nwarmup={}\nmin_lr={}\nclip={}\nsync={}\nresume={}\nzero={}\n"
      "overlap={}\nmicro_batch={}\naccumulation_steps={}\nmicro_batch_tokens={}\n",
      total_steps, last_step, to_string(schedule.shape.kind), schedule.shape.warmup_steps, schedule.shape.min_lr,
      requested.batch().clip(), to_string(distributed.sync), checkpoint.resume_from, distributed.zero,
      distributed.overlap, batch.micro_batch, batch.accumulation_steps, micro_batch_tokens.value_or(0));
  if (distributed.zero == 3)
    d += fmt::format("reshard_after_forward={}\nprefetch={}\naccumulate_unsharded={}\n",
                     distributed.gather.reshard_after_forward, distributed.gather.prefetch,
                     distributed.gather.keep_for_window);
  if (precision.loss_scaler) {
    d += fmt::format("loss_scale={},{},{},{},{},{},{}\n", precision.loss_scaler->init_scale,
                     precision.loss_scaler->growth_factor, precision.loss_scaler->backoff_factor,
                     precision.loss_scaler->growth_interval, precision.loss_scaler->hysteresis,
                     precision.loss_scaler->min_scale, precision.loss_scaler->dynamic);
  }
  d += fmt::format("lr_shape={},{},{},{},{},{}\n", to_string(schedule.shape.warmup_start), schedule.shape.total_steps,
                   schedule.shape.log_warmup, schedule.shape.warmup_min_ratio, schedule.shape.cos_min_ratio,
                   schedule.shape.warmup_steps);
  return d;
}

}  // namespace gradacc
