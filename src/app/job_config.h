// JobConfig: one of gradacc's own jobs — the CLI's — as the user asked for it: which of our
// models, which data, which optimizer, and the TrainOptions of the loop. Filled from defaults,
// a JSON config file and flags through the options table (job/options_table.h); resolved once by
// the Trainer (run/run_plan.h) and, for what only a job has (model, data), by load_workload().
//
// Thread safety: plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "builtin/model_spec.h"
#include "gradacc/optimizer.h"
#include "gradacc/options.h"

namespace gradacc {

// What a DeepSpeed or Hugging Face config file says that only means something once the whole file
// is read (finish_config_file() turns it into options): DeepSpeed's "Adam" is AdamW unless
// adam_w_mode is false; its fp16/bf16 blocks and WarmupLR's peak; HF's max_steps over epochs.
struct ForeignConfig {
  bool deepspeed_adam = false;  // optimizer.type "Adam" (DeepSpeed's, which adam_w_mode decides)
  bool adam_w_mode = true;
  std::optional<bool> fp16, bf16;              // DeepSpeed: fp16.enabled, bf16.enabled
  std::optional<double> warmup_max_lr;         // DeepSpeed: scheduler.params.warmup_max_lr
  std::optional<int64_t> initial_scale_power;  // DeepSpeed: fp16.initial_scale_power
  std::optional<double> static_loss_scale;     // DeepSpeed: fp16.loss_scale (0: dynamic)
  std::optional<int64_t> max_steps;            // Hugging Face: > 0 wins over num_train_epochs
  std::optional<std::string> save_strategy;    // Hugging Face: "steps" or "no"
  bool constant_schedule = false;              // Hugging Face "constant": no warmup at all
  bool epochs_by_default = false;              // Hugging Face's 3 epochs, not the file's: a --steps flag wins
  // TensorBoard: HF's report_to naming it (or "all") and logging_dir; DeepSpeed's tensorboard block.
  bool hf_report_tensorboard = false;
  std::optional<std::string> hf_logging_dir;
  bool ds_tensorboard = false;
  std::string ds_tensorboard_path, ds_tensorboard_job = "DeepSpeedJobName";
  std::vector<std::string> ignored;  // keys read and ignored (they change nothing here)
  std::vector<std::string> notes;    // keys mapped to something that differs: said once at start
  std::vector<std::string> mapped;   // keys mapped as they mean, without a note: what they map to
};

struct JobConfig {
  TrainOptions train;
  ModelSpec model;
  std::string data = "fashion-mnist";  // "fashion-mnist", "fashion-mnist:DIR" or "text:PATH"
  int64_t train_limit = 0;             // use only the first N training examples (0 = all)
  bool packing = false;                // text: several sequences per row of the context (data/packing.h)
  OptimizerOptions optimizer;
  std::string init_path;         // start from these weights (safetensors)
  std::string save_path;         // save the final weights here
  std::string profile_path;      // profile optimizer steps 3–5 with LibTorch's profiler: a Chrome trace here
  int64_t eval_every = 0;        // evaluate on the held-out split every N optimizer steps (0 = at the end only)
  double label_smoothing = 0.0;  // the training loss's (evaluation reports the plain cross-entropy)
  // "classify" (cross-entropy on the labels), or "contrastive": the model embeds two augmented views
  // of each image in 64 dimensions, trained by InfoNCE over the whole window (app/contrastive.h).
  std::string objective = "classify";
  double temperature = 0.1;  // contrastive: InfoNCE's
  // contrastive: "window" (every other example of the window a negative, gradient caching) or
  // "micro-batch" (each micro-batch's own InfoNCE: plain accumulation, for comparison)
  std::string negatives = "window";
  std::string config_path;    // the JSON config file it was read from, if any (for path checks)
  ForeignConfig foreign;      // a DeepSpeed / Hugging Face file's keys that need the whole file
  std::string config_format;  // "gradacc", "deepspeed" or "hf" once a file is read (for messages)
  // Used when the user gives no batch size at all, and no length (steps or epochs) at all.
  int64_t default_global_batch = 256, default_micro_batch = 32;
  int64_t default_epochs = 8;
};

// The embedded default job (`gradacc train` with no flags): the CNN with GroupNorm on
// Fashion-MNIST, global batch 256 as 8 micro-batches of 32, AdamW (lr 2e-3, weight decay 0.01)
// with 5% warmup and cosine decay, clipping at 1.0, 8 epochs (docs/config.md).
JobConfig default_job();

// The TrainOptions a job runs with: its own, plus the batch and length defaults when the user set
// none of them, and the model's identity for checkpoints.
TrainOptions job_train_options(const JobConfig& config);

}  // namespace gradacc
