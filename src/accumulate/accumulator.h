// Accumulator: exact gradient accumulation over a window of micro-batches.
//
// The whole algorithm, with its math, is in accumulator.cc (its data-parallel side in
// accumulator_sync.cc). In short: every micro-batch backpropagates the *sum* of its loss terms
// (pre-scaled by a constant), gradients add up in one flat buffer, and at the window boundary
// the buffer is rescaled once by the window's real count of samples or items, clipped, and handed
// to the optimizer. This gives the full-batch gradient for any split of the window, including
// padded variable-length data and a short last window, without looking at micro-batches ahead of
// time and without reading anything from the device until the boundary.
//
// Usage (one optimizer step):
//   for (const Batch& mb : window) acc.accumulate(loss_fn(model(mb.inputs), mb.targets), mb.samples, mb.items);
//   StepReport r = acc.step();
//
// Mixed precision (see precision.h, loss_scaler.h, master_weights.h):
//   - with a LossScaler, each micro-batch backpropagates its loss × scale; the 1/scale is folded
//     into the boundary factor (one unscale per window, never per micro-batch); an inf/NaN window
//     gradient skips the update and the LR-schedule step and backs the scale off;
//   - with MasterWeights (bf16/fp16 parameters), each micro-batch's low-precision gradient is added
//     into an fp32 buffer that is the masters' .grad; the optimizer updates the masters, which are
//     then cast back into the model.
//
// ZeRO-1 (zero_shard.h): with a ZeroShard, the window's gradient is reduce-scattered instead of
// all-reduced, each rank's optimizer steps only its shard, and the updated parameters are
// all-gathered; the clip norm is the global one (the shards' squared norms summed).
// ZeRO-2 (a ZeroShard of stage 2): there is no buffer of the whole gradient; GradientShard
// (gradient_shard.h) reduces each micro-batch's gradient bucket by bucket into this rank's shard,
// and the boundary is ZeRO-1's without its reduce-scatter.
// ZeRO-3 (stage 3): ZeRO-2's gradient path over the units' layout; the boundary ends with the
// updated shard, and no all-gather: ParameterGather (parameter_gather.h) gathers each unit when
// it next runs.
//
// Invariants: between steps each trainable parameter's .grad is a view into a flat buffer; do
// not call optimizer.zero_grad() or replace .grad yourself (step() detects it and throws).
// Thread safety: none; one training loop owns an Accumulator.
#pragma once

#include <csignal>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include "accumulate/gradient_shard.h"
#include "accumulate/noise_scale.h"
#include "accumulate/parameter_gather.h"
#include "base/stateful.h"
#include "gradacc/lr_schedule.h"
#include "gradacc/model.h"
#include "gradacc/step_report.h"
#include "precision/loss_scaler.h"
#include "precision/master_weights.h"
#include "sync/gradient_reducer.h"
#include "sync/zero_shard.h"

namespace gradacc {

struct AccumulatorOptions {
  Normalization normalization = Normalization::kPerSample;
  double max_grad_norm = 0.0;  // clip the window gradient to this L2 norm; 0 = no clipping
  int64_t nominal_count = 1;   // expected count per window: micro-batch losses are pre-scaled
                               // by 1/nominal_count so gradients keep a natural magnitude
  AccumulatorOptions& normalization_(Normalization n) {
    normalization = n;
    return *this;
  }
  AccumulatorOptions& max_grad_norm_(double v) {
    max_grad_norm = v;
    return *this;
  }
  AccumulatorOptions& nominal_count_(int64_t v) {
    nominal_count = v;
    return *this;
  }
};

class Accumulator : public Stateful {
 public:
  // `schedule` may be null (the optimizer's own lr stays). The module's trainable parameters must
  // share one dtype and device. With `master`, `optimizer` must update master->masters(), and
  // `model` is the low-precision model they were made from. `scaler` may be null (no loss scaling).
  // With `zero` (instead of `master`), `optimizer` must update zero->shard_param() alone, and a
  // reducer of zero's world must be set before the first step. Throws ConfigError on bad
  // options.
  Accumulator(torch::nn::Module& model, torch::optim::Optimizer& optimizer, const LrSchedule* schedule,
              AccumulatorOptions options, MasterWeights* master = nullptr, LossScaler* scaler = nullptr,
              ZeroShard* zero = nullptr);

  ~Accumulator();  // removes the overlap hooks from the parameters
  // New options between windows (the memory planner's batch changes the naive scheme's count).
  // Throws ConfigError on bad options, or inside a window.
  void set_options(const AccumulatorOptions& options);
  Accumulator(const Accumulator&) = delete;
  Accumulator& operator=(const Accumulator&) = delete;

  // Data parallel: gradients, loss and counts are summed across the reducer's ranks — once per
  // window (with the counts in the same reduction), or after every micro-batch for comparison.
  // Call before the first micro-batch. The accumulation buffer must be fp32 (or the params' dtype
  // when that is fp32/fp64). `reducer` may be null (single process).
  void set_reducer(GradientReducer* reducer, SyncMode mode = SyncMode::kPerWindow);

