// gradacc's own jobs — what the CLI runs — as thin clients of the Trainer: our models on
// Fashion-MNIST or text, trained (`train`) or checked against full-batch training (`verify`).
#pragma once

#include <ostream>

#include "app/job_config.h"
#include "gradacc/trainer.h"
#include "gradacc/verify.h"

namespace gradacc {

struct JobSummary {
  TrainResult result;
  bool evaluated = false;              // rank 0, a run that reached its last step
  double test_accuracy = 0.0;          // classification
  double validation_loss = 0.0;        // text: nats per byte on the held-out documents
  double bits_per_byte = 0.0;          // text: validation_loss / ln 2
  double unigram_bits_per_byte = 0.0;  // text: baseline
  int64_t peak_bytes = 0;              // the most tensor memory any step of this run held
};

// `gradacc train`: trains (or resumes), logs, checkpoints, evaluates on the test split, saves the
// weights. Messages go to `out` (rank 0 only). A run stopped early (a signal, stop_at) returns
// after its checkpoint, without evaluating or saving.
JobSummary run_train_job(const JobConfig& config, std::ostream& out);

// `gradacc plan --fit`: the memory planner's choice for the job's model, data, optimizer and budget
// (measured, nothing trained). Throws ConfigError without a memory budget, or when none fits.
MemoryPlan run_plan_fit_job(const JobConfig& config);

// `gradacc verify`: the job's model, data and optimizer through verify_accumulation(); text jobs
// also show the naive scheme.
VerifyResult run_verify_job(const JobConfig& config, VerifyOptions options);

}  // namespace gradacc
