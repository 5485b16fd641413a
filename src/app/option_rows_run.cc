// The options table's rows of the noise scale, data parallel, checkpoints and logs, and the device (option_rows.h).
#include "app/option_rows.h"

namespace gradacc::rows {
namespace {

void set_zero(JobConfig& c, const OptionValue& v) {
  if (const auto* n = std::get_if<int64_t>(&v)) {
    if (*n < 0) throw std::invalid_argument(fmt::format("expected 0, 1, 2, 3 or auto, got {}", *n));
    c.train.distributed().zero(*n);
  } else if (std::get<std::string>(v) == "auto") {
    c.train.distributed().zero(kZeroAuto);
  } else {
    throw std::invalid_argument(fmt::format("expected 0, 1, 2, 3 or auto, got '{}'", shown(std::get<std::string>(v))));
  }
}

std::string show_zero(const JobConfig& c) {
  return c.train.distributed().zero() == kZeroAuto ? std::string("auto") : std::to_string(c.train.distributed().zero());
}

}  // namespace

void add_run_rows(std::vector<Option>& t) {
  using S = OptionScope;
  // ── Gradient noise scale
  t.push_back(boolean("--noise-scale", {"noise_scale"}, S::kRun,
                      "measure the gradient noise scale each window and log it (docs/noise-scale.md)",
                      &LoggingOptions::noise_scale));
  t.push_back(number("--noise-scale-ema", {"noise_scale_ema"}, S::kRun, "decay of the noise scale's moving averages",
                     &LoggingOptions::noise_scale_ema));
  // ── Data parallel
  t.push_back(choice("--sync", {"sync"}, S::kTrain, "window|every-micro-batch",
                     "data parallel: all-reduce once per optimizer step, or after every micro-batch",
                     &DistributedOptions::sync, parse_sync_mode, to_string));
  t.push_back(number("--dist-timeout", {"dist_timeout"}, S::kTrain,
                     "data parallel: seconds before a dead or stalled rank is an error", &DistributedOptions::timeout));
  t.push_back(number("--bucket-mb", {"bucket_mb"}, S::kTrain,
                     "data parallel: bucket size of the gradient reduction (all-reduce, or ZeRO-2's reduces), MiB",
                     &DistributedOptions::bucket_mb));
  t.push_back(choice("--comm-dtype", {"comm_dtype"}, S::kTrain, "fp32|bf16|fp16",
                     "data parallel: what gradients travel as; bf16/fp16 halve the bytes, summed in fp32 on each "
                     "side, each value rounded twice (docs/distributed.md); losses and counts stay exact",
                     &DistributedOptions::comm_dtype, parse_precision, to_string));
  t.push_back({"--zero",
               {"zero"},
               OptionType::kIntOrWord,
               S::kBatch,  // plan --fit reports the stages' memory and traffic
               "N|auto",
               "data parallel: ZeRO stage, 0, 1 (each rank holds 1/R of the optimizer state), 2 (and 1/R of the "
               "gradient, reduced bucket by bucket after every micro-batch), 3 (and 1/R of the parameters, each unit "
               "gathered around its forward and backward) or auto (with --memory-budget: 1 if it fits, else 2)",
               set_zero,
               show_zero});
  t.push_back(
      optional_boolean("--reshard-after-forward", {"reshard_after_forward"}, S::kTrain,
                       "zero 3: free each unit's gathered parameters after its forward and gather them again for its "
                       "backward (on), or keep them until its backward (off: half the all-gathers, more memory)",
                       &DistributedOptions::reshard_after_forward, "on; with --memory-budget the planner's"));
  t.push_back(optional_boolean(
      "--accumulate-unsharded", {"accumulate_unsharded"}, S::kTrain,
      "zero 3: keep units gathered through the window and sum the whole gradient locally, reduced once at "
      "its end (FSDP's no_sync: no communication between micro-batches, 4 bytes per parameter more)",
      &DistributedOptions::accumulate_unsharded, "off; with --memory-budget the planner's"));
  t.push_back(boolean("--prefetch", {"prefetch"}, S::kTrain,
                      "zero 3: start gathering the next unit's parameters while the current one computes",
                      &DistributedOptions::prefetch));
  t.push_back(optional_boolean(
      "--overlap", {"overlap"}, S::kTrain,
      "data parallel: reduce each bucket during the last micro-batch's backward, as soon as it is final",
      &DistributedOptions::overlap, "on when data parallel"));
  // ── Checkpoints, logs, output
  t.push_back(text("--checkpoint-dir", {"checkpoint_dir"}, S::kTrain, "DIR",
                   "write checkpoints here (at the end, on SIGINT/SIGTERM, every --save-every steps)",
                   &CheckpointOptions::dir));
  t.push_back(integer("--save-every", {"save_every"}, S::kTrain,
                      "optimizer steps between checkpoints (0 = at the end only)", &CheckpointOptions::save_every));
  t.push_back(integer("--keep-checkpoints", {"keep_checkpoints"}, S::kTrain, "newest checkpoints kept",
                      &CheckpointOptions::keep));
  t.push_back(text(
      "--resume", {"resume"}, S::kTrain, "DIR|FILE|auto",
      "continue from a checkpoint file, or the newest in a directory; auto: the newest in --checkpoint-dir if there is "
      "one, else start (one command line for every attempt of a restarted job)",
      &CheckpointOptions::resume));
  t.push_back(optional_integer("--stop-at", {"stop_at"}, S::kTrain, "stop after this optimizer step, with a checkpoint",
                               &CheckpointOptions::stop_at, "none"));
  t.push_back(
      text("--log", {"log"}, S::kTrain, "FILE.jsonl", "one JSON line per optimizer step", &LoggingOptions::log_path));
  t.push_back(text("--tensorboard", {"tensorboard_dir"}, S::kTrain, "DIR",
                   "a TensorBoard event file here (rank 0): the step log's numbers, evaluations, the options",
                   &LoggingOptions::tensorboard_dir));
  t.push_back(
      text("--save", {"save"}, S::kTrain, "FILE", "save the final weights (safetensors)", &JobConfig::save_path));
  t.push_back(boolean("--progress", {"progress"}, S::kTrain, "progress bar when stdout is a terminal",
                      &LoggingOptions::progress));
  t.push_back(integer("--print-every", {"print_every"}, S::kTrain, "print the step's loss every N steps (0 = never)",
                      &LoggingOptions::print_every));
  // ── Where it runs
  t.push_back(text("--device", {"device"}, S::kRun, "cpu|cuda|cuda:N", "device to train on", &DeviceOptions::name));
  t.push_back(boolean("--tf32", {"tf32"}, S::kRun, "CUDA fp32 matmul/conv on TF32 tensor cores (off: exact fp32)",
                      &DeviceOptions::tf32));
  t.push_back(
      integer("--threads", {"threads"}, S::kRun, "intra-op CPU threads (0 = all cores)", &DeviceOptions::threads));
}

}  // namespace gradacc::rows
