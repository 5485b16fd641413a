// The options table's rows of the noise scale, data parallel, checkpoints and logs, and the device (option_rows.h).
#include "app/option_rows.h"

namespace gradacc::rows {

void add_run_rows(std::vector<Option>& t) {
  using S = OptionScope;
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
  t.push_back(choice(
      "--comm-dtype", {"comm_dtype"}, S::kTrain, "fp32|bf16|fp16",
      "data parallel: what gradients travel as; bf16/fp16 halve the bytes, summed in fp32 on each "
      "side, each value rounded twice (docs/distributed.md); losses and counts stay exact",
      [](JobConfig& c) -> Precision& { return c.train.comm_dtype(); }, parse_precision,
      [](Precision p) { return to_string(p); }));
  t.push_back({"--zero",
               {"zero"},
               OptionType::kIntOrWord,
               S::kBatch,  // plan --fit reports the stages' memory and traffic
               "N|auto",
               "data parallel: ZeRO stage, 0, 1 (each rank holds 1/R of the optimizer state), 2 (and 1/R of the "
               "gradient, reduced bucket by bucket after every micro-batch), 3 (and 1/R of the parameters, each unit "
               "gathered around its forward and backward) or auto (with --memory-budget: 1 if it fits, else 2)",
               [](JobConfig& c, const OptionValue& v) {
                 if (const auto* n = std::get_if<int64_t>(&v)) {
                   if (*n < 0) throw std::invalid_argument(fmt::format("expected 0, 1, 2, 3 or auto, got {}", *n));
                   c.train.zero(*n);
                 } else if (std::get<std::string>(v) == "auto") {
                   c.train.zero(kZeroAuto);
                 } else {
                   throw std::invalid_argument(
                       fmt::format("expected 0, 1, 2, 3 or auto, got '{}'", shown(std::get<std::string>(v))));
                 }
               },
               [](const JobConfig& c) {
                 return c.train.zero() == kZeroAuto ? std::string("auto") : std::to_string(c.train.zero());
               }});
  t.push_back({"--reshard-after-forward",
               {"reshard_after_forward"},
               OptionType::kBool,
               S::kTrain,
               "on|off",
               "zero 3: free each unit's gathered parameters after its forward and gather them again for its "
               "backward (on), or keep them until its backward (off: half the all-gathers, more memory)",
               [](JobConfig& c, const OptionValue& v) { c.train.reshard_after_forward(std::get<bool>(v)); },
               [](const JobConfig& c) {
                 const auto& o = c.train.reshard_after_forward();
                 return o ? std::string(*o ? "on" : "off") : std::string("on; with --memory-budget the planner's");
               }});
  t.push_back({"--accumulate-unsharded",
               {"accumulate_unsharded"},
               OptionType::kBool,
               S::kTrain,
               "on|off",
               "zero 3: keep units gathered through the window and sum the whole gradient locally, reduced once at "
               "its end (FSDP's no_sync: no communication between micro-batches, 4 bytes per parameter more)",
               [](JobConfig& c, const OptionValue& v) { c.train.accumulate_unsharded(std::get<bool>(v)); },
               [](const JobConfig& c) {
                 const auto& o = c.train.accumulate_unsharded();
                 return o ? std::string(*o ? "on" : "off") : std::string("off; with --memory-budget the planner's");
               }});
  t.push_back({"--prefetch",
               {"prefetch"},
               OptionType::kBool,
               S::kTrain,
               "on|off",
               "zero 3: start gathering the next unit's parameters while the current one computes",
               [](JobConfig& c, const OptionValue& v) { c.train.prefetch(std::get<bool>(v)); },
               [](const JobConfig& c) { return std::string(c.train.prefetch() ? "on" : "off"); }});
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
  t.push_back(text("--tensorboard", {"tensorboard_dir"}, S::kTrain, "DIR",
                   "a TensorBoard event file here (rank 0): the step log's numbers, evaluations, the options",
                   [](JobConfig& c) -> std::string& { return c.train.tensorboard_dir(); }));
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
}

}  // namespace gradacc::rows
