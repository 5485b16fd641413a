// The Trainer's parts, in construction order (trainer.cc builds and drives them; trainer_reports.cc
// answers what the run is and evaluates). Private to the train layer.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "accumulate/accumulator.h"
#include "accumulate/auto_accum.h"
#include "accumulate/parameter_gather.h"
#include "batch/window_sampler.h"
#include "checkpoint/checkpointer.h"
#include "gradacc/memory_plan.h"
#include "gradacc/model.h"
#include "gradacc/safetensors.h"
#include "gradacc/trainer.h"
#include "log/run_log.h"
#include "precision/loss_scaler.h"
#include "precision/master_weights.h"
#include "sync/communicator.h"
#include "sync/compressed_reducer.h"
#include "sync/zero_shard.h"
#include "train/lr_scaling.h"
#include "train/run_plan.h"
#include "train/train_loop.h"

namespace gradacc {

struct Trainer::State {
  // Members in construction order; destroyed in reverse.
  Model model;
  std::shared_ptr<const Dataset> data;
  LossFn loss;
  std::optional<RunPlan> run_plan;  // the options resolved; replaced once by the memory planner's
  std::unique_ptr<MasterWeights> master;
  std::unique_ptr<ZeroShard> zero;  // ZeRO-1: this rank's shard of the optimizer (instead of master)
  std::shared_ptr<torch::optim::Optimizer> optimizer;
  std::unique_ptr<LrSchedule> schedule;
  std::unique_ptr<LossScaler> scaler;
  std::unique_ptr<NoiseScaleEstimator> noise;
  std::unique_ptr<AutoAccum> auto_accum;
  std::unique_ptr<LrScaler> lr_scaler;  // the learning rate follows the batch (--lr-scaling)
  std::unique_ptr<Accumulator> accumulator;
  std::unique_ptr<ParameterGather> gather;  // ZeRO-3: gathers the units around their computation
  std::unique_ptr<Communicator> communicator;
  std::unique_ptr<CompressedReducer> compressed;  // comm_dtype bf16/fp16: the accumulator's reducer
  std::optional<WindowSampler> sampler;           // built once the plan is final
  LoopCursor cursor;                              // the next window: where fit() starts and a checkpoint resumes
  std::optional<MemoryPlan> memory_plan;
  std::unique_ptr<Checkpointer> checkpointer;
  std::vector<StepCallback> callbacks;
  std::vector<std::string> warnings;
  std::optional<WindowLoss> window_loss;  // a loss over the whole window: gradient caching (train/gradient_cache.h)
  std::unique_ptr<RunLog> log;            // JSONL and TensorBoard; opened by fit(), kept for records after it

  State(Model m, std::shared_ptr<const Dataset> d, LossFn l, RunPlan p)
      : model(std::move(m)), data(std::move(d)), loss(std::move(l)), run_plan(std::move(p)) {}

  const RunPlan& plan() const { return *run_plan; }
};

// Opens the run's log for fit() (continuing after `first_step` when resumed), rank 0's files; every
// rank learns through `communicator` (null: one process) whether rank 0 could, so that a bad path
// ends all ranks with its one line.
std::unique_ptr<RunLog> open_run_log(const RunPlan& plan, const torch::optim::Optimizer& optimizer,
                                     Communicator* communicator, int64_t first_step, bool resumed);

// A window loss's Trainer: throws ConfigError (one line) for what gradient caching does not support yet.
void check_window_loss(const WindowLoss& window_loss, const TrainOptions& options, const Dataset* data);

}  // namespace gradacc
