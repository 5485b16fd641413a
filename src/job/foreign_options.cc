// The DeepSpeed and Hugging Face side of the options table: their columns for gradacc's rows, the
// rows of their keys whose meaning needs a setter of its own, and how their files are read
// (foreign_config.h). Each system's semantics is stated where it differs from gradacc's, and in
// docs/config.md ("bring your config").
#include <algorithm>
#include <array>
#include <cmath>
#include <map>

#include <fmt/format.h>

#include "foreign_config.h"
#include "gradacc/job/options_table.h"

namespace gradacc {
namespace {

// A config-only row of a foreign key: no flag, no gradacc key.
Option foreign_row(OptionType type, std::string help, std::function<void(JobConfig&, const OptionValue&)> set,
                   std::vector<std::string> deepspeed, std::vector<std::string> hf) {
  return {"",
          {},
          type,
          OptionScope::kRun,
          "",
          std::move(help),
          std::move(set),
          [](const JobConfig&) { return std::string(); },
          std::move(deepspeed),
          std::move(hf)};
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

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
                                   "logging_dir",
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
                                   "report_to",
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
      {"label_smoothing_factor", {0.0, 0}},
      {"adafactor", {false}},
      {"group_by_length", {false}},
      {"neftune_noise_alpha", {nullptr}},
      {"per_gpu_train_batch_size", {nullptr}},
      {"fsdp", {"", nlohmann::json::array(), false}},
      {"deepspeed", {nullptr}},
      {"auto_find_batch_size", {false}},
      {"data_seed", {nullptr}},
      {"optim_args", {nullptr}},
  };
  return keys;
}

// DeepSpeed keys that only log or profile: read and ignored. Prefixes end in '.'.
constexpr std::array kDsIgnored = {"wall_clock_breakdown",
                                   "dump_state",
                                   "memory_breakdown",
                                   "tensorboard.",
                                   "wandb.",
                                   "csv_monitor.",
                                   "comet.",
                                   "flops_profiler.",
                                   "comms_logger.",
                                   "optimizer.params.torch_adam",
                                   "bf16.immediate_grad_update"};
// DeepSpeed features gradacc lacks. Prefixes end in '.'.
constexpr std::array kDsUnsupported = {"zero_optimization.",
                                       "activation_checkpointing.",
                                       "amp.",
                                       "gradient_predivide_factor",
                                       "prescale_gradients",
                                       "communication_data_type",
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

// The foreign rows: keys of DeepSpeed or Hugging Face whose meaning is not one of gradacc's rows as
// it is.
void add_foreign_rows(std::vector<Option>& t) {
  using T = OptionType;
  // ── DeepSpeed
  t.push_back(foreign_row(T::kString,
                          "Adam, AdamW or SGD (DeepSpeed's Adam decouples weight decay unless adam_w_mode is false)",
                          [](JobConfig& c, const OptionValue& v) {
                            const std::string name = lower(std::get<std::string>(v));
                            if (name != "adam" && name != "adamw" && name != "sgd") {
                              throw std::invalid_argument(fmt::format(
                                  "DeepSpeed optimizer '{}' is not supported by gradacc (Adam, AdamW or SGD)",
                                  shown(std::get<std::string>(v))));
                            }
                            c.optimizer.name = name;
                            c.foreign.deepspeed_adam = name == "adam";
                          },
                          {"optimizer.type"}, {}));
  t.push_back(foreign_row(T::kBool, "Adam: false for L2 weight decay instead of decoupled (DeepSpeed's default: true)",
                          [](JobConfig& c, const OptionValue& v) { c.foreign.adam_w_mode = std::get<bool>(v); },
                          {"optimizer.params.adam_w_mode"}, {}));
  t.push_back(foreign_row(
      T::kString, "WarmupLR, WarmupDecayLR or WarmupCosineLR: schedule ds_warmup, ds_warmup_decay, ds_warmup_cosine",
      [](JobConfig& c, const OptionValue& v) {
        const std::string& name = std::get<std::string>(v);
        if (name == "WarmupLR")
          c.train.schedule(ScheduleKind::kDsWarmup);
        else if (name == "WarmupDecayLR")
          c.train.schedule(ScheduleKind::kDsWarmupDecay);
        else if (name == "WarmupCosineLR")
          c.train.schedule(ScheduleKind::kDsWarmupCosine);
        else
          throw std::invalid_argument(fmt::format(
              "DeepSpeed scheduler '{}' is not supported by gradacc (WarmupLR, WarmupDecayLR or WarmupCosineLR)",
              shown(name)));
      },
      {"scheduler.type"}, {}));
  t.push_back(foreign_row(T::kFloat,
                          "WarmupLR/WarmupDecayLR: the peak rate (the optimizer's lr; DeepSpeed's default 0.001)",
                          [](JobConfig& c, const OptionValue& v) { c.foreign.warmup_max_lr = std::get<double>(v); },
                          {"scheduler.params.warmup_max_lr"}, {}));
  t.push_back(foreign_row(
      T::kBool, "fp16 parameters with fp32 master weights and dynamic loss scaling (--param-dtype fp16)",
      [](JobConfig& c, const OptionValue& v) { c.foreign.fp16 = std::get<bool>(v); }, {"fp16.enabled"}, {}));
  t.push_back(foreign_row(T::kFloat, "0: dynamic loss scaling; > 0: this static scale (--loss-scale-fixed)",
                          [](JobConfig& c, const OptionValue& v) { c.foreign.static_loss_scale = std::get<double>(v); },
                          {"fp16.loss_scale"}, {}));
  t.push_back(foreign_row(T::kInt, "the initial loss scale is 2^N (DeepSpeed's default 16)",
                          [](JobConfig& c, const OptionValue& v) {
                            const int64_t p = std::get<int64_t>(v);
                            if (p < 0 || p > 100)
                              throw std::invalid_argument(fmt::format("must lie in 0..100, got {}", p));
                            c.foreign.initial_scale_power = p;
                          },
                          {"fp16.initial_scale_power"}, {}));
  t.push_back(foreign_row(T::kBool, "false only (DeepSpeed's default): hysteresis refills when the scale grows",
                          [](JobConfig&, const OptionValue& v) {
                            if (std::get<bool>(v))
                              throw std::invalid_argument(
                                  "DeepSpeed key `fp16.consecutive_hysteresis` = true is not supported by gradacc");
                          },
                          {"fp16.consecutive_hysteresis"}, {}));
  t.push_back(foreign_row(T::kBool, "false only: gradacc casts inside autocast, not the inputs",
                          [](JobConfig&, const OptionValue& v) {
                            if (std::get<bool>(v))
                              throw std::invalid_argument(
                                  "DeepSpeed key `fp16.auto_cast` = true is not supported by gradacc");
                          },
                          {"fp16.auto_cast"}, {}));
  t.push_back(foreign_row(T::kBool, "bf16 parameters with fp32 master weights (--param-dtype bf16)",
                          [](JobConfig& c, const OptionValue& v) { c.foreign.bf16 = std::get<bool>(v); },
                          {"bf16.enabled"}, {}));
  t.push_back(foreign_row(
      T::kInt, "ZeRO stage: 0, or 1 (--zero 1: the optimizer state sharded over the ranks)",
      [](JobConfig& c, const OptionValue& v) {
        const int64_t stage = std::get<int64_t>(v);
        if (stage != 0 && stage != 1) {
          throw std::invalid_argument(fmt::format(
              "DeepSpeed key `zero_optimization.stage` = {} is not supported by gradacc (stages 0 and 1)", stage));
        }
        c.train.zero(stage);
      },
      {"zero_optimization.stage"}, {}));
  // ── Hugging Face TrainingArguments
  t.push_back(foreign_row(T::kBool, "bf16 autocast, fp32 parameters (--precision bf16)",
                          [](JobConfig& c, const OptionValue& v) {
                            if (std::get<bool>(v)) c.train.precision(Precision::kBf16);
                          },
                          {}, {"bf16"}));
  t.push_back(foreign_row(T::kBool, "fp16 autocast with dynamic loss scaling, fp32 parameters (--precision fp16)",
                          [](JobConfig& c, const OptionValue& v) {
                            if (std::get<bool>(v)) c.train.precision(Precision::kFp16);
                          },
                          {}, {"fp16"}));
  t.push_back(foreign_row(
      T::kString, "linear, cosine, constant or constant_with_warmup, warming up from 0 (--warmup-start zero)",
      [](JobConfig& c, const OptionValue& v) {
        const std::string& name = std::get<std::string>(v);
        c.train.warmup_start(WarmupStart::kZero);
        c.foreign.constant_schedule = name == "constant";
        if (name == "linear")
          c.train.schedule(ScheduleKind::kLinear);
        else if (name == "cosine")
          c.train.schedule(ScheduleKind::kCosine);
        else if (name == "constant" || name == "constant_with_warmup")
          c.train.schedule(ScheduleKind::kConstant);
        else
          throw std::invalid_argument(fmt::format(
              "Hugging Face lr_scheduler_type '{}' is not supported by gradacc (linear, cosine, constant or "
              "constant_with_warmup)",
              shown(name)));
      },
      {}, {"lr_scheduler_type"}));
  t.push_back(foreign_row(T::kFloat, "Adam's beta1",
                          [](JobConfig& c, const OptionValue& v) { c.optimizer.beta1 = std::get<double>(v); }, {},
                          {"adam_beta1"}));
  t.push_back(foreign_row(T::kFloat, "Adam's beta2",
                          [](JobConfig& c, const OptionValue& v) { c.optimizer.beta2 = std::get<double>(v); }, {},
                          {"adam_beta2"}));
  t.push_back(foreign_row(T::kFloat, "whole epochs (--epochs); max_steps > 0 wins",
                          [](JobConfig& c, const OptionValue& v) {
                            const double e = std::get<double>(v);
                            if (!(e >= 1) || e != std::floor(e) || e > 1e6) {
                              throw std::invalid_argument(fmt::format(
                                  "num_train_epochs = {}: gradacc trains whole epochs (give max_steps for a part)", e));
                            }
                            c.train.epochs(static_cast<int64_t>(e));
                          },
                          {}, {"num_train_epochs"}));
  t.push_back(foreign_row(T::kInt, "optimizer steps; -1: num_train_epochs decides (--steps)",
                          [](JobConfig& c, const OptionValue& v) { c.foreign.max_steps = std::get<int64_t>(v); }, {},
                          {"max_steps"}));
  t.push_back(foreign_row(T::kInt, "checkpoints kept (--keep-checkpoints)",
                          [](JobConfig& c, const OptionValue& v) { c.train.keep_checkpoints(std::get<int64_t>(v)); },
                          {}, {"save_total_limit"}));
  t.push_back(
      foreign_row(T::kString, "steps (every save_steps) or no",
                  [](JobConfig& c, const OptionValue& v) {
                    const std::string& s = std::get<std::string>(v);
                    if (s != "steps" && s != "no") {
                      throw std::invalid_argument(fmt::format(
                          "Hugging Face save_strategy '{}' is not supported by gradacc (steps or no)", shown(s)));
                    }
                    c.foreign.save_strategy = s;
                  },
                  {}, {"save_strategy"}));
  t.push_back(foreign_row(
      T::kString, "adamw_torch, adamw_torch_fused, adamw_hf (AdamW) or sgd",
      [](JobConfig& c, const OptionValue& v) {
        const std::string& name = std::get<std::string>(v);
        if (name == "adamw_torch" || name == "adamw_torch_fused" || name == "adamw_hf" || name == "adamw")
          c.optimizer.name = "adamw";
        else if (name == "sgd")
          c.optimizer.name = "sgd";
        else
          throw std::invalid_argument(fmt::format(
              "Hugging Face optim '{}' is not supported by gradacc (adamw_torch, adamw_torch_fused, adamw_hf or sgd)",
              shown(name)));
      },
      {}, {"optim"}));
  t.push_back(foreign_row(T::kBool,
                          "activation checkpointing of the model's blocks (--activation-checkpointing blocks)",
                          [](JobConfig& c, const OptionValue& v) {
                            if (std::get<bool>(v)) c.train.activation_checkpointing(true);
                          },
                          {}, {"gradient_checkpointing"}));
  t.push_back(foreign_row(T::kBool, "drop the short last window of an epoch (--partial drop)",
                          [](JobConfig& c, const OptionValue& v) { c.train.drop_partial(std::get<bool>(v)); }, {},
                          {"dataloader_drop_last"}));
}

// The DeepSpeed and Hugging Face names of gradacc's own rows (same meaning, same type).
void add_foreign_columns(std::vector<Option>& t) {
  static const std::map<std::string, std::pair<std::vector<std::string>, std::vector<std::string>>> columns = {
      {"global_batch", {{"train_batch_size"}, {}}},
      {"micro_batch", {{"train_micro_batch_size_per_gpu"}, {"per_device_train_batch_size"}}},
      {"accum", {{"gradient_accumulation_steps"}, {"gradient_accumulation_steps"}}},
      {"lr", {{"optimizer.params.lr"}, {"learning_rate"}}},
      {"weight_decay", {{"optimizer.params.weight_decay"}, {"weight_decay"}}},
      {"momentum", {{"optimizer.params.momentum"}, {}}},
      {"nesterov", {{"optimizer.params.nesterov"}, {}}},
      {"betas", {{"optimizer.params.betas"}, {}}},
      {"eps", {{"optimizer.params.eps"}, {"adam_epsilon"}}},
      {"clip", {{"gradient_clipping"}, {"max_grad_norm"}}},
      {"warmup", {{"scheduler.params.warmup_num_steps"}, {"warmup_steps"}}},
      {"warmup_ratio", {{}, {"warmup_ratio"}}},
      {"min_lr", {{"scheduler.params.warmup_min_lr"}, {}}},
      {"schedule_steps", {{"scheduler.params.total_num_steps"}, {}}},
      {"warmup_type", {{"scheduler.params.warmup_type"}, {}}},
      {"warmup_min_ratio", {{"scheduler.params.warmup_min_ratio"}, {}}},
      {"cos_min_ratio", {{"scheduler.params.cos_min_ratio"}, {}}},
      {"grad_accum_dtype", {{"data_types.grad_accum_dtype"}, {}}},
      {"loss_scale_interval", {{"fp16.loss_scale_window"}, {}}},
      {"loss_scale_hysteresis", {{"fp16.hysteresis"}, {}}},
      {"loss_scale_min", {{"fp16.min_loss_scale"}, {}}},
      {"seed", {{}, {"seed"}}},
      {"tf32", {{}, {"tf32"}}},
      {"checkpoint_dir", {{}, {"output_dir"}}},
      {"save_every", {{}, {"save_steps"}}},
      {"print_every", {{"steps_per_print"}, {"logging_steps"}}},
  };
  for (Option& o : t) {
    if (o.keys.empty()) continue;
    if (auto it = columns.find(o.keys.front()); it != columns.end()) std::tie(o.deepspeed, o.hf) = it->second;
  }
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
    c.train.schedule(ScheduleKind::kConstant).warmup(std::nullopt).min_lr(0.0).clip(0.0);
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
    c.train.clip(1.0)
        .schedule(ScheduleKind::kLinear)
        .warmup_start(WarmupStart::kZero)
        .warmup(0)
        .min_lr(0.0)
        .epochs(3)
        .steps(std::nullopt)
        .seed(42)
        .print_every(500);
  }
}

std::optional<std::string> unmapped_key(ConfigFormat format, const std::string& key, const nlohmann::json& value,
                                        JobConfig& c) {
  if (format == ConfigFormat::kHuggingFace) {
    if (std::find(kHfIgnored.begin(), kHfIgnored.end(), key) != kHfIgnored.end()) {
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
  if (format == ConfigFormat::kDeepSpeed || format == ConfigFormat::kGradacc) {
    for (const char* k : kDsUnsupported) {
      if (matches(key, k)) return fmt::format("DeepSpeed key `{}` is not supported by gradacc", key);
    }
  }
  return "";
}

void finish(ConfigFormat format, JobConfig& c) {
  if (format == ConfigFormat::kHuggingFace) {
    if (c.foreign.max_steps && *c.foreign.max_steps > 0) c.train.steps(*c.foreign.max_steps).epochs(std::nullopt);
    if (c.foreign.constant_schedule) c.train.warmup(0).warmup_ratio(std::nullopt);  // HF's "constant" never warms up
    if (c.foreign.save_strategy == "no") c.train.checkpoint_dir("").save_every(0);
    return;
  }
  // DeepSpeed (and DeepSpeed keys in a gradacc file).
  if (c.foreign.deepspeed_adam && c.foreign.adam_w_mode) c.optimizer.name = "adamw";
  const ScheduleKind k = c.train.schedule();
  if (k == ScheduleKind::kDsWarmup || k == ScheduleKind::kDsWarmupDecay)
    c.optimizer.lr = c.foreign.warmup_max_lr.value_or(1e-3);
  if (c.foreign.fp16.value_or(false) && c.foreign.bf16.value_or(false))
    throw std::invalid_argument("fp16.enabled and bf16.enabled are both true");
  if (c.foreign.bf16.value_or(false)) c.train.param_dtype(Precision::kBf16);
  if (c.foreign.fp16.value_or(false)) {
    // DeepSpeed's dynamic loss scaler: 2^16, window 1000, hysteresis 2, floor 1, unless given.
    c.train.param_dtype(Precision::kFp16);
    c.train.loss_scale_init(std::ldexp(1.0, static_cast<int>(c.foreign.initial_scale_power.value_or(16))));
    if (!c.train.loss_scale_interval()) c.train.loss_scale_interval(1000);
    if (!c.train.loss_scale_hysteresis()) c.train.loss_scale_hysteresis(2);
    if (!c.train.loss_scale_min()) c.train.loss_scale_min(1.0);
    if (c.foreign.static_loss_scale.value_or(0.0) > 0) c.train.loss_scale_fixed(*c.foreign.static_loss_scale);
  } else if (c.foreign.fp16.has_value()) {  // "fp16": {"enabled": false, ...}: its scaling keys mean nothing
    c.train.loss_scale_interval(std::nullopt).loss_scale_hysteresis(std::nullopt).loss_scale_min(std::nullopt);
  }
}

}  // namespace foreign
}  // namespace gradacc
