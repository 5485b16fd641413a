// The options table's rows of the optimizer, the LR schedule and clipping, the data order and precision
// (option_rows.h).
#include "app/option_rows.h"

namespace gradacc::rows {

void add_optimizer_and_precision_rows(std::vector<Option>& t) {
  using S = OptionScope;
  // ── Optimizer
  t.push_back({"--optimizer",
               {"optimizer"},
               OptionType::kString,
               S::kRun,
               "sgd|adam|adamw",
               "optimizer",
               [](JobConfig& c, const OptionValue& v) {
                 std::string name = std::get<std::string>(v);
                 std::transform(name.begin(), name.end(), name.begin(),
                                [](unsigned char ch) { return std::tolower(ch); });
                 if (name != "sgd" && name != "adam" && name != "adamw") {
                   throw std::invalid_argument(
                       fmt::format("unknown optimizer '{}' (expected sgd, adam or adamw)", shown(name)));
                 }
                 c.optimizer.name = name;
               },
               [](const JobConfig& c) { return c.optimizer.name; }});
  t.push_back(
      number("--lr", {"lr"}, S::kRun, "peak learning rate", [](JobConfig& c) -> double& { return c.optimizer.lr; }));
  t.push_back(number("--weight-decay", {"weight_decay"}, S::kRun,
                     "weight decay (decoupled for adamw, L2 for sgd and adam)",
                     [](JobConfig& c) -> double& { return c.optimizer.weight_decay; }));
  t.push_back(number("--momentum", {"momentum"}, S::kRun, "sgd: momentum",
                     [](JobConfig& c) -> double& { return c.optimizer.momentum; }));
  t.push_back({"--nesterov",
               {"nesterov"},
               OptionType::kSwitch,
               S::kRun,
               "",
               "sgd: Nesterov momentum",
               [](JobConfig& c, const OptionValue& v) { c.optimizer.nesterov = std::get<bool>(v); },
               [](const JobConfig& c) { return std::string(c.optimizer.nesterov ? "on" : "off"); }});
  t.push_back({"--betas",
               {"betas"},
               OptionType::kFloatPair,
               S::kRun,
               "B1,B2",
               "adam/adamw: betas",
               [](JobConfig& c, const OptionValue& v) {
                 std::tie(c.optimizer.beta1, c.optimizer.beta2) = std::get<std::pair<double, double>>(v);
               },
               [](const JobConfig& c) { return fmt::format("{},{}", c.optimizer.beta1, c.optimizer.beta2); }});
  t.push_back(number("--eps", {"eps"}, S::kRun, "adam/adamw: epsilon",
                     [](JobConfig& c) -> double& { return c.optimizer.eps; }));
  t.push_back(boolean("--fused", {"fused"}, S::kRun,
                      "adam/adamw: one fused kernel (off: LibTorch's per-parameter loop)",
                      [](JobConfig& c) -> bool& { return c.optimizer.fused; }));
  // ── Schedule and clipping
  t.push_back(choice(
      "--schedule", {"schedule"}, S::kRun, "constant|cosine|linear|ds_warmup|ds_warmup_decay|ds_warmup_cosine",
      "LR schedule, in optimizer steps (ds_*: DeepSpeed's WarmupLR, WarmupDecayLR, WarmupCosineLR)",
      [](JobConfig& c) -> ScheduleKind& { return c.train.schedule(); }, parse_schedule,
      [](ScheduleKind k) { return to_string(k); }));
  t.push_back(optional_integer(
      "--warmup", {"warmup"}, S::kRun, "linear warmup, in optimizer steps",
      [](JobConfig& c) -> std::optional<int64_t>& { return c.train.warmup(); },
      "5% of the run for cosine/linear, else 0"));
  t.push_back(number("--min-lr", {"min_lr"}, S::kRun, "learning rate the decay ends at",
                     [](JobConfig& c) -> double& { return c.train.min_lr(); }));
  t.push_back(optional_number(
      "--warmup-ratio", {"warmup_ratio"}, S::kRun,
      "warmup as a fraction of the schedule's steps (when --warmup is unset)",
      [](JobConfig& c) -> std::optional<double>& { return c.train.warmup_ratio(); }, "none"));
  t.push_back(choice(
      "--lr-scaling", {"lr_scaling"}, S::kRun, "none|linear|sqrt|adascale",
      "the learning rate follows the batch: × B/B0 (linear), × sqrt(B/B0) (sqrt), or AdaScale's gain from the "
      "noise scale with the schedule stretched by it (SGD), B the window's planned global batch (docs/lr-scaling.md)",
      [](JobConfig& c) -> LrScaling& { return c.train.lr_scaling(); }, parse_lr_scaling,
      [](LrScaling r) { return to_string(r); }));
  t.push_back(optional_number(
      "--base-batch", {"base_batch"}, S::kRun,
      "B0 of --lr-scaling: the global batch the learning rate was tuned at (samples; tokens when the loss is "
      "normalized per token)",
      [](JobConfig& c) -> std::optional<double>& { return c.train.base_batch(); }, "none"));
  t.push_back(choice(
      "--warmup-start", {"warmup_start"}, S::kRun, "step1|zero",
      "warmup of constant/cosine/linear: lr·(s+1)/W (step1), or lr·s/W from 0 (zero: Hugging Face's)",
      [](JobConfig& c) -> WarmupStart& { return c.train.warmup_start(); }, parse_warmup_start,
      [](WarmupStart w) { return to_string(w); }));
  t.push_back(optional_integer(
      "--schedule-steps", {"schedule_steps"}, S::kRun, "the LR schedule's horizon in optimizer steps",
      [](JobConfig& c) -> std::optional<int64_t>& { return c.train.schedule_steps(); }, "the run's steps"));
  t.push_back({"--warmup-type",
               {"warmup_type"},
               OptionType::kString,
               S::kRun,
               "log|linear",
               "ds_* schedules: the warmup's curve (DeepSpeed's warmup_type)",
               [](JobConfig& c, const OptionValue& v) {
                 const std::string& w = std::get<std::string>(v);
                 if (w != "log" && w != "linear")
                   throw std::invalid_argument(fmt::format("'{}' is not log or linear", shown(w)));
                 c.train.log_warmup(w == "log");
               },
               [](const JobConfig& c) { return std::string(c.train.log_warmup() ? "log" : "linear"); }});
  t.push_back(number("--warmup-min-ratio", {"warmup_min_ratio"}, S::kRun,
                     "ds_warmup_cosine: the warmup's first lr as a fraction of lr",
                     [](JobConfig& c) -> double& { return c.train.warmup_min_ratio(); }));
  t.push_back(number("--cos-min-ratio", {"cos_min_ratio"}, S::kRun,
                     "ds_warmup_cosine: the lr the cosine ends at, as a fraction of lr",
                     [](JobConfig& c) -> double& { return c.train.cos_min_ratio(); }));
  t.push_back(number("--clip", {"clip"}, S::kRun, "clip the window gradient to this global L2 norm (0 = off)",
                     [](JobConfig& c) -> double& { return c.train.clip(); }));
  // ── Data order
  t.push_back({"--seed",
               {"seed"},
               OptionType::kInt,
               S::kRun,
               "N",
               "seed of the weights and the data order",
               [](JobConfig& c, const OptionValue& v) {
                 const int64_t s = std::get<int64_t>(v);
                 if (s < 0) throw std::invalid_argument(fmt::format("must be ≥ 0, got {}", s));
                 c.train.seed(static_cast<uint64_t>(s));
               },
               [](const JobConfig& c) { return fmt::format("{}", c.train.seed()); }});
  t.push_back(boolean("--shuffle", {"shuffle"}, S::kRun, "shuffle the data every epoch",
                      [](JobConfig& c) -> bool& { return c.train.shuffle(); }));
  t.push_back({"--partial",
               {"partial_window"},
               OptionType::kString,
               S::kBatch,
               "rescale|drop",
               "the short last window of an epoch: train on it, rescaled by its real size, or drop it",
               [](JobConfig& c, const OptionValue& v) {
                 const std::string& s = std::get<std::string>(v);
                 if (s != "rescale" && s != "drop")
                   throw std::invalid_argument(fmt::format("'{}' is not rescale or drop", shown(s)));
                 c.train.drop_partial(s == "drop");
               },
               [](const JobConfig& c) { return std::string(c.train.drop_partial() ? "drop" : "rescale"); }});
  // ── Precision
  t.push_back({"--precision",
               {"precision"},
               OptionType::kString,
               S::kRun,
               "fp32|bf16|fp16",
               "forward autocast",
               [](JobConfig& c, const OptionValue& v) { c.train.precision(parse_precision(std::get<std::string>(v))); },
               [](const JobConfig& c) { return precision_or(c.train.precision(), "the param dtype"); }});
  t.push_back(choice(
      "--param-dtype", {"param_dtype"}, S::kRun, "fp32|bf16|fp16", "dtype the parameters are held in",
      [](JobConfig& c) -> Precision& { return c.train.param_dtype(); }, parse_precision,
      [](Precision p) { return to_string(p); }));
  t.push_back(choice(
      "--grad-accum-dtype", {"grad_accum_dtype"}, S::kRun, "fp32|bf16|fp16",
      "dtype micro-batch gradients are summed in (fp32 keeps fp32 master weights)",
      [](JobConfig& c) -> Precision& { return c.train.grad_accum_dtype(); }, parse_precision,
      [](Precision p) { return to_string(p); }));
  t.push_back(optional_number(
      "--loss-scale-init", {"loss_scale_init"}, S::kRun, "fp16: initial loss scale",
      [](JobConfig& c) -> std::optional<double>& { return c.train.loss_scale_init(); }, "65536"));
  t.push_back(optional_number(
      "--loss-scale-growth", {"loss_scale_growth"}, S::kRun, "fp16: growth factor",
      [](JobConfig& c) -> std::optional<double>& { return c.train.loss_scale_growth(); }, "2"));
  t.push_back(optional_number(
      "--loss-scale-backoff", {"loss_scale_backoff"}, S::kRun, "fp16: backoff factor on overflow",
      [](JobConfig& c) -> std::optional<double>& { return c.train.loss_scale_backoff(); }, "0.5"));
  t.push_back(optional_integer(
      "--loss-scale-interval", {"loss_scale_interval"}, S::kRun, "fp16: good steps before growth",
      [](JobConfig& c) -> std::optional<int64_t>& { return c.train.loss_scale_interval(); }, "2000"));
  t.push_back(optional_integer(
      "--loss-scale-hysteresis", {"loss_scale_hysteresis"}, S::kRun, "fp16: overflows tolerated before a backoff",
      [](JobConfig& c) -> std::optional<int64_t>& { return c.train.loss_scale_hysteresis(); }, "1"));
  t.push_back(optional_number(
      "--loss-scale-min", {"loss_scale_min"}, S::kRun, "fp16: the floor of the loss scale",
      [](JobConfig& c) -> std::optional<double>& { return c.train.loss_scale_min(); }, "none"));
  t.push_back(optional_number(
      "--loss-scale-fixed", {"loss_scale_fixed"}, S::kRun, "fp16: a static loss scale (overflows still skip)",
      [](JobConfig& c) -> std::optional<double>& { return c.train.loss_scale_fixed(); }, "dynamic"));
}

}  // namespace gradacc::rows