  // Data parallel with per-window sync: reduce the window's gradient in buckets of about
  // `bucket_bytes`, in reverse parameter order (as DDP), each started as soon as the window's last
  // backward has written every gradient in it (post-accumulate-grad hooks on the parameters), and
  // waited for at the boundary. Buckets start strictly in order, so every rank issues the same
  // collectives in the same order; earlier micro-batches communicate nothing. Not with ZeRO (its
  // shard layout is one reduce-scatter). Under ZeRO-2, the size of the buckets reduced after every
  // micro-batch instead (25 MiB until set; also before set_reducer(), so that the memory planner
  // measures them). Otherwise call after set_reducer(). Throws ConfigError.
  void set_overlap(int64_t bucket_bytes);
  // The next accumulate() is this rank's last micro-batch of the window (with overlap, or ZeRO-3's
  // unsharded accumulation, whose one reduction then starts during that backward; else nothing).
  void overlap_next_backward();

  // ZeRO-3: the gathers of the model's units; a unit is freed once its parameters all handed
  // their gradients over, and each report counts the window's gathers. Null: none. Throws
  // ConfigError without a stage-3 ZeroShard.
  void set_parameter_gather(ParameterGather* gather);

  // ZeRO-3 without communication inside the window (FSDP's no_sync): each micro-batch's gradient
  // is summed into one whole fp32 buffer (4·P bytes more), reduced to the owners once at the
  // boundary; pair it with a ParameterGather that keeps units for the window. Between windows.
  // Throws ConfigError below stage 3.
  void set_accumulate_unsharded(bool on);

  // The learning rate's factor for the next step() (it follows the batch: train/lr_scaling.h):
  // the report's lr is the schedule's value × `scale`, the schedule read at `position` when given
  // (AdaScale's Σ r) or else at the updates applied. Needs a schedule unless scale is 1 and no
  // position is given. Throws ConfigError.
  void set_lr_scale(double scale, std::optional<double> position = std::nullopt);

  // A flag (set by a signal handler) that asks the run to stop at a window boundary. step() reads
  // it; data parallel, it travels in the same all-reduce, so every rank sees any rank's request
  // after the same window (StepReport::stop_requested). May be null.
  void set_stop_signal(const volatile std::sig_atomic_t* flag) { stop_signal_ = flag; }

  // Measures the gradient noise scale (noise_scale.h) with `estimator`: the squared norm of the
  // first micro-batch's gradient is taken on the device after its backward, read with the
  // boundary's one transfer, and set against the window's; each report carries the estimate.
  // Not with every-micro-batch sync (the buffer then holds other ranks' gradients too) nor the
  // naive normalization. May be null (off). Throws ConfigError.
  void set_noise_scale(NoiseScaleEstimator* estimator);

  // A micro-batch this rank has no examples for (its share of a short window ran out). Single
  // process: nothing. With a reducer in every-micro-batch mode it joins the collective, so ranks
  // stay in step.
  void empty_micro_batch();

  // Backpropagates one micro-batch. `loss_sum` is the unreduced sum of its loss terms (0-dim);
  // `samples` and `items` are its counts (items == samples for classification).
  void accumulate(const at::Tensor& loss_sum, int64_t samples, int64_t items);

  // Positions this rank's micro-batches computed, padding included (sequence data: rows × longest
  // row). Summed over ranks at the boundary beside the counts, for StepReport::computed_items;
  // the training loop calls it, and nothing in the gradient depends on it.
  void count_positions(int64_t positions) { window_positions_ += positions; }

  // Ends the window: exact normalization, clipping, optimizer update, zeroed buffer.
  // Throws std::logic_error for a window with nothing in it, and NumericalError (the window
  // discarded, the weights untouched) when its loss or gradient norm is not finite and there is
  // no loss scaler to skip it, or its scale is already below 2^-24.
  StepReport step();

  // ‖buffer‖ as the boundary computes it (float64, on the device): the memory planner measures
  // what it costs.
  at::Tensor window_norm() const;

  // Forgets the open window — its gradient sum, loss and counts — as if it had not begun; the
  // step count, the loss scaler and the optimizer are untouched. For replaying a window that ran
  // out of memory, and for memory probes. Single process only (ranks would disagree).
  void discard_window();

  // A copy of the exact gradient of the open window (normalized by its real count, not clipped),
  // flat in parameter order. For tests and verification: it costs a copy. Not under ZeRO-2 (no
  // rank holds it; std::logic_error).
  at::Tensor window_gradient() const;

