// What a run is, in words: the identity a checkpoint carries (a resume must match it) and the
// description every rank compares before training (ranks must agree on everything in it).
#include <fmt/format.h>

#include "train/run_plan.h"

namespace gradacc {

StringMap RunPlan::run_identity(const std::string& optimizer_kind) const {
  StringMap id;
  for (const auto& [k, v] : identity) id[k] = v;
  // A fixed window is its global batch: how it is split into micro-batches and ranks does not
  // change the gradient (exact accumulation), so a run may resume with another micro-batch or
  // world size (ZeRO reshards its optimizer state). Windows that grow with the accumulation are
  // micro_batch × world_size × accum: those stay fixed.
  // With --lr-scaling the learning rate follows the batch, so a resume may change the batch (another
  // world size, say): from there the factor follows the new one, and the Trainer says so.
  const bool batch_may_change = lr_scaling != LrScaling::kNone;
  if (!batch_may_change) id["global_batch"] = std::to_string(batch.global_batch);
  if (accum_schedule || auto_accum) {
    id["micro_batch"] = std::to_string(batch.micro_batch);
    id["accumulation_steps"] = std::to_string(batch.accumulation_steps);
    if (!batch_may_change) id["world_size"] = std::to_string(batch.world_size);
  }
  std::string schedule;
  if (accum_schedule) {
    for (const auto& [step, accum] : accum_schedule->points())
      schedule += fmt::format("{}{}:{}", schedule.empty() ? "" : ",", step, accum);
  }
  id["accum_schedule"] = schedule;
  // A token budget cuts the same windows as fixed micro-batches; it stays in the identity by kind
  // only, so that a run planned by a memory budget resumes with whatever budget is planned then.
  id["micro_batching"] = micro_batch_tokens ? "tokens" : "fixed";
  id["accum_auto"] = auto_accum ? fmt::format("{}:{} warmup {} every {}", auto_accum->min_accum, auto_accum->max_accum,
                                              auto_accum->warmup, auto_accum->interval)
                                : "off";
  id["normalization"] = normalization == Normalization::kPerItem ? "per-item" : "naive";
  id["optimizer"] = optimizer_kind;
  id["lr_scaling"] =
      lr_scaling == LrScaling::kNone ? "none" : fmt::format("{} base {}", to_string(lr_scaling), base_batch);
  id["train_examples"] = std::to_string(dataset_size);
  id["seed"] = std::to_string(sampler.seed);
  id["shuffle"] = sampler.shuffle ? "on" : "off";
  id["partial_window"] = sampler.drop_partial ? "drop" : "rescale";
  id["precision"] = to_string(precision);
  id["param_dtype"] =
      master_params || param_dtype ? std::string(c10::toString(master_params ? *master_params : *param_dtype)) : "fp32";
  id["grad_accum_dtype"] = param_dtype ? "param" : "fp32";
  return id;
}

std::string RunPlan::rank_description(const std::string& optimizer_kind) const {
  std::string d;
  for (const auto& [k, v] : run_identity(optimizer_kind)) d += k + "=" + v + "\n";
  d += fmt::format(
      "total_steps={}\nlast_step={}\nschedule={}\nwarmup={}\nmin_lr={}\nclip={}\nsync={}\nresume={}\nzero={}\n"
      "overlap={}\nmicro_batch={}\naccumulation_steps={}\nmicro_batch_tokens={}\n",
      total_steps, last_step, to_string(schedule), warmup_steps, min_lr, clip, to_string(sync), checkpoint.resume_from,
      zero, overlap, batch.micro_batch, batch.accumulation_steps, micro_batch_tokens.value_or(0));
  if (zero == 3)
    d += fmt::format("reshard_after_forward={}\nprefetch={}\naccumulate_unsharded={}\n", gather.reshard_after_forward,
                     gather.prefetch, gather.keep_for_window);
  if (loss_scaler) {
    d += fmt::format("loss_scale={},{},{},{},{},{},{}\n", loss_scaler->init_scale, loss_scaler->growth_factor,
                     loss_scaler->backoff_factor, loss_scaler->growth_interval, loss_scaler->hysteresis,
                     loss_scaler->min_scale, loss_scaler->dynamic);
  }
  d += fmt::format("lr_shape={},{},{},{},{},{}\n", to_string(lr_shape.warmup_start), lr_shape.total_steps,
                   lr_shape.log_warmup, lr_shape.warmup_min_ratio, lr_shape.cos_min_ratio, lr_shape.warmup_steps);
  return d;
}

}  // namespace gradacc
