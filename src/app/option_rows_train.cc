// The options table's rows of the optimizer, the LR schedule and clipping, the data order and precision
// (option_rows.h).
#include "app/option_rows.h"

namespace gradacc::rows {

void add_optimizer_and_precision_rows(std::vector<Option>& t) {
  using S = OptionScope;
  // ── Optimizer
  t.push_back(
      one_of("--optimizer", {"optimizer"}, S::kRun, "optimizer", &OptimizerOptions::name, {"sgd", "adam", "adamw"}));
  t.push_back(number("--lr", {"lr"}, S::kRun, "peak learning rate", &OptimizerOptions::lr));
  t.push_back(number("--weight-decay", {"weight_decay"}, S::kRun,
                     "weight decay (decoupled for adamw, L2 for sgd and adam)", &OptimizerOptions::weight_decay));
  t.push_back(number("--momentum", {"momentum"}, S::kRun, "sgd: momentum", &OptimizerOptions::momentum));
  t.push_back(switch_flag("--nesterov", {"nesterov"}, S::kRun, "sgd: Nesterov momentum", &OptimizerOptions::nesterov));
  t.push_back(number_pair("--betas", {"betas"}, S::kRun, "B1,B2", "adam/adamw: betas", &OptimizerOptions::beta1,
                          &OptimizerOptions::beta2));
  t.push_back(number("--eps", {"eps"}, S::kRun, "adam/adamw: epsilon", &OptimizerOptions::eps));
  t.push_back(boolean("--fused", {"fused"}, S::kRun,
                      "adam/adamw: one fused kernel (off: LibTorch's per-parameter loop)", &OptimizerOptions::fused));
  // ── Schedule and clipping
  t.push_back(choice("--schedule", {"schedule"}, S::kRun,
                     "constant|cosine|linear|ds_warmup|ds_warmup_decay|ds_warmup_cosine",
                     "LR schedule, in optimizer steps (ds_*: DeepSpeed's WarmupLR, WarmupDecayLR, WarmupCosineLR)",
                     &ScheduleOptions::kind, parse_schedule, to_string));
  t.push_back(optional_integer("--warmup", {"warmup"}, S::kRun, "linear warmup, in optimizer steps",
                               &ScheduleOptions::warmup, "5% of the run for cosine/linear, else 0"));
  t.push_back(number("--min-lr", {"min_lr"}, S::kRun, "learning rate the decay ends at", &ScheduleOptions::min_lr));
  t.push_back(optional_number("--warmup-ratio", {"warmup_ratio"}, S::kRun,
                              "warmup as a fraction of the schedule's steps (when --warmup is unset)",
                              &ScheduleOptions::warmup_ratio, "none"));
  t.push_back(choice(
      "--lr-scaling", {"lr_scaling"}, S::kRun, "none|linear|sqrt|adascale",
      "the learning rate follows the batch: × B/B0 (linear), × sqrt(B/B0) (sqrt), or AdaScale's gain from the "
      "noise scale with the schedule stretched by it (SGD), B the window's planned global batch (docs/lr-scaling.md)",
      &ScheduleOptions::lr_scaling, parse_lr_scaling, to_string));
  t.push_back(optional_number(
      "--base-batch", {"base_batch"}, S::kRun,
      "B0 of --lr-scaling: the global batch the learning rate was tuned at (samples; tokens when the loss is "
      "normalized per token)",
      &ScheduleOptions::base_batch, "none"));
  t.push_back(choice("--warmup-start", {"warmup_start"}, S::kRun, "step1|zero",
                     "warmup of constant/cosine/linear: lr·(s+1)/W (step1), or lr·s/W from 0 (zero: Hugging Face's)",
                     &ScheduleOptions::warmup_start, parse_warmup_start, to_string));
  t.push_back(optional_integer("--schedule-steps", {"schedule_steps"}, S::kRun,
                               "the LR schedule's horizon in optimizer steps", &ScheduleOptions::horizon,
                               "the run's steps"));
  t.push_back(either("--warmup-type", {"warmup_type"}, S::kRun,
                     "ds_* schedules: the warmup's curve (DeepSpeed's warmup_type)", &ScheduleOptions::log_warmup,
                     {"log", true}, {"linear", false}));
  t.push_back(number("--warmup-min-ratio", {"warmup_min_ratio"}, S::kRun,
                     "ds_warmup_cosine: the warmup's first lr as a fraction of lr",
                     &ScheduleOptions::warmup_min_ratio));
  t.push_back(number("--cos-min-ratio", {"cos_min_ratio"}, S::kRun,
                     "ds_warmup_cosine: the lr the cosine ends at, as a fraction of lr",
                     &ScheduleOptions::cos_min_ratio));
  t.push_back(number("--clip", {"clip"}, S::kRun, "clip the window gradient to this global L2 norm (0 = off)",
                     &BatchOptions::clip));
  // ── Data order
  t.push_back(integer("--seed", {"seed"}, S::kRun, "seed of the weights and the data order", &DataOptions::seed));
  t.push_back(boolean("--shuffle", {"shuffle"}, S::kRun, "shuffle the data every epoch", &DataOptions::shuffle));
  t.push_back(either("--partial", {"partial_window"}, S::kBatch,
                     "the short last window of an epoch: train on it, rescaled by its real size, or drop it",
                     &DataOptions::drop_partial, {"rescale", false}, {"drop", true}));
  // ── Precision
  t.push_back(optional_choice("--precision", {"precision"}, S::kRun, "fp32|bf16|fp16", "forward autocast",
                              &PrecisionOptions::compute, parse_precision, to_string, "the param dtype"));
  t.push_back(choice("--param-dtype", {"param_dtype"}, S::kRun, "fp32|bf16|fp16", "dtype the parameters are held in",
                     &PrecisionOptions::param_dtype, parse_precision, to_string));
  t.push_back(choice("--grad-accum-dtype", {"grad_accum_dtype"}, S::kRun, "fp32|bf16|fp16",
                     "dtype micro-batch gradients are summed in (fp32 keeps fp32 master weights)",
                     &PrecisionOptions::grad_accum_dtype, parse_precision, to_string));
  t.push_back(optional_number("--loss-scale-init", {"loss_scale_init"}, S::kRun, "fp16: initial loss scale",
                              &PrecisionOptions::loss_scale_init, "65536"));
  t.push_back(optional_number("--loss-scale-growth", {"loss_scale_growth"}, S::kRun, "fp16: growth factor",
                              &PrecisionOptions::loss_scale_growth, "2"));
  t.push_back(optional_number("--loss-scale-backoff", {"loss_scale_backoff"}, S::kRun,
                              "fp16: backoff factor on overflow", &PrecisionOptions::loss_scale_backoff, "0.5"));
  t.push_back(optional_integer("--loss-scale-interval", {"loss_scale_interval"}, S::kRun,
                               "fp16: good steps before growth", &PrecisionOptions::loss_scale_interval, "2000"));
  t.push_back(optional_integer("--loss-scale-hysteresis", {"loss_scale_hysteresis"}, S::kRun,
                               "fp16: overflows tolerated before a backoff", &PrecisionOptions::loss_scale_hysteresis,
                               "1"));
  t.push_back(optional_number("--loss-scale-min", {"loss_scale_min"}, S::kRun, "fp16: the floor of the loss scale",
                              &PrecisionOptions::loss_scale_min, "none"));
  t.push_back(optional_number("--loss-scale-fixed", {"loss_scale_fixed"}, S::kRun,
                              "fp16: a static loss scale (overflows still skip)", &PrecisionOptions::loss_scale_fixed,
                              "dynamic"));
}

}  // namespace gradacc::rows
