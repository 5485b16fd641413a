// The DeepSpeed and Hugging Face side of the options table: their columns for gradacc's rows, and
// the rows of their keys whose meaning needs a setter of its own. How their files are read is in
// foreign_config.cc. Each system's semantics is stated where it differs from gradacc's, and in
// docs/config.md ("bring your config").
#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "app/foreign_config.h"
#include "app/options_table.h"

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

}  // namespace

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
          c.train.schedule().kind(ScheduleKind::kDsWarmup);
        else if (name == "WarmupDecayLR")
          c.train.schedule().kind(ScheduleKind::kDsWarmupDecay);
        else if (name == "WarmupCosineLR")
          c.train.schedule().kind(ScheduleKind::kDsWarmupCosine);
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
      T::kInt,
      "ZeRO stage: 0, 1 (--zero 1: the optimizer state sharded), 2 (--zero 2: the gradients too) or 3 (--zero 3: "
      "the parameters too)",
      [](JobConfig& c, const OptionValue& v) {
        const int64_t stage = std::get<int64_t>(v);
        if (stage < 0 || stage > 3) {
          throw std::invalid_argument(fmt::format(
              "DeepSpeed key `zero_optimization.stage` = {} is not supported by gradacc (stages 0 to 3)", stage));
        }
        c.train.distributed().zero(stage);
      },
      {"zero_optimization.stage"}, {}));
  // Stage 2's bucket, in elements (DeepSpeed's unit); gradacc's buckets are fp32 bytes.
  t.push_back(
      foreign_row(T::kFloat, "ZeRO-2: gradient elements per reduce bucket (--bucket-mb × 2^18)",
                  [](JobConfig& c, const OptionValue& v) {
                    const double elements = std::get<double>(v);
                    if (!(elements >= 1))
                      throw std::invalid_argument(fmt::format(
                          "DeepSpeed key `zero_optimization.reduce_bucket_size` must be ≥ 1, got {}", elements));
                    c.train.distributed().bucket_mb(elements * 4 / (1 << 20));
                  },
                  {"zero_optimization.reduce_bucket_size"}, {}));
  // What stage 2 always does in gradacc: reduce during the backward, into contiguous buckets, by
  // owner. Either value is read; neither changes the result (only DeepSpeed's speed or memory).
  for (const char* key : {"zero_optimization.overlap_comm", "zero_optimization.contiguous_gradients",
                          "zero_optimization.reduce_scatter"}) {
    t.push_back(foreign_row(T::kBool, "ZeRO-2: gradacc always reduces each bucket to its owner during the backward",
                            [](JobConfig&, const OptionValue&) {}, {key}, {}));
  }
  // ── Hugging Face TrainingArguments
  // Both true is refused, as TrainingArguments itself refuses it (whichever key comes first).
  t.push_back(foreign_row(T::kBool, "bf16 autocast, fp32 parameters (--precision bf16)",
                          [](JobConfig& c, const OptionValue& v) {
                            if (!std::get<bool>(v)) return;
                            if (c.train.precision().compute() == Precision::kFp16)
                              throw std::invalid_argument("bf16 and fp16 are both true: choose one");
                            c.train.precision().compute(Precision::kBf16);
                          },
                          {}, {"bf16"}));
  t.push_back(foreign_row(T::kBool, "fp16 autocast with dynamic loss scaling, fp32 parameters (--precision fp16)",
                          [](JobConfig& c, const OptionValue& v) {
                            if (!std::get<bool>(v)) return;
                            if (c.train.precision().compute() == Precision::kBf16)
                              throw std::invalid_argument("bf16 and fp16 are both true: choose one");
                            c.train.precision().compute(Precision::kFp16);
                          },
                          {}, {"fp16"}));
  t.push_back(foreign_row(
      T::kString, "linear, cosine, constant or constant_with_warmup, warming up from 0 (--warmup-start zero)",
      [](JobConfig& c, const OptionValue& v) {
        const std::string& name = std::get<std::string>(v);
        c.train.schedule().warmup_start(WarmupStart::kZero);
        c.foreign.constant_schedule = name == "constant";
        if (name == "linear")
          c.train.schedule().kind(ScheduleKind::kLinear);
        else if (name == "cosine")
          c.train.schedule().kind(ScheduleKind::kCosine);
        else if (name == "constant" || name == "constant_with_warmup")
          c.train.schedule().kind(ScheduleKind::kConstant);
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
                            c.train.data().epochs(static_cast<int64_t>(e));
                            c.foreign.epochs_by_default = false;
                          },
                          {}, {"num_train_epochs"}));
  t.push_back(foreign_row(T::kInt, "optimizer steps; -1: num_train_epochs decides (--steps)",
                          [](JobConfig& c, const OptionValue& v) { c.foreign.max_steps = std::get<int64_t>(v); }, {},
                          {"max_steps"}));
  t.push_back(foreign_row(T::kInt, "checkpoints kept (--keep-checkpoints)",
                          [](JobConfig& c, const OptionValue& v) { c.train.checkpoint().keep(std::get<int64_t>(v)); },
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
                            if (std::get<bool>(v)) c.train.memory().activation_checkpointing(true);
                          },
                          {}, {"gradient_checkpointing"}));
  t.push_back(foreign_row(T::kBool, "drop the short last window of an epoch (--partial drop)",
                          [](JobConfig& c, const OptionValue& v) { c.train.data().drop_partial(std::get<bool>(v)); },
                          {}, {"dataloader_drop_last"}));
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
      {"label_smoothing", {{}, {"label_smoothing_factor"}}},
      {"comm_dtype", {{"communication_data_type"}, {}}},
  };
  for (Option& o : t) {
    if (o.keys.empty()) continue;
    if (auto it = columns.find(o.keys.front()); it != columns.end()) std::tie(o.deepspeed, o.hf) = it->second;
  }
}

}  // namespace gradacc
