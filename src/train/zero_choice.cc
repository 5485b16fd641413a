#include "train/zero_choice.h"

#include <algorithm>
#include <optional>
#include <unordered_map>

#include <fmt/format.h>

#include "accumulate/gradient_shard.h"
#include "base/parse.h"
#include "gradacc/errors.h"

namespace gradacc {

std::pair<int, bool> resolve_zero_stage(const DistributedOptions& o, bool memory_budget, bool distributed,
                                        std::vector<std::string>& notes) {
  const bool automatic = o.zero() == kZeroAuto;
  if (automatic && !memory_budget)
    throw ConfigError("zero auto lets the memory planner choose between ZeRO-1 and ZeRO-2: it needs --memory-budget");
  const std::string name = automatic ? "auto" : std::to_string(o.zero());
  if (o.zero() != 0 && !distributed) {
    notes.push_back(fmt::format("note: zero {} at world size 1 changes nothing (one rank holds the whole {})", name,
                                o.zero() == 1   ? "optimizer state"
                                : o.zero() == 3 ? "model, gradient and optimizer state"
                                                : "optimizer state and gradient"));
    return {0, false};
  }
  if (o.zero() != 0 && o.sync() != SyncMode::kPerWindow) {
    throw ConfigError(o.zero() >= 2
                          ? fmt::format("zero {} reduces each micro-batch's gradient into the owners' shards: "
                                        "it does not combine with --sync every-micro-batch (which "
                                        "all-reduces the whole gradient)",
                                        o.zero())
                          : fmt::format("zero {} reduce-scatters once per window: it does not combine with "
                                        "--sync every-micro-batch",
                                        name));
  }
  return {automatic ? 1 : static_cast<int>(o.zero()), automatic};
}

void cost_zero_stages(MemoryPlan& plan, const ZeroShard& zero, int planned, int64_t bucket_bytes) {
  // What ZeRO-1 keeps and ZeRO-2 does not: the whole buffer; what ZeRO-2 keeps instead: two buckets.
  const int64_t buffer = 4 * zero.padded();
  const int64_t buckets = 2 * 4 * GradientShard::bucket_elements(zero, bucket_bytes);
  const int64_t usable = static_cast<int64_t>(static_cast<double>(plan.budget_bytes) * 0.98);
  plan.zero_stages.clear();
  for (int stage : {1, 2}) {
    ZeroStageCost c;
    c.stage = stage;
    c.measured = stage == planned;
    c.predicted_peak = plan.predicted_peak + (stage == planned ? 0 : stage == 1 ? buffer - buckets : buckets - buffer);
    c.fits = c.predicted_peak <= usable;
    c.gradient_bytes_moved = (stage == 1 ? 1 : plan.accumulation_steps) * 4 * zero.padded();
    plan.zero_stages.push_back(c);
  }
  plan.zero_stage = planned;
}

MemoryPlan choose_zero_stage(const std::function<MemoryPlan(int)>& plan_on, const ZeroShard& zero,
                             int64_t bucket_bytes) {
  std::string zero1_failure;
  try {
    MemoryPlan plan = plan_on(1);
    cost_zero_stages(plan, zero, 1, bucket_bytes);
    plan.zero_choice = fmt::format(
        "zero auto chose ZeRO-1: it fits, and reduces the gradient once per window (ZeRO-2: once per micro-batch, "
        "{} per window)",
        plan.accumulation_steps);
    return plan;
  } catch (const ConfigError& e) {
    zero1_failure = e.what();
  }
  try {
    MemoryPlan plan = plan_on(2);
    cost_zero_stages(plan, zero, 2, bucket_bytes);
    plan.zero_choice = fmt::format(
        "zero auto chose ZeRO-2, which keeps {} of gradient buffers instead of ZeRO-1's {}: with ZeRO-1, {}",
        format_bytes(4 * zero.length() + 2 * 4 * GradientShard::bucket_elements(zero, bucket_bytes)),
        format_bytes(4 * zero.padded() + 4 * zero.length()), zero1_failure);
    return plan;
  } catch (const ConfigError& e) {
    throw ConfigError(fmt::format("zero auto: neither stage fits. ZeRO-2: {}; ZeRO-1: {}", e.what(), zero1_failure));
  }
}

Zero3Mode zero3_mode(const ParameterGatherOptions& gather) {
  if (gather.keep_for_window) return Zero3Mode::kKeepForWindow;
  return gather.reshard_after_forward ? Zero3Mode::kReshard : Zero3Mode::kKeepToBackward;
}

ParameterGatherOptions gather_options(Zero3Mode mode, bool prefetch) {
  return ParameterGatherOptions{mode == Zero3Mode::kReshard, prefetch, mode == Zero3Mode::kKeepForWindow};
}

const char* to_string(Zero3Mode mode) {
  switch (mode) {
    case Zero3Mode::kReshard: return "resharding";
    case Zero3Mode::kKeepToBackward: return "kept to backward";
    case Zero3Mode::kKeepForWindow: return "kept for window";
  }
  return "?";
}

MemoryPlan plan_zero3(const Zero3Planner& plan_with, const ZeroShard& zero, int64_t declared_units, Zero3Mode& mode,
                      bool choose) {
  const Zero3Mode first = choose ? Zero3Mode::kReshard : mode;
  MemoryPlan plan = plan_with(first, nullptr, false);
  const int64_t usable = static_cast<int64_t>(static_cast<double>(plan.budget_bytes) * 0.98);
  int64_t blocks = 0, root = 0;
  for (int64_t u = 0; u < zero.units(); ++u) (u < declared_units ? blocks : root) += zero.unit_bytes(u);
  const int64_t steps = plan.accumulation_steps;
  std::vector<ZeroStageCost> costs;
  std::optional<MemoryPlan> kept;
  Zero3Mode kept_mode = first;
  for (Zero3Mode m : {Zero3Mode::kReshard, Zero3Mode::kKeepToBackward, Zero3Mode::kKeepForWindow}) {
    std::optional<MemoryPlan> fitting;
    if (m == first) {
      fitting = plan;
    } else {
      try {
        fitting = plan_with(m, &plan, false);
      } catch (const ConfigError&) {
      }
    }
    const MemoryPlan measured = fitting ? *fitting : plan_with(m, &plan, true);  // over the budget: its cost alone
    ZeroStageCost c;
    c.stage = 3;
    c.reshard_after_forward = m == Zero3Mode::kReshard;
    c.accumulate_unsharded = m == Zero3Mode::kKeepForWindow;
    c.predicted_peak = std::max(measured.predicted_peak, measured.probed_peak);
    c.measured = true;
    c.fits = fitting.has_value() && c.predicted_peak <= usable;
    // Per window: every micro-batch's gradient reduced, or the window's once; the blocks gathered
    // twice or once per micro-batch, or once per window (the root once per micro-batch or window).
    const int64_t reduces = m == Zero3Mode::kKeepForWindow ? 1 : steps;
    c.gradient_bytes_moved = reduces * 4 * zero.padded();
    c.parameter_bytes_gathered = reduces * (root + (m == Zero3Mode::kReshard ? 2 : 1) * blocks);
    costs.push_back(c);
    const auto traffic = [](const ZeroStageCost& z) { return z.gradient_bytes_moved + z.parameter_bytes_gathered; };
    // The least traffic that fits; on a tie (one micro-batch per window) the earlier, which holds less.
    if (choose && c.fits && (!kept || traffic(c) < traffic(costs[static_cast<size_t>(kept_mode)]))) {
      kept = fitting;
      kept_mode = m;
    }
  }
  if (choose && kept) plan = *kept;
  mode = choose ? kept_mode : first;
  plan.zero_stages = costs;
  plan.zero_stage = 3;
  if (choose) {
    const ZeroStageCost& c = costs[static_cast<size_t>(mode)];
    plan.zero_choice = fmt::format(
        "{} (peak {}): the least communication that fits, {} of parameters "
        "gathered and {} of gradient reduced per window",
        to_string(mode), format_bytes(c.predicted_peak), format_bytes(c.parameter_bytes_gathered),
        format_bytes(c.gradient_bytes_moved));
  }
  return plan;
}

std::vector<std::vector<int64_t>> zero3_units(const Model& model, const std::vector<at::Tensor>& trainable,
                                              std::vector<std::string>& notes) {
  const size_t declared = model.units ? model.units->size() : 0;
  if (declared == 0) {
    notes.push_back(
        "note: zero 3: the model declares no units (gradacc/units.h), so its parameters are gathered whole, as one "
        "unit, for each micro-batch");
    return {};
  }
  std::unordered_map<const void*, int64_t> index;
  for (size_t i = 0; i < trainable.size(); ++i) index[trainable[i].unsafeGetTensorImpl()] = static_cast<int64_t>(i);
  std::vector<int64_t> unit_of(trainable.size(), -1);
  std::vector<std::vector<int64_t>> units(declared);
  for (size_t u = 0; u < declared; ++u) {
    for (const at::Tensor& p : model.units->parameters(u)) {
      const auto it = index.find(p.unsafeGetTensorImpl());
      if (it == index.end()) continue;  // frozen
      if (unit_of[it->second] >= 0 && unit_of[it->second] != static_cast<int64_t>(u))
        throw ConfigError(fmt::format("zero 3: a parameter belongs to units {} and {}: units hold disjoint modules",
                                      unit_of[it->second], u));
      if (unit_of[it->second] >= 0) continue;
      unit_of[it->second] = static_cast<int64_t>(u);
      units[u].push_back(it->second);
    }
    std::sort(units[u].begin(), units[u].end());
  }
  std::vector<int64_t> root;
  for (size_t i = 0; i < trainable.size(); ++i) {
    if (unit_of[i] < 0) root.push_back(static_cast<int64_t>(i));
  }
  if (!root.empty()) units.push_back(std::move(root));
  return units;
}

}  // namespace gradacc
