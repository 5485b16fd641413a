// Trainer: gradacc's entry point for any model. It owns the training loop of a run — any
// torch::nn::Module, any LibTorch optimizer (or gradacc's), a dataset, a loss — and gives every
// promise gradacc makes for it: the accumulated gradient equals the full-batch one (per item, a
// short last window rescaled by its real size, across data-parallel ranks), clipping on the window
// gradient, the LR schedule in optimizer steps, mixed precision, checkpoints with exact resume,
// data parallel from the torchrun environment.
//
//   gradacc::TrainOptions options;
//   options.batch().global_batch(256).micro_batch(32).clip(1.0);
//   options.data().epochs(3);
//   gradacc::Trainer trainer(gradacc::Model::of(net),
//                            [](const std::vector<at::Tensor>& p) {
//                              return std::make_unique<torch::optim::SGD>(p, torch::optim::SGDOptions(0.05));
//                            },
//                            data, options, my_summed_loss);
//   gradacc::TrainResult result = trainer.fit();
//
// The constructor resolves the options once (run/run_plan.h: the one place they are validated,
// throwing ConfigError/PlanError with one line), moves the model to the device (and to its
// parameter dtype, with fp32 master weights), builds the optimizer through the factory over the
// tensors it must update, and joins the data-parallel group when WORLD_SIZE > 1. fit() runs the
// loop of run/train_loop.h and delegates: checkpoints to a Checkpointer, signals to an
// InterruptGuard, the JSONL log to a StepLog. With a memory budget (MemoryOptions), the constructor
// measures the model and plans the micro-batch first (memory/memory_plan.h), and fit() keeps the
// run inside the budget, replaying a window that runs out of memory with half the micro-batch.
//
// The model's own forward decides its outputs; the loss returns the SUM of the batch's loss terms
// (one per Batch::items); the dataset reports items (samples for classification, real tokens for
// text). Seed LibTorch yourself before building the model; DataOptions::seed orders the data.
//
// Thread safety: none; one Trainer runs one loop.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gradacc/batch_plan.h"
#include "gradacc/dataset.h"
#include "gradacc/memory_plan.h"
#include "gradacc/model.h"
#include "gradacc/optimizer.h"
#include "gradacc/options.h"
#include "gradacc/step_report.h"
#include "gradacc/window_loss.h"

namespace gradacc {

// The library's own parts, for code that includes their (private) headers: the app and the tests.
class Accumulator;
class LossScaler;
struct RunPlan;

struct TrainResult {
  std::vector<StepReport> history;  // one per optimizer step this call ran
  int64_t first_step = 0;           // steps already done before it (a resumed run)
  int64_t steps = 0;                // steps done after it
  double seconds = 0.0;
  std::string resumed_from;    // the checkpoint it continued, if any
  std::string lr_scale_note;   // a resume at another batch: how the learning rate's factor changed
  std::string checkpoint;      // the last checkpoint it wrote, if any
  bool stopped_early = false;  // a signal, stop_at or a callback ended it before total_steps
  int interrupted_by = 0;      // SIGINT/SIGTERM received by any rank, 0 if none
  int signal_here = 0;         // the signal this process received itself (0: another rank's)
  int64_t skipped_steps = 0;   // fp16 windows dropped on overflow
};

class Trainer {
 public:
  Trainer(Model model, OptimizerFactory make_optimizer, std::shared_ptr<const Dataset> data, TrainOptions options,
          LossFn loss = cross_entropy_loss());
  // A loss over the whole window (window_loss.h: contrastive, in-batch negatives), trained exactly
  // by gradient caching; `model` holds the parameters `window_loss.encode` runs. Its windows are
  // divided by their sample count. Throws ConfigError (one line) for what it does not support yet:
  // a memory budget, ZeRO-3, token budgets, the naive normalization, a mean-reduced loss.
  Trainer(Model model, OptimizerFactory make_optimizer, std::shared_ptr<const Dataset> data, TrainOptions options,
          WindowLoss window_loss);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Called after each optimizer step, once it is logged and checkpointed; return false to stop.
  Trainer& on_step(StepCallback callback);
  // Runs (or, with CheckpointOptions::resume, continues) the run to its last step.
  TrainResult fit();

  // Adds a record to the run's log (rank 0; nothing on the others): a JSON object, written as one
  // line of the JSONL log (LoggingOptions::log_path) and, with LoggingOptions::tensorboard_dir, its
  // numbers as TensorBoard scalars "<split or event>/<field>" at its "at_step", else at the last
  // step logged: {"event":"eval","split":"test","at_step":40,"loss":0.31}. Call it from an on_step
  // callback or after fit() (the log opens in fit()). Throws ConfigError for anything but a JSON
  // object, or when called before fit(); IoError when a write fails.
  void log_record(const std::string& json_object);
  // Markdown text in TensorBoard's text tab at the last step logged (rank 0, with tensorboard_dir).
  void log_text(const std::string& tag, const std::string& markdown);

  // Mean loss per item, and accuracy, on held-out data (eval mode, no gradients, the run's autocast).
  double evaluate_loss(const Dataset& data, int64_t batch = 64);
  double evaluate_accuracy(const Dataset& data, int64_t batch = 1000);
  Evaluation evaluate_loss_and_accuracy(const Dataset& data, int64_t batch = 1000);  // one pass, classification

  // The resolved run: this process's rank (0: the lead, which logs, checkpoints and saves), the
  // world size, and the batch plan (micro-batch, accumulation, global batch, after any memory plan).
  int rank() const;
  int world_size() const;
  bool lead() const { return rank() == 0; }
  const BatchPlan& batch_plan() const;
  // Everything resolved (train/run_plan.h, a private header: the app and the tests read it).
  const RunPlan& plan() const;
  // What the memory planner measured and chose (MemoryOptions::budget); unset without a budget.
  const std::optional<MemoryPlan>& memory_plan() const;
  Model& model();
  torch::optim::Optimizer& optimizer();
  // The library's parts (private headers, for the app and the tests).
  Accumulator& accumulator();
  const LossScaler* loss_scaler() const;  // fp16 only
  // Bytes of this rank's optimizer state and fp32 master weights (under ZeRO-1, its shard's): what
  // sharding divides by the world size.
  int64_t optimizer_state_bytes() const;
  // Bytes of the gradient memory this rank keeps between micro-batches: the accumulation buffer,
  // or under ZeRO-2 its shard of the sum and two bucket buffers. What `--zero 2` divides.
  int64_t gradient_bytes() const;
  // Bytes of the parameters this rank keeps during training (fp32 masters count as optimizer
  // state): the model's, or under ZeRO-3 its shard of them, what `--zero 3` divides. (Under ZeRO-3
  // the model is whole again when fit() returns.)
  int64_t parameter_bytes() const;
  // Explanations of what keeps this run from matching full-batch training (BatchNorm layers with
  // accumulation > 1); empty when nothing does.
  const std::vector<std::string>& warnings() const;

 private:
  Trainer(Model model, OptimizerFactory make_optimizer, std::shared_ptr<const Dataset> data, TrainOptions options,
          LossFn loss, std::optional<WindowLoss> window_loss);
  struct State;
  std::unique_ptr<State> s_;
};

// The warning for BatchNorm layers in `module` when windows hold several micro-batches; "" if none.
std::string batchnorm_warning(const torch::nn::Module& module, const BatchPlan& plan);

}  // namespace gradacc
