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

#include "gradacc/model/model_spec.h"
#include "gradacc/optim/optimizer.h"
#include "gradacc/run/options.h"

namespace gradacc {

struct JobConfig {
  TrainOptions train;
  ModelSpec model;
  std::string data = "fashion-mnist";  // "fashion-mnist", "fashion-mnist:DIR" or "text:PATH"
  int64_t train_limit = 0;             // use only the first N training examples (0 = all)
  OptimizerOptions optimizer;
  std::string init_path;    // start from these weights (safetensors)
  std::string save_path;    // save the final weights here
  std::string config_path;  // the JSON config file it was read from, if any (for path checks)
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
