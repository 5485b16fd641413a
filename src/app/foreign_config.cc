// DeepSpeed and Hugging Face config files as a whole (foreign_config.h): which format a file is, the
// defaults each starts from, the keys no row of the options table takes (ignored, refused, or a
// typo), and what only the whole file decides. The rows themselves are in foreign_options.cc.
#include <algorithm>
#include <array>
#include <cmath>
#include <map>

#include <fmt/format.h>

#include "app/foreign_config.h"
#include "app/options_table.h"

namespace gradacc {
namespace {

// TrainingArguments keys that do not change training here (evaluation, hub, reporting, devices,
// data loading, logging destinations): read and listed once as ignored.
constexpr std::array kHfIgnored = {"overwrite_output_dir",
                                   "do_train",
                                   "do_eval",
                                   "do_predict",
                                   "eval_strategy",
                                   "evaluation_strategy",
                                   "prediction_loss_only",
                                   "per_device_eval_batch_size",
                                   "per_gpu_eval_batch_size",
                                   "eval_accumulation_steps",
                                   "eval_delay",
                                   "torch_empty_cache_steps",
                                   "log_level",
                                   "log_level_replica",
                                   "log_on_each_node",
                                   "logging_strategy",
                                   "logging_first_step",
                                   "logging_nan_inf_filter",
                                   "save_safetensors",
                                   "save_on_each_node",
                                   "save_only_model",
                                   "restore_callback_states_from_checkpoint",
                                   "no_cuda",
                                   "use_cpu",
                                   "use_mps_device",
                                   "jit_mode_eval",
                                   "use_ipex",
                                   "fp16_opt_level",
                                   "half_precision_backend",
                                   "bf16_full_eval",
                                   "fp16_full_eval",
                                   "local_rank",
                                   "ddp_backend",
                                   "tpu_num_cores",
                                   "tpu_metrics_debug",
                                   "debug",
                                   "eval_steps",
                                   "dataloader_num_workers",
                                   "dataloader_prefetch_factor",
                                   "past_index",
                                   "run_name",
                                   "disable_tqdm",
                                   "remove_unused_columns",
                                   "label_names",
                                   "load_best_model_at_end",
                                   "metric_for_best_model",
                                   "greater_is_better",
                                   "ignore_data_skip",
                                   "accelerator_config",
                                   "length_column_name",
                                   "ddp_find_unused_parameters",
                                   "ddp_bucket_cap_mb",
                                   "ddp_broadcast_buffers",
                                   "dataloader_pin_memory",
                                   "dataloader_persistent_workers",
                                   "skip_memory_metrics",
                                   "use_legacy_prediction_loop",
                                   "push_to_hub",
                                   "resume_from_checkpoint",
                                   "hub_model_id",
                                   "hub_strategy",
                                   "hub_token",
                                   "hub_private_repo",
                                   "hub_always_push",
                                   "hub_revision",
                                   "gradient_checkpointing_kwargs",
                                   "include_inputs_for_metrics",
                                   "include_for_metrics",
                                   "eval_do_concat_batches",
                                   "fp16_backend",
                                   "push_to_hub_model_id",
                                   "push_to_hub_organization",
                                   "push_to_hub_token",
                                   "mp_parameters",
                                   "full_determinism",
                                   "ray_scope",
                                   "ddp_timeout",
                                   "torch_compile",
                                   "torch_compile_backend",
                                   "torch_compile_mode",
                                   "dispatch_batches",
                                   "split_batches",
                                   "include_tokens_per_second",
                                   "include_num_input_tokens_seen",
                                   "batch_eval_metrics",
                                   "eval_on_start",
                                   "use_liger_kernel",
                                   "liger_kernel_config",
                                   "eval_use_gather_object",
                                   "average_tokens_across_devices",
                                   "fsdp_min_num_params",
                                   "fsdp_transformer_layer_cls_to_wrap",
                                   "fsdp_config",
                                   "torchdynamo",
                                   "optim_target_modules",
                                   "save_steps_per_epoch",
                                   "parallelism_config",
                                   "project",
                                   "trackio_space_id",
                                   "_n_gpu",
                                   "__cached__setup_devices"};

// TrainingArguments keys that would change the result and that gradacc does not implement: taken
// only at their default value (listed as JSON).
const std::map<std::string, std::vector<nlohmann::json>>& hf_only_default() {
  static const std::map<std::string, std::vector<nlohmann::json>> keys = {
      {"adafactor", {false}},
      {"neftune_noise_alpha", {nullptr}},
      {"per_gpu_train_batch_size", {nullptr}},
      {"fsdp", {"", nlohmann::json::array(), false}},
      {"deepspeed", {nullptr}},
      {"data_seed", {nullptr}},
      {"optim_args", {nullptr}},
  };
  return keys;
}

// DeepSpeed keys that only log or profile: read and ignored. Prefixes end in '.'.
constexpr std::array kDsIgnored = {
    "wall_clock_breakdown", "dump_state", "memory_breakdown", "wandb.", "csv_monitor.", "comet.", "flops_profiler.",
    "comms_logger.", "optimizer.params.torch_adam",
    // ZeRO's memory and speed knobs: how DeepSpeed schedules its
    // gathers and buckets, not what it computes.
    "zero_optimization.allgather_partitions", "zero_optimization.allgather_bucket_size",
    "zero_optimization.round_robin_gradients", "zero_optimization.sub_group_size",
    "zero_optimization.stage3_max_live_parameters", "zero_optimization.stage3_max_reuse_distance",
    "zero_optimization.stage3_prefetch_bucket_size", "zero_optimization.stage3_param_persistence_threshold",
    "zero_optimization.stage3_gather_16bit_weights_on_model_save",
    "zero_optimization.stage3_gather_fp16_weights_on_model_save", "bf16.immediate_grad_update"};
// DeepSpeed features gradacc lacks. Prefixes end in '.'.
constexpr std::array kDsUnsupported = {"zero_optimization.",
                                       "activation_checkpointing.",
                                       "amp.",
                                       "gradient_predivide_factor",
                                       "prescale_gradients",
                                       "sparse_attention.",
                                       "pipeline.",
                                       "compression_training.",
                                       "elasticity.",
                                       "aio.",
                                       "autotuning.",
                                       "data_efficiency.",
                                       "curriculum_learning.",
                                       "checkpoint.",
                                       "sparse_gradients",
                                       "fp16.fp16_master_weights_and_grads",
                                       "zero_allow_untested_optimizer",
                                       "zero_force_ds_cpu_optimizer",
                                       "seq_parallel_communication_data_type",
                                       "torch_autocast.",
                                       "compile.",
                                       "nebula.",
                                       "hybrid_engine.",
                                       "quantize_training.",
                                       "optimizer.params.",
                                       "scheduler.params.",
                                       "fp16.",
                                       "bf16.",
                                       "data_types.",
                                       "gradient_accumulation_dtype",
                                       "graph_harvesting",
                                       "use_data_before_expert_parallelism",
                                       "eigenvalue.",
                                       "progressive_layer_drop.",
                                       "weight_quantization.",
                                       "moe."};

bool matches(const std::string& key, std::string_view pattern) {
  return pattern.ends_with('.') ? key.starts_with(pattern) : key == pattern;
}

}  // namespace

ConfigFormat parse_config_format(const std::string& name) {
  if (name == "gradacc") return ConfigFormat::kGradacc;
  if (name == "deepspeed") return ConfigFormat::kDeepSpeed;
  if (name == "hf") return ConfigFormat::kHuggingFace;
  throw std::invalid_argument(
      fmt::format("unknown config format '{}' (expected gradacc, deepspeed or hf)", shown(name)));
}

std::string to_string(ConfigFormat f) {
  switch (f) {
    case ConfigFormat::kGradacc: return "gradacc";
    case ConfigFormat::kDeepSpeed: return "deepspeed";
    case ConfigFormat::kHuggingFace: return "hf";
  }
  return "?";
}

namespace foreign {

ConfigFormat detect(const nlohmann::json& root) {
  static const std::array kHf = {"per_device_train_batch_size",
                                 "learning_rate",
                                 "output_dir",
                                 "num_train_epochs",
                                 "lr_scheduler_type",
                                 "max_grad_norm",
                                 "adam_beta1",
                                 "adam_epsilon",
                                 "logging_steps",
                                 "warmup_ratio",
                                 "save_steps",
                                 "eval_strategy",
                                 "evaluation_strategy"};
  static const std::array kDs = {
      "train_batch_size",  "train_micro_batch_size_per_gpu", "zero_optimization", "steps_per_print",
      "gradient_clipping", "wall_clock_breakdown",           "scheduler"};
  for (const char* k : kHf) {
    if (root.contains(k)) return ConfigFormat::kHuggingFace;
  }
  for (const char* k : kDs) {
    if (root.contains(k)) return ConfigFormat::kDeepSpeed;
  }
  for (const char* k : {"fp16", "bf16", "optimizer"}) {  // DeepSpeed writes these as objects
    if (root.contains(k) && root[k].is_object()) return ConfigFormat::kDeepSpeed;
  }
  return ConfigFormat::kGradacc;
}

void start_from_defaults(ConfigFormat format, const nlohmann::json& root, JobConfig& c) {
  if (format == ConfigFormat::kDeepSpeed) {
    c.train.schedule().kind(ScheduleKind::kConstant).warmup(std::nullopt).min_lr(0.0);
    c.train.batch().clip(0.0);
    if (root.contains("optimizer")) {  // DeepSpeed's optimizer defaults: torch's
      const bool fused = c.optimizer.fused;
      c.optimizer = OptimizerOptions{};
      c.optimizer.fused = fused;
    }
  } else if (format == ConfigFormat::kHuggingFace) {
    const bool fused = c.optimizer.fused;
    c.optimizer = OptimizerOptions{};
    c.optimizer.name = "adamw";
    c.optimizer.lr = 5e-5;
    c.optimizer.fused = fused;
    c.train.batch().clip(1.0);
    c.train.schedule().kind(ScheduleKind::kLinear).warmup_start(WarmupStart::kZero).warmup(0).min_lr(0.0);
    c.train.data().epochs(3).steps(std::nullopt).seed(42);  // TrainingArguments' num_train_epochs default
    c.train.logging().print_every(500);
    c.foreign.epochs_by_default = true;
  }
}

std::optional<std::string> unmapped_key(ConfigFormat format, const std::string& key, const nlohmann::json& value,
                                        JobConfig& c) {
  if (format == ConfigFormat::kHuggingFace) {
    if (std::find(kHfIgnored.begin(), kHfIgnored.end(), key) != kHfIgnored.end()) {
      c.foreign.ignored.push_back(key);
      return std::nullopt;
    }
    // Keys whose purpose gradacc serves its own way: mapped with a note, or refused naming the way.
    if (key == "auto_find_batch_size" && value == true) {
      c.foreign.notes.push_back(
          "note: auto_find_batch_size: gradacc replays a window that runs out of memory with half the micro-batch "
          "(the same window, so the same gradient), always on for one process; --memory-budget plans it ahead");
      return std::nullopt;
    }
    if (key == "group_by_length" && value == true)
      return "Hugging Face key `group_by_length` = true is not supported by gradacc: --micro-batching tokens:N sorts "
             "each window by length and cuts it by tokens, keeping the windows (and the gradient) of the run";
    if (key == "report_to") return foreign::report_to(value, c);
    if (key == "logging_dir") {
      if (!value.is_string() || value.get<std::string>().empty())
        return "Hugging Face key `logging_dir` must be a directory name";
      c.foreign.hf_logging_dir = value.get<std::string>();
      c.foreign.mapped.push_back("the TensorBoard directory when report_to names tensorboard (--tensorboard)");
      return std::nullopt;
    }
    if ((key == "auto_find_batch_size" || key == "group_by_length") && value == false) {
      c.foreign.ignored.push_back(key);
      return std::nullopt;
    }
    const auto& only = hf_only_default();
    const std::string root = key.substr(0, key.find('.'));
    if (root == "lr_scheduler_kwargs")
      return fmt::format("Hugging Face key `{}` is not supported by gradacc (lr_scheduler_kwargs must be empty)", key);
    if (auto it = only.find(key); it != only.end()) {
      if (std::find(it->second.begin(), it->second.end(), value) != it->second.end()) {
        c.foreign.ignored.push_back(key);
        return std::nullopt;
      }
      return fmt::format("Hugging Face key `{}` = {} is not supported by gradacc (only its default, {})", key,
                         shown(value.dump(), 60), it->second.front().dump());
    }
    return "";
  }
  for (const char* k : kDsIgnored) {
    if (matches(key, k)) {
      c.foreign.ignored.push_back(key);
      return std::nullopt;
    }
  }
  if (key.starts_with("tensorboard.")) return foreign::deepspeed_tensorboard(key, value, c);
  // Where DeepSpeed divides by the world size: gradacc sums and divides once, by the window's real
  // count, so a pre-division changes nothing but fp32 rounding. Read, not applied, and said.
  if (format == ConfigFormat::kDeepSpeed && (key == "gradient_predivide_factor" || key == "prescale_gradients")) {
    c.foreign.notes.push_back(fmt::format(
        "note: DeepSpeed key `{}` = {} is read and not applied: gradacc sums gradients and divides once, by the "
        "window's real count over all ranks, so dividing earlier would change nothing but rounding",
        key, shown(value.dump(), 40)));
    return std::nullopt;
  }
  if (format == ConfigFormat::kDeepSpeed || format == ConfigFormat::kGradacc) {
    for (const char* k : kDsUnsupported) {
      if (matches(key, k)) return fmt::format("DeepSpeed key `{}` is not supported by gradacc", key);
    }
  }
  return "";
}

void finish(ConfigFormat format, JobConfig& c) {
  finish_tensorboard(format, c);  // before save_strategy "no" clears output_dir (foreign_logging.cc)
  if (format == ConfigFormat::kHuggingFace) {
    if (c.foreign.max_steps && *c.foreign.max_steps > 0)
      c.train.data().steps(*c.foreign.max_steps).epochs(std::nullopt);
    if (c.foreign.constant_schedule)
      c.train.schedule().warmup(0).warmup_ratio(std::nullopt);  // HF's "constant" never warms up
    if (c.foreign.save_strategy == "no") c.train.checkpoint().dir("").save_every(0);
    return;
  }
  // DeepSpeed (and DeepSpeed keys in a gradacc file).
  if (c.foreign.deepspeed_adam && c.foreign.adam_w_mode) c.optimizer.name = "adamw";
  const ScheduleKind k = c.train.schedule().kind();
  if (k == ScheduleKind::kDsWarmup || k == ScheduleKind::kDsWarmupDecay)
    c.optimizer.lr = c.foreign.warmup_max_lr.value_or(1e-3);
  if (c.foreign.fp16.value_or(false) && c.foreign.bf16.value_or(false))
    throw std::invalid_argument("fp16.enabled and bf16.enabled are both true");
  if (c.foreign.bf16.value_or(false)) c.train.precision().param_dtype(Precision::kBf16);
  if (c.foreign.fp16.value_or(false)) {
    // DeepSpeed's dynamic loss scaler: 2^16, window 1000, hysteresis 2, floor 1, unless given.
    c.train.precision().param_dtype(Precision::kFp16);
    c.train.precision().loss_scale_init(std::ldexp(1.0, static_cast<int>(c.foreign.initial_scale_power.value_or(16))));
    if (!c.train.precision().loss_scale_interval()) c.train.precision().loss_scale_interval(1000);
    if (!c.train.precision().loss_scale_hysteresis()) c.train.precision().loss_scale_hysteresis(2);
    if (!c.train.precision().loss_scale_min()) c.train.precision().loss_scale_min(1.0);
    if (c.foreign.static_loss_scale.value_or(0.0) > 0)
      c.train.precision().loss_scale_fixed(*c.foreign.static_loss_scale);
  } else if (c.foreign.fp16.has_value()) {  // "fp16": {"enabled": false, ...}: its scaling keys mean nothing
    c.train.precision()
        .loss_scale_interval(std::nullopt)
        .loss_scale_hysteresis(std::nullopt)
        .loss_scale_min(std::nullopt);
  }
}

}  // namespace foreign
}  // namespace gradacc
