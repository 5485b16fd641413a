// The training loop and the `gradacc train` job built on it.
//
// train_steps() is the whole step, top to bottom: window → micro-batches → forward → summed loss
// → backward into the accumulator → boundary (normalize, clip, step, schedule) → report.
#pragma once

#include <functional>
#include <memory>
#include <ostream>
#include <vector>

#include <torch/optim/optimizer.h>

#include "gradacc/accumulate/accum_schedule.h"
#include "gradacc/accumulate/accumulator.h"
#include "gradacc/accumulate/precision.h"
#include "gradacc/data/dataset.h"
#include "gradacc/data/window_sampler.h"
#include "gradacc/io/safetensors.h"
#include "gradacc/model/models.h"
#include "gradacc/run/config.h"

namespace gradacc {

// Σ of cross-entropy terms over all targets that are not kIgnoreIndex. logits: [B, C] with
// targets [B], or [B, T, C] with targets [B, T]. Summed, not averaged: the accumulator divides.
at::Tensor summed_cross_entropy(const at::Tensor& logits, const at::Tensor& targets);

struct Workload {
  std::shared_ptr<Dataset> train, test;  // test: the held-out split (validation documents for text)
  bool text = false;                     // language modelling: per-token normalization
  double unigram_bits_per_byte = 0.0;    // text only: the baseline a model must beat
};
// Loads the data named by config.data (throws DataError or ConfigError).
Workload load_workload(const TrainConfig& config);

// What the loop tells its observer after each optimizer step.
struct StepContext {
  int64_t epoch = 0;         // epoch of the window just run
  double seconds = 0.0;      // wall time of the whole step
  LoopPosition next;         // where the loop resumes: a checkpoint taken now saves this
};
// Returns false to stop the loop after this step (an interrupt, or a requested stop).
using StepCallback = std::function<bool(const StepReport&, const StepContext&)>;

// Runs up to `steps` optimizer steps from `position` (updated in place), fewer if on_step asks to
// stop. With `accum_schedule`, the
// window of optimizer step s holds accum_schedule->at(s) micro-batches (the step count is the
// accumulator's); otherwise the plan's fixed number.
// Each micro-batch's forward and loss run under autocast to `precision` (AutocastGuard); the
// backward runs outside it, as LibTorch recommends.
std::vector<StepReport> train_steps(Network& model, Accumulator& accumulator, const Dataset& data,
                                    const WindowSampler& sampler, int64_t steps, const at::Device& device,
                                    LoopPosition& position, const StepCallback& on_step = {},
                                    const AccumSchedule* accum_schedule = nullptr,
                                    Precision precision = Precision::kFp32);

// Fraction of examples whose arg-max logit is the label (model in eval mode, no gradients).
double evaluate_accuracy(Network& model, const Dataset& data, const at::Device& device, int64_t batch = 1000,
                         Precision precision = Precision::kFp32);
// Mean cross-entropy (nats) over every item that counts: tokens for text, samples otherwise.
double evaluate_loss(Network& model, const Dataset& data, const at::Device& device, int64_t batch = 64,
                     Precision precision = Precision::kFp32);

// Everything a run is made of, built from a config: seeded model (or --init weights), optimizer,
// schedule, sampler, accumulator options. Shared by `train` and `verify`.
struct RunSetup {
  BatchPlan plan;
  int64_t total_steps = 0;
  at::Device device = at::kCPU;
  AccumulatorOptions accumulator;
  LrScheduleOptions schedule;
  WindowSamplerOptions sampler;
  Precision precision = Precision::kFp32;         // forward autocast
  std::optional<at::ScalarType> master_params;    // bf16/fp16 parameters with fp32 masters
  std::optional<at::ScalarType> param_dtype;      // bf16/fp16 parameters, gradients summed in that dtype
  std::optional<LossScalerOptions> loss_scaler;   // fp16
};
RunSetup make_run_setup(const TrainConfig& config, const Dataset& train, bool text);
std::shared_ptr<Network> make_seeded_model(const TrainConfig& config, int64_t num_classes);

// The parts of one training run, wired for its precision: the seeded model (converted to its
// param dtype, with fp32 masters when asked), the optimizer (over the masters if any), the LR
// schedule, the loss scaler (fp16) and the accumulator. Members are declared in dependency order.
struct TrainingStack {
  std::shared_ptr<Network> model;
  std::unique_ptr<MasterWeights> master;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::unique_ptr<LrSchedule> schedule;
  std::unique_ptr<LossScaler> scaler;
  std::unique_ptr<Accumulator> accumulator;
};
TrainingStack make_training_stack(const TrainConfig& config, const RunSetup& setup, int64_t num_classes,
                                  const AccumulatorOptions& accumulator_options);

// One-line warning when a BatchNorm model accumulates over >1 micro-batch; empty otherwise.
std::string batchnorm_warning(const TrainConfig& config, const BatchPlan& plan);

struct TrainSummary {
  BatchPlan plan;
  int64_t steps = 0;
  double seconds = 0.0;
  double final_loss = 0.0;
  double test_accuracy = 0.0;          // classification
  double validation_loss = 0.0;        // text: nats per byte on the held-out documents
  double bits_per_byte = 0.0;          // text: validation_loss / ln 2
  double unigram_bits_per_byte = 0.0;  // text: baseline
  int64_t skipped_steps = 0;           // fp16: windows dropped on overflow
  bool stopped_early = false;          // by a signal or stop_at: no evaluation, no --save
  int interrupted_by = 0;              // the SIGINT/SIGTERM that stopped it, 0 if none
  std::string checkpoint;              // the last checkpoint written, if any
};

// The safetensors metadata that lets `generate` (and --init) rebuild the architecture.
StringMap model_metadata(const ModelSpec& spec);
ModelSpec spec_from_metadata(const StringMap& metadata, const std::string& path);
// `gradacc train`: trains (or resumes, c.resume_path), logs JSONL, checkpoints, reports test
// accuracy, saves weights. Messages go to `out`. A run stopped early (a signal, stop_at) returns
// after its checkpoint, without evaluating or saving weights.
TrainSummary run_training(const TrainConfig& config, std::ostream& out);

}  // namespace gradacc
