// The options table's rows of the model, the data, the batch and the run's length (option_rows.h).
#include <algorithm>

#include "accumulate/auto_accum.h"
#include "app/option_rows.h"

namespace gradacc::rows {
namespace {

void set_accum(JobConfig& c, const OptionValue& v) {
  if (const auto* n = std::get_if<int64_t>(&v)) {
    c.train.batch().accumulation_steps(*n).accum_auto(false);
    return;
  }
  // Without MIN, the run layer picks the start (2, or 1 data parallel) and checks it.
  const std::string& spec = std::get<std::string>(v);
  const bool has_min = std::count(spec.begin(), spec.end(), ':') == 2;
  AutoAccumOptions bounds;
  bounds.min_accum = 1;
  bounds = parse_auto_accum(spec, bounds);
  c.train.batch().accum_auto(true).accumulation_steps(std::nullopt).accum_auto_max(bounds.max_accum);
  c.train.batch().accum_auto_min(has_min ? std::optional<int64_t>(bounds.min_accum) : std::nullopt);
}

std::string show_accum(const JobConfig& c) {
  if (c.train.batch().accum_auto()) {
    return c.train.batch().accum_auto_min()
               ? fmt::format("auto:{}:{}", *c.train.batch().accum_auto_min(), c.train.batch().accum_auto_max())
               : fmt::format("auto:{}", c.train.batch().accum_auto_max());
  }
  return c.train.batch().accumulation_steps() ? fmt::format("{}", *c.train.batch().accumulation_steps())
                                              : std::string("derived: global / (micro × world)");
}

void set_micro_batching(JobConfig& c, const OptionValue& v) {
  const std::string& s = std::get<std::string>(v);
  if (s == "fixed") {
    c.train.batch().micro_batch_tokens(std::nullopt);
    return;
  }
  if (s == "tokens") {  // the memory planner chooses N
    c.train.batch().micro_batch_tokens(0);
    return;
  }
  if (s.rfind("tokens:", 0) != 0)
    throw std::invalid_argument(fmt::format("'{}' is not fixed, tokens:N or tokens", shown(s)));
  const int64_t n = parse_int(s.substr(7));
  if (n < 1) throw std::invalid_argument(fmt::format("tokens:N needs N ≥ 1, got {}", n));
  c.train.batch().micro_batch_tokens(n);
}

std::string show_micro_batching(const JobConfig& c) {
  const std::optional<int64_t> n = c.train.batch().micro_batch_tokens();
  return !n ? std::string("fixed") : *n == 0 ? std::string("tokens") : fmt::format("tokens:{}", *n);
}

}  // namespace

void add_model_and_batch_rows(std::vector<Option>& t) {
  using S = OptionScope;
  // ── Model and data
  t.push_back(choice("--model", {"model"}, S::kRun, "mlp|cnn|gpt", "the network to train (docs/models.md)",
                     &ModelSpec::kind, parse_model_kind, to_string));
  t.push_back(optional_choice("--norm", {"norm"}, S::kRun, "batch|group|layer|none|rms",
                              "normalization layer; cnn: batch, group, layer or none; gpt: layer or rms",
                              &ModelSpec::norm, parse_norm, to_string, "the model's own: cnn group, gpt layer"));
  t.push_back(integer("--layers", {"layers"}, S::kRun, "gpt: transformer blocks", &ModelSpec::layers));
  t.push_back(integer("--heads", {"heads"}, S::kRun, "gpt: attention heads", &ModelSpec::heads));
  t.push_back(integer("--dim", {"dim"}, S::kRun, "gpt: model width", &ModelSpec::dim));
  t.push_back(
      integer("--context", {"context"}, S::kRun, "gpt: longest sequence, in tokens (bytes)", &ModelSpec::context));
  t.push_back(boolean("--fused-kernels", {"fused_kernels"}, S::kRun,
                      "gpt on CUDA: each residual add and the norm after it in one fused kernel (off: ATen's separate "
                      "ops, for comparison; no effect on the CPU)",
                      &ModelSpec::fused_kernels));
  t.push_back(number("--dropout", {"dropout"}, S::kRun,
                     "mlp, cnn: dropout on the hidden features of the fully connected layers, in [0, 1)",
                     &ModelSpec::dropout));
  t.push_back(text("--data", {"data"}, S::kRun, "fashion-mnist[:DIR]|text:PATH", "training data", &JobConfig::data));
  t.push_back(integer("--train-limit", {"train_limit"}, S::kRun, "use only the first N training examples (0 = all)",
                      &JobConfig::train_limit, 0));
  t.push_back(boolean("--packing", {"packing"}, S::kRun,
                      "text: pack several sequences into each row of the context, each attending only to itself",
                      &JobConfig::packing));
  t.push_back(
      text("--profile", {"profile"}, S::kTrain, "FILE",
           "profile optimizer steps 3-5 with LibTorch's profiler and write a Chrome trace, with the CUDA kernels on "
           "a GPU (bench/profile_summary.py sums it by phase and operator; bench/trace_compare.py sets it beside "
           "the seed loop's)",
           &JobConfig::profile_path));
  t.push_back(number("--label-smoothing", {"label_smoothing"}, S::kRun,
                     "cross-entropy against (1-X)·one-hot + X/classes, per item (exact under accumulation); "
                     "evaluation reports the plain cross-entropy",
                     &JobConfig::label_smoothing));
  t.push_back(one_of("--objective", {"objective"}, S::kRun,
                     "classify: cross-entropy on the labels; contrastive: InfoNCE between two augmented views of each "
                     "image over the whole window (gradient caching), then a linear probe (docs/contrastive.md)",
                     &JobConfig::objective, {"classify", "contrastive"}));
  t.push_back(number("--temperature", {"temperature"}, S::kRun, "contrastive: the InfoNCE temperature",
                     &JobConfig::temperature));
  t.push_back(one_of("--negatives", {"negatives"}, S::kTrain,
                     "contrastive: window: every other example of the window is a negative (gradient caching); "
                     "micro-batch: each micro-batch's own InfoNCE, accumulated plainly (the naive way, for comparison)",
                     &JobConfig::negatives, {"window", "micro-batch"}));
  t.push_back(integer("--eval-every", {"eval_every"}, S::kTrain,
                      "also evaluate on the held-out split every N optimizer steps (0: at the end only)",
                      &JobConfig::eval_every));
  t.push_back(
      text("--init", {"init"}, S::kRun, "FILE", "start from these weights (safetensors)", &JobConfig::init_path));
  // ── Batch
  t.push_back(optional_integer("--global-batch", {"global_batch"}, S::kBatch,
                               "examples per optimizer step over all ranks", &BatchOptions::global_batch,
                               "256 when no batch size is given"));
  t.push_back(optional_integer("--micro-batch", {"micro_batch"}, S::kBatch, "examples per forward/backward pass",
                               &BatchOptions::micro_batch, "32 when no batch size is given"));
  t.push_back({"--accum",
               {"accum"},
               OptionType::kIntOrWord,
               S::kBatch,
               "N|auto[:MAX]",
               "micro-batches per optimizer step (per rank); auto[:MAX] or auto:MIN:MAX: follow the measured noise "
               "scale (docs/noise-scale.md)",
               set_accum,
               show_accum});
  t.push_back({"--micro-batching",
               {"micro_batching"},
               OptionType::kString,
               S::kBatch,
               "fixed|tokens:N|tokens",
               "fixed: micro-batches of --micro-batch sequences; tokens:N: each window (--global-batch) sorted by "
               "length and cut into micro-batches of at most N tokens, rows × longest row (text); tokens: N chosen "
               "by --memory-budget",
               set_micro_batching,
               show_micro_batching});
  t.push_back(integer("--accum-auto-warmup", {"accum_auto_warmup"}, S::kTrain,
                      "with --accum auto: optimizer steps before the first decision",
                      &BatchOptions::accum_auto_warmup));
  t.push_back(integer("--accum-auto-every", {"accum_auto_every"}, S::kTrain,
                      "with --accum auto: optimizer steps between decisions", &BatchOptions::accum_auto_every));
  t.push_back(optional_integer("--world-size", {"world_size"}, S::kBatch,
                               "data-parallel ranks (train/verify: must equal WORLD_SIZE)",
                               &DistributedOptions::world_size, "WORLD_SIZE, else 1"));
  t.push_back(bytes("--memory-budget", {"memory_budget"}, S::kBatch,
                    "tensor memory to plan the micro-batch in, e.g. 512MiB, 2GiB, 1.5GB (needs --global-batch)",
                    &MemoryOptions::budget));
  t.push_back(either("--activation-checkpointing", {"activation_checkpointing"}, S::kBatch,
                     "recompute each block's activations in the backward pass (gpt blocks, cnn conv stages)",
                     &MemoryOptions::activation_checkpointing, {"off", false}, {"blocks", true},
                     "off; with --memory-budget, when needed"));
  t.push_back(text("--accum-schedule", {"accum_schedule"}, S::kTrain, "STEP:ACCUM,...",
                   "accumulation by optimizer step, e.g. 0:2,200:4 (with --micro-batch and --steps)",
                   &BatchOptions::accum_schedule));
  // ── Length
  t.push_back(optional_integer("--steps", {"steps"}, S::kRun, "optimizer steps to run", &DataOptions::steps,
                               "unset: --epochs"));
  t.push_back(optional_integer("--epochs", {"epochs"}, S::kRun, "passes over the training data", &DataOptions::epochs,
                               "8 when neither steps nor epochs is given"));
}

}  // namespace gradacc::rows
