// The memory planner's entry point: what it probes (the run's own model, loss, data, accumulator
// and optimizer) and what it is asked (include/gradacc/memory_plan.h says what it measures and how
// it chooses, and holds the MemoryPlan it returns).
//
// Thread safety: none; runs on the training thread, before training.
#pragma once

#include <cstdint>
#include <optional>

#include <c10/core/Device.h>
#include <torch/optim/optimizer.h>

#include "accumulate/accumulator.h"
#include "gradacc/dataset.h"
#include "gradacc/memory_plan.h"
#include "gradacc/model.h"
#include "gradacc/precision.h"
#include "gradacc/window_loss.h"

namespace gradacc {

// What the planner measures with: the run's own parts, built and on the device.
struct MemoryProbe {
  Model& model;
  const LossFn& loss;
  const Dataset& data;
  Accumulator& accumulator;
  torch::optim::Optimizer& optimizer;
  at::Device device = at::kCPU;
  Precision precision = Precision::kFp32;
  ParameterGather* gather = nullptr;  // ZeRO-3: each probe gathers its units as training does
  // A loss over the whole window (gradient caching): the probes run its encoder, and the window's
  // cache (memory/window_cache.h) is held beside each micro-batch's activations.
  const WindowLoss* window_loss = nullptr;
};

struct MemoryPlanRequest {
  int64_t budget_bytes = 0;
  int64_t global_batch = 1;
  int64_t world_size = 1;
  std::optional<int64_t> micro_batch;  // the user's: checked against the budget, not chosen
  std::optional<bool> checkpointing;   // the user's: on or off; unset: the planner decides
  bool token_budget = false;           // plan micro-batches of at most N tokens (rows × longest row)
  std::optional<int64_t> tokens;       // the user's N: checked against the budget, not chosen
  int zero_stage = 0;                  // the run's ZeRO stage: below 3, a refusal names ZeRO-3's ranks
};

// Plans the batch. Throws ConfigError (one line) when the budget is below the static need (below
// ZeRO-3, naming about how many ranks ZeRO-3 would need to hold it), when a window loss's cache
// leaves no room for one micro-batch (naming the largest global batch whose cache does), when
// no micro-batch fits even with checkpointing (naming the smallest budget that works), and when
// the request's micro_batch or tokens does not fit (naming the largest that does).
MemoryPlan plan_memory(const MemoryProbe& probe, const MemoryPlanRequest& request);

}  // namespace gradacc
