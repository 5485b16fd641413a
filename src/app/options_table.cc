// The options table (job/options_table.h): every option of gradacc's jobs, one row each. Over 400
// lines for a reason: it is the one table of gradacc's rows that flags, config keys and
// docs/config.md come from, and splitting it would make a new option more than one row.
#include "app/options_table.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>

#include <fmt/format.h>

#include "accumulate/auto_accum.h"
#include "app/foreign_config.h"
#include "gradacc/errors.h"

namespace gradacc {

namespace {

bool parse_bool(const std::string& s) {
  if (s == "on" || s == "true") return true;
  if (s == "off" || s == "false") return false;
  throw std::invalid_argument(fmt::format("'{}' is not on or off", shown(s)));
}

std::pair<double, double> parse_pair(const std::string& s) {
  const auto comma = s.find(',');
  if (comma == std::string::npos) throw std::invalid_argument(fmt::format("'{}' is not two numbers X,Y", shown(s)));
  return {parse_float(s.substr(0, comma)), parse_float(s.substr(comma + 1))};
}

std::string number_text(double v) { return fmt::format("{}", v); }

// ── Row builders: a row reads and writes one field of JobConfig through `field`. ──────────────

template <typename Field>
Option integer(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help, Field field) {
  return {std::move(flag),
          std::move(keys),
          OptionType::kInt,
          scope,
          "N",
          std::move(help),
          [field](JobConfig& c, const OptionValue& v) { field(c) = std::get<int64_t>(v); },
          [field](const JobConfig& c) { return fmt::format("{}", field(const_cast<JobConfig&>(c))); }};
}

template <typename Field>
Option optional_integer(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help,
                        Field field, std::string unset) {
  return {std::move(flag),
          std::move(keys),
          OptionType::kInt,
          scope,
          "N",
          std::move(help),
          [field](JobConfig& c, const OptionValue& v) { field(c) = std::get<int64_t>(v); },
          [field, unset](const JobConfig& c) {
            const auto& v = field(const_cast<JobConfig&>(c));
            return v ? fmt::format("{}", *v) : unset;
          }};
}

template <typename Field>
Option number(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help, Field field) {
  return {std::move(flag),
          std::move(keys),
          OptionType::kFloat,
          scope,
          "X",
          std::move(help),
          [field](JobConfig& c, const OptionValue& v) { field(c) = std::get<double>(v); },
          [field](const JobConfig& c) { return number_text(field(const_cast<JobConfig&>(c))); }};
}

template <typename Field>
Option optional_number(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help,
                       Field field, std::string unset) {
  return {std::move(flag),
          std::move(keys),
          OptionType::kFloat,
          scope,
          "X",
          std::move(help),
          [field](JobConfig& c, const OptionValue& v) { field(c) = std::get<double>(v); },
          [field, unset](const JobConfig& c) {
            const auto& v = field(const_cast<JobConfig&>(c));
            return v ? number_text(*v) : unset;
          }};
}

template <typename Field>
Option boolean(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help, Field field) {
  return {std::move(flag),
          std::move(keys),
          OptionType::kBool,
          scope,
          "on|off",
          std::move(help),
          [field](JobConfig& c, const OptionValue& v) { field(c) = std::get<bool>(v); },
          [field](const JobConfig& c) { return std::string(field(const_cast<JobConfig&>(c)) ? "on" : "off"); }};
}

template <typename Field>
Option text(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string hint, std::string help,
            Field field, std::string unset = "none") {
  return {std::move(flag),
          std::move(keys),
          OptionType::kString,
          scope,
          std::move(hint),
          std::move(help),
          [field](JobConfig& c, const OptionValue& v) { field(c) = std::get<std::string>(v); },
          [field, unset](const JobConfig& c) {
            const std::string& v = field(const_cast<JobConfig&>(c));
            return v.empty() ? unset : v;
          }};
}

// An enumeration stored through `parse` (std::invalid_argument on an unknown name) and shown
// through `name` (to_string).
template <typename Field, typename Parse, typename Name>
Option choice(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string hint, std::string help,
              Field field, Parse parse, Name name) {
  return {std::move(flag),
          std::move(keys),
          OptionType::kString,
          scope,
          std::move(hint),
          std::move(help),
          [field, parse](JobConfig& c, const OptionValue& v) { field(c) = parse(std::get<std::string>(v)); },
          [field, name](const JobConfig& c) { return name(field(const_cast<JobConfig&>(c))); }};
}

std::string precision_or(const std::optional<Precision>& p, const std::string& unset) {
  return p ? to_string(*p) : unset;
}

std::vector<Option> build_table() {
  using S = OptionScope;
  std::vector<Option> t;
  // ── Model and data
  t.push_back(choice(
      "--model", {"model"}, S::kRun, "mlp|cnn|gpt", "the network to train (docs/models.md)",
      [](JobConfig& c) -> ModelKind& { return c.model.kind; }, parse_model_kind,
      [](ModelKind k) { return to_string(k); }));
  t.push_back({"--norm",
               {"norm"},
               OptionType::kString,
               S::kRun,
               "batch|group|layer|none|rms",
               "normalization layer; cnn: batch, group, layer or none; gpt: layer or rms",
               [](JobConfig& c, const OptionValue& v) { c.model.norm = parse_norm(std::get<std::string>(v)); },
               [](const JobConfig& c) {
                 return c.model.norm ? to_string(*c.model.norm) : std::string("the model's own: cnn group, gpt layer");
               }});
  t.push_back(integer("--layers", {"layers"}, S::kRun, "gpt: transformer blocks",
                      [](JobConfig& c) -> int64_t& { return c.model.layers; }));
  t.push_back(integer("--heads", {"heads"}, S::kRun, "gpt: attention heads",
                      [](JobConfig& c) -> int64_t& { return c.model.heads; }));
  t.push_back(
      integer("--dim", {"dim"}, S::kRun, "gpt: model width", [](JobConfig& c) -> int64_t& { return c.model.dim; }));
  t.push_back(integer("--context", {"context"}, S::kRun, "gpt: longest sequence, in tokens (bytes)",
                      [](JobConfig& c) -> int64_t& { return c.model.context; }));
  t.push_back(text("--data", {"data"}, S::kRun, "fashion-mnist[:DIR]|text:PATH", "training data",
                   [](JobConfig& c) -> std::string& { return c.data; }));
  t.push_back({"--train-limit",
               {"train_limit"},
               OptionType::kInt,
               S::kRun,
               "N",
               "use only the first N training examples (0 = all)",
               [](JobConfig& c, const OptionValue& v) {
                 const int64_t n = std::get<int64_t>(v);
                 if (n < 0) throw std::invalid_argument(fmt::format("must be ≥ 0 (0 = all), got {}", n));
                 c.train_limit = n;
               },
               [](const JobConfig& c) { return std::to_string(c.train_limit); }});
  t.push_back(boolean("--packing", {"packing"}, S::kRun,
                      "text: pack several sequences into each row of the context, each attending only to itself",
                      [](JobConfig& c) -> bool& { return c.packing; }));
  t.push_back(
      text("--profile", {"profile"}, S::kTrain, "FILE",
           "profile optimizer steps 3-5 with LibTorch's profiler and write a Chrome trace, with the CUDA kernels on "
           "a GPU (bench/profile_summary.py sums it by phase and operator; bench/trace_compare.py sets it beside "
           "the seed loop's)",
           [](JobConfig& c) -> std::string& { return c.profile_path; }));
  t.push_back(number("--label-smoothing", {"label_smoothing"}, S::kRun,
                     "cross-entropy against (1-X)·one-hot + X/classes, per item (exact under accumulation); "
                     "evaluation reports the plain cross-entropy",
                     [](JobConfig& c) -> double& { return c.label_smoothing; }));
  t.push_back(integer("--eval-every", {"eval_every"}, S::kTrain,
                      "also evaluate on the held-out split every N optimizer steps (0: at the end only)",
                      [](JobConfig& c) -> int64_t& { return c.eval_every; }));
  t.push_back(text("--init", {"init"}, S::kRun, "FILE", "start from these weights (safetensors)",
                   [](JobConfig& c) -> std::string& { return c.init_path; }));
  // ── Batch
  t.push_back(optional_integer(
      "--global-batch", {"global_batch"}, S::kBatch, "examples per optimizer step over all ranks",
      [](JobConfig& c) -> std::optional<int64_t>& { return c.train.global_batch(); },
      "256 when no batch size is given"));
  t.push_back(optional_integer(
      "--micro-batch", {"micro_batch"}, S::kBatch, "examples per forward/backward pass",
      [](JobConfig& c) -> std::optional<int64_t>& { return c.train.micro_batch(); }, "32 when no batch size is given"));
  t.push_back({"--accum",
               {"accum"},
               OptionType::kIntOrWord,
               S::kBatch,
               "N|auto[:MAX]",
               "micro-batches per optimizer step (per rank); auto[:MAX] or auto:MIN:MAX: follow the measured noise "
               "scale (docs/noise-scale.md)",
               [](JobConfig& c, const OptionValue& v) {
                 if (const auto* n = std::get_if<int64_t>(&v)) {
                   c.train.accumulation_steps(*n).accum_auto(false);
                   return;
                 }
                 // Without MIN, the run layer picks the start (2, or 1 data parallel) and checks it.
                 const std::string& spec = std::get<std::string>(v);
                 const bool has_min = std::count(spec.begin(), spec.end(), ':') == 2;
                 AutoAccumOptions bounds;
                 bounds.min_accum = 1;
                 bounds = parse_auto_accum(spec, bounds);
                 c.train.accum_auto(true).accumulation_steps(std::nullopt).accum_auto_max(bounds.max_accum);
                 c.train.accum_auto_min(has_min ? std::optional<int64_t>(bounds.min_accum) : std::nullopt);
               },
               [](const JobConfig& c) {
                 if (c.train.accum_auto()) {
                   return c.train.accum_auto_min()
                              ? fmt::format("auto:{}:{}", *c.train.accum_auto_min(), c.train.accum_auto_max())
                              : fmt::format("auto:{}", c.train.accum_auto_max());
                 }
                 return c.train.accumulation_steps() ? fmt::format("{}", *c.train.accumulation_steps())
                                                     : std::string("derived: global / (micro × world)");
               }});
  t.push_back({"--micro-batching",
               {"micro_batching"},
               OptionType::kString,
               S::kBatch,
               "fixed|tokens:N|tokens",
               "fixed: micro-batches of --micro-batch sequences; tokens:N: each window (--global-batch) sorted by "
               "length and cut into micro-batches of at most N tokens, rows × longest row (text); tokens: N chosen "
               "by --memory-budget",
               [](JobConfig& c, const OptionValue& v) {
                 const std::string& s = std::get<std::string>(v);
                 if (s == "fixed") {
                   c.train.micro_batch_tokens(std::nullopt);
                   return;
                 }
                 if (s == "tokens") {  // the memory planner chooses N
                   c.train.micro_batch_tokens(0);
                   return;
                 }
                 if (s.rfind("tokens:", 0) != 0)
                   throw std::invalid_argument(fmt::format("'{}' is not fixed, tokens:N or tokens", shown(s)));
                 const int64_t n = parse_int(s.substr(7));
                 if (n < 1) throw std::invalid_argument(fmt::format("tokens:N needs N ≥ 1, got {}", n));
                 c.train.micro_batch_tokens(n);
               },
               [](const JobConfig& c) {
                 const std::optional<int64_t> n = c.train.micro_batch_tokens();
                 return !n ? std::string("fixed") : *n == 0 ? std::string("tokens") : fmt::format("tokens:{}", *n);
               }});
  t.push_back(integer("--accum-auto-warmup", {"accum_auto_warmup"}, S::kTrain,
                      "with --accum auto: optimizer steps before the first decision",
                      [](JobConfig& c) -> int64_t& { return c.train.accum_auto_warmup(); }));
  t.push_back(integer("--accum-auto-every", {"accum_auto_every"}, S::kTrain,
                      "with --accum auto: optimizer steps between decisions",
                      [](JobConfig& c) -> int64_t& { return c.train.accum_auto_every(); }));
  t.push_back(optional_integer(
      "--world-size", {"world_size"}, S::kBatch, "data-parallel ranks (train/verify: must equal WORLD_SIZE)",
      [](JobConfig& c) -> std::optional<int64_t>& { return c.train.world_size(); }, "WORLD_SIZE, else 1"));
  t.push_back({"--memory-budget",
               {"memory_budget"},
               OptionType::kString,
               S::kBatch,
               "SIZE",
               "tensor memory to plan the micro-batch in, e.g. 512MiB, 2GiB, 1.5GB (needs --global-batch)",
               [](JobConfig& c, const OptionValue& v) { c.train.memory_budget(parse_bytes(std::get<std::string>(v))); },
               [](const JobConfig& c) {
                 return c.train.memory_budget() ? format_bytes(*c.train.memory_budget()) : std::string("none");
               }});
  t.push_back({"--activation-checkpointing",
               {"activation_checkpointing"},
               OptionType::kString,
               S::kBatch,
               "off|blocks",
               "recompute each block's activations in the backward pass (gpt blocks, cnn conv stages)",
               [](JobConfig& c, const OptionValue& v) {
                 const std::string& s = std::get<std::string>(v);
                 if (s != "off" && s != "blocks")
                   throw std::invalid_argument(fmt::format("'{}' is not off or blocks", shown(s)));
                 c.train.activation_checkpointing(s == "blocks");
               },
               [](const JobConfig& c) {
                 const auto& a = c.train.activation_checkpointing();
                 return a ? std::string(*a ? "blocks" : "off") : std::string("off; with --memory-budget, when needed");
               }});
  t.push_back(text("--accum-schedule", {"accum_schedule"}, S::kTrain, "STEP:ACCUM,...",
                   "accumulation by optimizer step, e.g. 0:2,200:4 (with --micro-batch and --steps)",
                   [](JobConfig& c) -> std::string& { return c.train.accum_schedule(); }));
  // ── Length
  t.push_back(optional_integer(
      "--steps", {"steps"}, S::kRun, "optimizer steps to run",
      [](JobConfig& c) -> std::optional<int64_t>& { return c.train.steps(); }, "unset: --epochs"));
  t.push_back(optional_integer(
      "--epochs", {"epochs"}, S::kRun, "passes over the training data",
      [](JobConfig& c) -> std::optional<int64_t>& { return c.train.epochs(); },
      "8 when neither steps nor epochs is given"));
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
  // ── Gradient noise scale
  t.push_back(boolean("--noise-scale", {"noise_scale"}, S::kRun,
                      "measure the gradient noise scale each window and log it (docs/noise-scale.md)",
                      [](JobConfig& c) -> bool& { return c.train.noise_scale(); }));
  t.push_back(number("--noise-scale-ema", {"noise_scale_ema"}, S::kRun, "decay of the noise scale's moving averages",
                     [](JobConfig& c) -> double& { return c.train.noise_scale_ema(); }));
  // ── Data parallel
  t.push_back(choice(
      "--sync", {"sync"}, S::kTrain, "window|every-micro-batch",
      "data parallel: all-reduce once per optimizer step, or after every micro-batch",
      [](JobConfig& c) -> SyncMode& { return c.train.sync(); }, parse_sync_mode,
      [](SyncMode m) { return to_string(m); }));
  t.push_back(number("--dist-timeout", {"dist_timeout"}, S::kTrain,
                     "data parallel: seconds before a dead or stalled rank is an error",
                     [](JobConfig& c) -> double& { return c.train.dist_timeout(); }));
  t.push_back(number("--bucket-mb", {"bucket_mb"}, S::kTrain,
                     "data parallel: bucket size of the gradient reduction (all-reduce, or ZeRO-2's reduces), MiB",
                     [](JobConfig& c) -> double& { return c.train.bucket_mb(); }));
  t.push_back({"--zero",
               {"zero"},
               OptionType::kIntOrWord,
               S::kBatch,  // plan --fit reports the stages' memory and traffic
               "N|auto",
               "data parallel: ZeRO stage, 0, 1 (each rank holds 1/R of the optimizer state), 2 (and 1/R of the "
               "gradient, reduced bucket by bucket after every micro-batch) or auto (with --memory-budget: 1 if it "
               "fits, else 2)",
               [](JobConfig& c, const OptionValue& v) {
                 if (const auto* n = std::get_if<int64_t>(&v)) {
                   if (*n < 0) throw std::invalid_argument(fmt::format("expected 0, 1, 2 or auto, got {}", *n));
                   c.train.zero(*n);
                 } else if (std::get<std::string>(v) == "auto") {
                   c.train.zero(kZeroAuto);
                 } else {
                   throw std::invalid_argument(
                       fmt::format("expected 0, 1, 2 or auto, got '{}'", shown(std::get<std::string>(v))));
                 }
               },
               [](const JobConfig& c) {
                 return c.train.zero() == kZeroAuto ? std::string("auto") : std::to_string(c.train.zero());
               }});
  t.push_back({"--overlap",
               {"overlap"},
               OptionType::kBool,
               S::kTrain,
               "on|off",
               "data parallel: reduce each bucket during the last micro-batch's backward, as soon as it is final",
               [](JobConfig& c, const OptionValue& v) { c.train.overlap(std::get<bool>(v)); },
               [](const JobConfig& c) {
                 const auto& o = c.train.overlap();
                 return o ? std::string(*o ? "on" : "off") : std::string("on when data parallel");
               }});
  // ── Checkpoints, logs, output
  t.push_back(text("--checkpoint-dir", {"checkpoint_dir"}, S::kTrain, "DIR",
                   "write checkpoints here (at the end, on SIGINT/SIGTERM, every --save-every steps)",
                   [](JobConfig& c) -> std::string& { return c.train.checkpoint_dir(); }));
  t.push_back(integer("--save-every", {"save_every"}, S::kTrain,
                      "optimizer steps between checkpoints (0 = at the end only)",
                      [](JobConfig& c) -> int64_t& { return c.train.save_every(); }));
  t.push_back(integer("--keep-checkpoints", {"keep_checkpoints"}, S::kTrain, "newest checkpoints kept",
                      [](JobConfig& c) -> int64_t& { return c.train.keep_checkpoints(); }));
  t.push_back(text("--resume", {"resume"}, S::kTrain, "DIR|FILE",
                   "continue from a checkpoint file, or the newest in a directory",
                   [](JobConfig& c) -> std::string& { return c.train.resume(); }));
  t.push_back(optional_integer(
      "--stop-at", {"stop_at"}, S::kTrain, "stop after this optimizer step, with a checkpoint",
      [](JobConfig& c) -> std::optional<int64_t>& { return c.train.stop_at(); }, "none"));
  t.push_back(text("--log", {"log"}, S::kTrain, "FILE.jsonl", "one JSON line per optimizer step",
                   [](JobConfig& c) -> std::string& { return c.train.log_path(); }));
  t.push_back(text("--save", {"save"}, S::kTrain, "FILE", "save the final weights (safetensors)",
                   [](JobConfig& c) -> std::string& { return c.save_path; }));
  t.push_back(boolean("--progress", {"progress"}, S::kTrain, "progress bar when stdout is a terminal",
                      [](JobConfig& c) -> bool& { return c.train.progress(); }));
  t.push_back(integer("--print-every", {"print_every"}, S::kTrain, "print the step's loss every N steps (0 = never)",
                      [](JobConfig& c) -> int64_t& { return c.train.print_every(); }));
  // ── Where it runs
  t.push_back(text("--device", {"device"}, S::kRun, "cpu|cuda|cuda:N", "device to train on",
                   [](JobConfig& c) -> std::string& { return c.train.device(); }));
  t.push_back(boolean("--tf32", {"tf32"}, S::kRun, "CUDA fp32 matmul/conv on TF32 tensor cores (off: exact fp32)",
                      [](JobConfig& c) -> bool& { return c.train.tf32(); }));
  t.push_back(integer("--threads", {"threads"}, S::kRun, "intra-op CPU threads (0 = all cores)",
                      [](JobConfig& c) -> int64_t& { return c.train.threads(); }));
  add_foreign_rows(t);
  add_foreign_columns(t);
  return t;
}

}  // namespace

const std::vector<Option>& option_table() {
  static const std::vector<Option> table = build_table();
  return table;
}

const Option* find_option_by_flag(const std::string& flag) {
  for (const Option& o : option_table()) {
    if (o.flag == flag) return &o;
  }
  return nullptr;
}

const Option* find_option_by_key(const std::string& key, ConfigFormat format) {
  const auto has = [&](const std::vector<std::string>& keys) {
    return std::find(keys.begin(), keys.end(), key) != keys.end();
  };
  for (const Option& o : option_table()) {
    if (has(o.keys)) return &o;
  }
  for (const Option& o : option_table()) {
    // gradacc's own files take DeepSpeed's names as well (as they always have).
    if (format != ConfigFormat::kHuggingFace && has(o.deepspeed)) return &o;
    if (format == ConfigFormat::kHuggingFace && has(o.hf)) return &o;
  }
  return nullptr;
}

void apply_flag(JobConfig& c, const Option& o, const std::string& text) {
  try {
    OptionValue v;
    switch (o.type) {
      case OptionType::kInt: v = parse_int(text); break;
      case OptionType::kFloat: v = parse_float(text); break;
      case OptionType::kBool: v = parse_bool(text); break;
      case OptionType::kSwitch: v = text.empty() ? true : parse_bool(text); break;
      case OptionType::kString:
        if (text.empty()) throw std::invalid_argument("must not be empty");
        v = text;
        break;
      case OptionType::kFloatPair: v = parse_pair(text); break;
      case OptionType::kIntOrWord:
        if (text.empty()) throw std::invalid_argument("must not be empty");
        if (text.find_first_not_of("-0123456789") == std::string::npos)
          v = parse_int(text);
        else
          v = text;
        break;
    }
    o.set(c, v);
  } catch (const std::invalid_argument& e) {
    // The parsers of names quote the value given: shown() keeps the message on one line.
    throw ConfigError(fmt::format("{}: {}", o.flag, shown(e.what(), 300)));
  }
}

std::string options_markdown() {
  const JobConfig defaults = default_job();
  const auto list = [](const std::vector<std::string>& keys) {
    std::string out;
    for (const std::string& k : keys) out += (out.empty() ? "" : ", ") + fmt::format("`{}`", k);
    return out;
  };
  std::string s = "| flag | config key | DeepSpeed | Hugging Face | default | meaning |\n|---|---|---|---|---|---|\n";
  for (const Option& o : option_table()) {
    const std::string flag =
        o.flag.empty() ? "" : fmt::format("`{}{}`", o.flag, o.value_hint.empty() ? "" : " " + o.value_hint);
    s += fmt::format("| {} | {} | {} | {} | {} | {} |\n", flag, list(o.keys), list(o.deepspeed), list(o.hf),
                     o.keys.empty() ? "" : o.show(defaults), o.help);
  }
  return s;
}

}  // namespace gradacc
