// ParameterGather: ZeRO stage 3's parameter path — every rank keeps 1/R of each unit's
// parameters (ZeroShard's stage-3 layout); a unit is whole only around its own computation.
//
// Per micro-batch (Units calls the observer; the training loop calls begin/end):
//   begin_micro_batch   the root unit (parameters outside every declared unit: embeddings, a head)
//                       is gathered, for the whole micro-batch;
//   before_forward(u)   unit u is gathered (or its prefetch waited for); unit u+1's gather starts;
//   after_forward(u)    reshard_after_forward: unit u is freed (without a backward to follow, always);
//   before_backward(u)  (a hook on u's output) unit u is gathered again; unit u−1's gather starts;
//   parameter_ready     when every parameter of u has handed its gradient to GradientShard, u is
//                       freed;
//   end_micro_batch     every unit still gathered is freed.
// So all-gathers per micro-batch are 1 + 2·U with resharding after the forward and 1 + U without
// (the root's forward and backward are back to back; it is gathered once), and at most the root
// and two units are whole at a time (one computing, one arriving), one more without resharding
// for the units between their forward and backward.
//
// keep_for_window (FSDP's no_sync, with the gradient summed unsharded: gradient_shard.h): a unit
// gathered in a window's micro-batch stays whole until end_window(), so a window gathers each unit
// once, 1 + U in all, and holds the whole model from its first micro-batch to the boundary.
//
// A gather is one c10d all-gather of every rank's L_u elements into the unit's buffer, started
// asynchronously; on Gloo it runs on the group's worker threads while this thread computes, so a
// prefetch overlaps the current unit's computation. Without a reducer (one process, or the memory
// planner's probes before the group exists) each rank's slice is filled from its own shard: the
// same memory and the same values at world 1, placeholders at R > 1 (on the CPU also holding, until
// waited for, the flat buffer Gloo's all-gather would allocate).
//
// Every rank issues the same gathers in the same order (the same model runs the same units); a
// rank with no examples for a micro-batch must still run one (the training loop runs a stand-in).
// Thread safety: none (the backward's hooks run on the training thread). Lifetime: `zero`,
// `units` and the reducer outlive it; it detaches from `units` when destroyed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <vector>

#include <ATen/core/Tensor.h>

#include "gradacc/units.h"
#include "sync/gradient_reducer.h"
#include "sync/zero_shard.h"

namespace gradacc {

struct ParameterGatherOptions {
  bool reshard_after_forward = true;  // false: a unit stays whole from its forward to its backward
  bool prefetch = true;               // start the next unit's gather while this one computes
  bool keep_for_window = false;       // units stay whole from their first gather to end_window()
};

class ParameterGather : public UnitObserver {
 public:
  // `zero` is a stage-3 layout whose first units are `units`' declared units, in order, followed
  // by the root unit when some parameters are in none (`units` may be null: one root unit).
  // Throws ConfigError when the layouts disagree.
  ParameterGather(ZeroShard& zero, Units* units, GradientReducer* reducer, ParameterGatherOptions options);
  ~ParameterGather() override;
  ParameterGather(const ParameterGather&) = delete;
  ParameterGather& operator=(const ParameterGather&) = delete;

  void set_reducer(GradientReducer* reducer);
  const ParameterGatherOptions& options() const { return options_; }
  // Between micro-batches (the memory planner tries both settings).
  void set_options(ParameterGatherOptions options) { options_ = options; }

  // Training begins: the units are observed, and every unit is freed (this rank keeps its shard).
  void shard();
  // Training ends: every unit is gathered and stays whole (the model is an ordinary module again),
  // and the units are no longer observed. A collective at R > 1: needs the reducer.
  void unshard();
  bool sharded() const { return sharded_; }

  // `counted`: its gathers count in gathers() (a training window's; not an evaluation's).
  void begin_micro_batch(bool counted = true);
  void end_micro_batch();
  // The window's boundary (the shards were updated): every unit still whole is freed. The
  // Accumulator calls it after each step and when a window is discarded.
  void end_window();
  // A micro-batch that threw: frees the units whose gathers are done, and forgets those still in
  // flight without waiting (their peers may have failed too; the collective's buffer is left to
  // it). Without a group nothing is in flight, so a replay starts clean. Never throws.
  void abandon_micro_batch() noexcept;
  // From GradientShard: `param` (a trainable parameter's index) handed over its gradient.
  void parameter_ready(size_t param);

  // All-gathers started inside micro-batches since construction (unshard()'s are not counted).
  int64_t gathers() const { return gathers_; }
  int64_t root() const { return root_; }          // the root unit's index, -1 when there is none
  int64_t declared() const { return declared_; }  // units the model declared

  void before_forward(size_t unit) override;
  void after_forward(size_t unit, bool backward_follows) override;
  void before_backward(size_t unit) override;

 private:
  enum class State { kFree, kInFlight, kWhole };
  void start(int64_t u);
  void wait(int64_t u);
  void ensure(int64_t u);
  void release(int64_t u);

  ZeroShard& zero_;
  Units* units_;
  GradientReducer* reducer_;
  ParameterGatherOptions options_;
  int64_t declared_ = 0, root_ = -1;
  std::vector<State> state_;
  std::vector<int64_t> ticket_, remaining_;
  std::vector<at::Tensor> scratch_;  // probes without the group: what Gloo's gather would hold
  int64_t gathers_ = 0;
  bool sharded_ = false, in_micro_batch_ = false;
  bool keeping() const { return options_.keep_for_window && in_micro_batch_; }
};

// One micro-batch's gathers as a scope: begin_micro_batch() now, end_micro_batch() when it ends,
// also by an exception (a replay or a probe then starts clean). Null, or a model that is whole:
// nothing.
class GatheredMicroBatch {
 public:
  explicit GatheredMicroBatch(ParameterGather* gather, bool counted = true)
      : gather_(gather), exceptions_(std::uncaught_exceptions()) {
    if (gather_) gather_->begin_micro_batch(counted);
  }
  ~GatheredMicroBatch() {
    if (!gather_) return;
    if (std::uncaught_exceptions() > exceptions_)
      gather_->abandon_micro_batch();  // never waits: a peer may not be coming
    else
      gather_->end_micro_batch();
  }
  GatheredMicroBatch(const GatheredMicroBatch&) = delete;
  GatheredMicroBatch& operator=(const GatheredMicroBatch&) = delete;

 private:
  ParameterGather* gather_;
  int exceptions_;
};

}  // namespace gradacc
