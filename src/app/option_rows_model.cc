// The options table's rows of the model, the data, the batch and the run's length (option_rows.h).
#include <algorithm>

#include "accumulate/auto_accum.h"
#include "app/option_rows.h"

namespace gradacc::rows {

void add_model_and_batch_rows(std::vector<Option>& t) {
  using S = OptionScope;
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
  t.push_back(number("--dropout", {"dropout"}, S::kRun,
                     "mlp, cnn: dropout on the hidden features of the fully connected layers, in [0, 1)",
                     [](JobConfig& c) -> double& { return c.model.dropout; }));
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
  t.push_back({"--objective",
               {"objective"},
               OptionType::kString,
               S::kRun,
               "classify|contrastive",
               "classify: cross-entropy on the labels; contrastive: InfoNCE between two augmented views of each "
               "image over the whole window (gradient caching), then a linear probe (docs/contrastive.md)",
               [](JobConfig& c, const OptionValue& v) {
                 const std::string& o = std::get<std::string>(v);
                 if (o != "classify" && o != "contrastive")
                   throw std::invalid_argument(fmt::format("'{}' is not classify or contrastive", shown(o)));
                 c.objective = o;
               },
               [](const JobConfig& c) { return c.objective; }});
  t.push_back(number("--temperature", {"temperature"}, S::kRun, "contrastive: the InfoNCE temperature",
                     [](JobConfig& c) -> double& { return c.temperature; }));
  t.push_back({"--negatives",
               {"negatives"},
               OptionType::kString,
               S::kTrain,
               "window|micro-batch",
               "contrastive: window: every other example of the window is a negative (gradient caching); "
               "micro-batch: each micro-batch's own InfoNCE, accumulated plainly (the naive way, for comparison)",
               [](JobConfig& c, const OptionValue& v) {
                 const std::string& o = std::get<std::string>(v);
                 if (o != "window" && o != "micro-batch")
                   throw std::invalid_argument(fmt::format("'{}' is not window or micro-batch", shown(o)));
                 c.negatives = o;
               },
               [](const JobConfig& c) { return c.negatives; }});
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
}

}  // namespace gradacc::rows