  // Windows completed (the step number of the log), and updates applied: fewer when a loss
  // scaler skipped some. The LR schedule advances with updates.
  int64_t steps_taken() const { return steps_; }
  int64_t updates_applied() const { return updates_; }
  // Continues a run from a checkpoint taken after `steps_taken` windows and `updates_applied`
  // updates. Only between windows; throws std::logic_error otherwise.
  void resume_at(int64_t steps_taken, int64_t updates_applied);
  // Its part of a checkpoint: "step" (windows completed) and "updates"; loading them is resume_at().
  std::map<std::string, std::string> state() const override;
  void load_state(const std::map<std::string, std::string>& state) override;
  // The flat accumulation buffer (the .grad tensors the optimizer reads are views of it): fp32
  // with master weights. It holds scale × Σ_m s·∇L_m until step(). For tests and communication.
  // Undefined under ZeRO-2, whose sum lives in ZeroShard::shard_grad() alone.
  const at::Tensor& flat_grad() const { return flat_grad_; }
  // ZeRO-2's bucketed reduction (null otherwise): for tests.
  const GradientShard* gradient_shard() const { return sharded_.get(); }
  // Bytes of the gradient memory this rank keeps between micro-batches: the accumulation buffer
  // (and the low-precision model's micro-batch buffer), the ZeRO shard, ZeRO-2's staging buffers.
  int64_t gradient_bytes() const;

 private:
  std::vector<at::Tensor> params_;  // the model's trainable parameters
  torch::optim::Optimizer& optimizer_;
  const LrSchedule* schedule_;
  AccumulatorOptions options_;
  MasterWeights* master_;
  LossScaler* scaler_;
  ZeroShard* zero_;
  std::unique_ptr<GradientShard> sharded_;  // ZeRO-2/3: made with the accumulator, again by set_overlap
  ParameterGather* gather_ = nullptr;       // ZeRO-3
  int64_t gathers_before_ = 0;
  bool unsharded_accumulation_ = false;
  double lr_scale_ = 1.0;
  std::optional<double> lr_position_;
  double scheduled_lr() const;  // the next update's rate: schedule (at its position) × scale
  bool shards_gradients() const { return zero_ && zero_->stage() >= 2; }
  at::Tensor buffer_;     // flat_grad_ followed by the window statistics (data parallel)
  at::Tensor flat_grad_;  // one contiguous buffer holding every gradient (the optimizer's .grad)
  at::Tensor stats_;      // [loss sum, samples hi, lo, items hi, lo]: reduced with the gradients
  at::Tensor stats_host_;
  at::Tensor micro_grad_;  // the model's .grad for one micro-batch (low-precision model, or synced per micro-batch)
  bool low_precision_model_ = false;  // the model's .grad is micro_grad_, folded into fp32 per micro-batch
  at::Tensor zero_stats_;             // ZeRO: the window statistics and the shard's ‖G‖², float64
  std::vector<at::Tensor> flat_views_, micro_views_;  // each parameter's slice of the two buffers
  GradientReducer* reducer_ = nullptr;
  const volatile std::sig_atomic_t* stop_signal_ = nullptr;
  NoiseScaleEstimator* noise_ = nullptr;
  at::Tensor small_sq_;      // ‖G‖² after the window's first micro-batch (float64, on the device)
  int64_t small_count_ = 0;  // that micro-batch's count
  SyncMode sync_mode_ = SyncMode::kPerWindow;
  int64_t calls_before_ = 0, bytes_before_ = 0;
  bool distributed() const { return reducer_ && reducer_->world_size() > 1; }
  // Overlap: buckets of flat_grad_ (reverse parameter order), started in order as they fill.
  struct Bucket {
    int64_t begin = 0, end = 0;  // elements of flat_grad_
    int64_t params = 0, remaining = 0;
  };
  struct OverlapHook;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;      // parameter index → its bucket
  size_t next_bucket_ = 0;             // buckets [0, next_bucket_) are started
  bool overlap_armed_ = false;         // the backward running now is this rank's last of the window
  void parameter_ready(size_t param);  // a post-accumulate-grad hook fired
  void start_ready_buckets(bool all);  // in order; `all`: also those not yet full
  void fold_micro_grad();
  at::Tensor window_loss_;                                 // Σ loss terms of the open window, on the device (float64)
  double pre_scale_;                                       // 1 / nominal_count
  int64_t count_of(int64_t samples, int64_t items) const;  // N for these counts, per the normalization
  int64_t window_count() const;                            // N of this rank's open window

  double boundary_factor(int64_t count) const;  // f = Ñ/(N·S)
  // The window's totals over all ranks, read in the boundary's one device→host transfer.
  struct WindowTotals {
    double loss_sum = 0.0, grad_norm = 0.0;  // Σ loss terms, ‖G‖ (of the buffer, before the factor f)
    int64_t samples = 0, items = 0, positions = 0;
    bool stop_requested = false;
    double small_mean_sq = 0.0, small_count = 0.0;  // the noise scale's small batch: (S·s)²|G_small|², B_small
  };
  WindowTotals local_totals();           // single process
  WindowTotals all_reduce_totals();      // data parallel: gradients summed into every rank's buffer
  WindowTotals reduce_scatter_totals();  // ZeRO-1: each rank's shard of the sum in zero_->shard_grad()
  int64_t window_samples_ = 0, window_items_ = 0, window_micro_batches_ = 0, window_positions_ = 0;
  int64_t steps_ = 0, updates_ = 0;
};

}  // namespace gradacc
