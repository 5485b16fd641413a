// TrainConfig: everything a training or verification run needs, from flags and/or a JSON file.
//
// JSON keys follow DeepSpeed / Hugging Face where they mean the same thing:
//   train_batch_size, train_micro_batch_size_per_gpu, gradient_accumulation_steps, gradient_clipping,
//   and an "optimizer": {"type": "AdamW", "params": {"lr", "weight_decay", "betas", "eps", "momentum"}}
//   block; plus gradacc's own flat keys (model, norm, data, lr, schedule, warmup, ...; see
//   docs/config.md). Unknown keys and wrong types are errors, never ignored.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>

#include "gradacc/accumulate/batch_plan.h"
#include "gradacc/accumulate/gradient_reducer.h"
#include "gradacc/accumulate/precision.h"
#include "gradacc/model/models.h"
#include "gradacc/optim/lr_schedule.h"
#include "gradacc/optim/optimizer.h"

namespace gradacc {

class ConfigError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

struct TrainConfig {
  ModelSpec model;
  std::string data = "fashion-mnist";  // "fashion-mnist", "fashion-mnist:DIR" or "text:PATH"
  int64_t train_limit = 0;             // use only the first N training examples (0 = all)
  BatchPlanRequest batch;
  OptimizerOptions optimizer;
  ScheduleKind schedule = ScheduleKind::kConstant;
  std::optional<int64_t> warmup;      // optimizer steps; unset: 5% of the run for cosine/linear, else 0
  double min_lr = 0.0;
  double clip = 0.0;                   // max global gradient norm, 0 = off
  std::string accum_schedule;          // "0:2,200:4": accumulation per optimizer step (needs steps)
  std::optional<int64_t> steps;        // optimizer steps, or
  std::optional<int64_t> epochs;       // passes over the data (default 1)
  uint64_t seed = 0;
  bool shuffle = true;
  bool drop_partial = false;           // the short last window: rescale (default) or drop
  std::string log_path, init_path, save_path;
  // Mixed precision (docs/precision.md).
  std::optional<Precision> precision;            // forward autocast; unset: param_dtype
  Precision param_dtype = Precision::kFp32;      // dtype the model's parameters are held in
  Precision grad_accum_dtype = Precision::kFp32; // fp32 (with fp32 masters), or param_dtype (lossy)
  std::optional<double> loss_scale_init, loss_scale_growth, loss_scale_backoff;  // fp16 only
  std::optional<int64_t> loss_scale_interval;
  Precision resolved_precision() const { return precision.value_or(param_dtype); }
  // Data parallel (docs/distributed.md); the ranks come from the torchrun environment.
  SyncMode sync = SyncMode::kPerWindow;   // "window" | "every-micro-batch"
  double dist_timeout = 300.0;            // seconds before a dead or stalled peer is an error
  double bucket_mb = 25.0;                // all-reduce bucket size
  std::string checkpoint_dir;          // checkpoints go here ("" = none)
  int64_t save_every = 0;              // optimizer steps between checkpoints (0: at the end only)
  int64_t keep_checkpoints = 3;        // newest checkpoints kept in checkpoint_dir
  std::string resume_path;             // continue from this checkpoint (file, or directory: newest)
  std::optional<int64_t> stop_at;      // stop after this optimizer step, with a checkpoint
  int threads = 0;                     // 0 = LibTorch's default
  std::string device = "cpu";          // "cpu", "cuda" or "cuda:N"
  bool tf32 = false;                   // CUDA fp32 matmul/conv on TF32 tensor cores (off: exact fp32)
};

// Applies the keys of a JSON config file on top of `config`. Throws ConfigError (one line naming
// the file and key) for unreadable files, bad JSON, unknown keys and wrong types or values.
void apply_config_file(const std::string& path, TrainConfig& config);

// Checks values that no single key can check alone; throws ConfigError.
void validate(const TrainConfig& config);

// "window" | "every-micro-batch"; throws ConfigError otherwise.
SyncMode parse_sync(const std::string& name);
std::string to_string(SyncMode mode);

}  // namespace gradacc

namespace gradacc {

// The embedded default job (`gradacc train` with no flags): the CNN with GroupNorm on
// Fashion-MNIST, global batch 256 as 8 micro-batches of 32, AdamW with warmup and cosine decay,
// clipping at 1.0, three epochs.
TrainConfig default_job();

// Batch defaults of the default job apply only when no batch size was given at all; a user who
// names any of them gets exactly what they named, resolved.
void apply_default_batch(TrainConfig& config);

}  // namespace gradacc
