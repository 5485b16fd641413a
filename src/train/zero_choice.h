// ZeRO's stage: the option resolved, and under a memory budget (data parallel) what ZeRO-1 and
// ZeRO-2 cost at the planned micro-batch, and with `zero auto` the choice between them.
//
// The two stages differ in one buffer and in traffic. ZeRO-1 keeps the whole fp32 accumulation
// buffer (4·R·L bytes) and reduces it once per window. ZeRO-2 keeps two buckets instead
// (gradient_shard.h) and reduces every micro-batch's gradient: M times the traffic for a window of
// M micro-batches. So ZeRO-1 is the cheaper whenever it fits, and `zero auto` plans on it first; it
// takes ZeRO-2 only when ZeRO-1 cannot hold one micro-batch (or the one asked for), and says why.
//
// Thread safety: none; runs on the training thread, before training.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "accumulate/parameter_gather.h"
#include "gradacc/memory_plan.h"
#include "gradacc/model.h"
#include "gradacc/options.h"
#include "sync/zero_shard.h"

namespace gradacc {

// DistributedOptions::zero resolved: the stage in effect (0 on one process, with a note in `notes`) and
// whether the memory planner picks it (auto, which starts as 1). Throws ConfigError (one line) for
// another stage, auto without a memory budget, or ZeRO with every-micro-batch sync.
std::pair<int, bool> resolve_zero_stage(const DistributedOptions& o, bool memory_budget, bool distributed,
                                        std::vector<std::string>& notes);

// Fills plan.zero_stages and plan.zero_stage for a plan made on `planned` (1 or 2): that stage as
// planned, the other estimated from it by the difference of their gradient buffers.
void cost_zero_stages(MemoryPlan& plan, const ZeroShard& zero, int planned, int64_t bucket_bytes);

// `zero auto`: plan_on(1), else plan_on(2) when ZeRO-1 throws ConfigError; plan_on(stage) switches
// the run to `stage` and plans it. Returns the plan with both stages costed and the reason.
// Throws ConfigError naming both stages' failures when neither fits.
MemoryPlan choose_zero_stage(const std::function<MemoryPlan(int)>& plan_on, const ZeroShard& zero,
                             int64_t bucket_bytes);

// ZeRO-3's three ways through a window, from the least memory to the least communication:
// units freed after their forward (gathered twice per micro-batch), kept to their backward (once),
// or kept for the whole window with the gradient summed unsharded (once per window, 4·P bytes more,
// no communication between micro-batches: FSDP's no_sync).
enum class Zero3Mode { kReshard, kKeepToBackward, kKeepForWindow };
Zero3Mode zero3_mode(const ParameterGatherOptions& gather);
ParameterGatherOptions gather_options(Zero3Mode mode, bool prefetch);
const char* to_string(Zero3Mode mode);

// ZeRO-3 under a memory budget. plan_with(mode, at, any_budget) plans with that mode: the batch (at
// null), or at `at`'s micro-batch (or token budget); with any_budget, without refusing a peak over
// the budget (to cost it). It plans on `mode` (the user's), or with `choose` on resharding (the
// least memory), then measures the other modes at the planned micro-batch; with `choose`, it keeps
// the one that communicates least among those that fit. Returns the plan of the mode kept, with
// all three costed; `mode` becomes the mode kept. Throws the planner's ConfigError.
using Zero3Planner = std::function<MemoryPlan(Zero3Mode mode, const MemoryPlan* at, bool any_budget)>;
MemoryPlan plan_zero3(const Zero3Planner& plan_with, const ZeroShard& zero, int64_t declared_units, Zero3Mode& mode,
                      bool choose);

// ZeRO-3's layout: for each unit the model declares (gradacc/units.h), the indices among
// `trainable` (the trainable parameters, model order) of its parameters, then the root unit of
// those in none (when any). A model without units is one unit: a note goes into `notes`. Throws
// ConfigError when a parameter is declared in two units.
std::vector<std::vector<int64_t>> zero3_units(const Model& model, const std::vector<at::Tensor>& trainable,
                                              std::vector<std::string>& notes);

}  // namespace gradacc
