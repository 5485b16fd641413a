// plan_memory(): measure the static part, the optimizer step and the activations, then pick the
// largest micro-batch that fits (see memory_plan.h for the model of a window's peak).
#include "gradacc/memory_plan.h"

#include "memory/planner.h"

#include <algorithm>
#include <limits>

#include <ATen/Context.h>
#include <ATen/core/Generator.h>
#include <c10/util/Exception.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "base/parse.h"
#include "gradacc/device.h"
#include "gradacc/errors.h"
#include "memory/window_cache.h"
#include "optim/fused_adamw.h"

namespace gradacc {
namespace {

constexpr double kUsable = 0.98;  // of the budget: the rest is headroom for what the model misses
constexpr int64_t kDoesNotFit = std::numeric_limits<int64_t>::max() / 4;

int64_t live_bytes(const at::Device& d) { return memory_reading(d).current_bytes; }

// Buffers (BatchNorm statistics) and the RNG streams as they were before probing; put back on exit.
class ProbeUndo {
 public:
  explicit ProbeUndo(const MemoryProbe& p) : p_(p) {
    for (const at::Tensor& b : p.model.module->buffers()) buffers_.emplace_back(b, b.clone());
    cpu_rng_ = generator_state(at::Device(at::kCPU));
    if (p.device.is_cuda()) device_rng_ = generator_state(p.device);
  }
  ~ProbeUndo() {
    torch::NoGradGuard no_grad;
    for (auto& [live, copy] : buffers_) live.copy_(copy);
    set_generator_state(at::Device(at::kCPU), cpu_rng_);
    if (p_.device.is_cuda()) set_generator_state(p_.device, device_rng_);
  }
  ProbeUndo(const ProbeUndo&) = delete;
  ProbeUndo& operator=(const ProbeUndo&) = delete;

 private:
  const MemoryProbe& p_;
  std::vector<std::pair<at::Tensor, at::Tensor>> buffers_;
  at::Tensor cpu_rng_, device_rng_;
};

struct ActivationProbe {
  int64_t bytes = 0;      // the peak above what was live; kDoesNotFit when out of memory
  int64_t positions = 0;  // the positions the micro-batch computed (rows × width for text)
};

// The peak above what is live during one micro-batch of the m largest examples: the batch, the
// forward's activations, the backward. The window is discarded afterwards.
ActivationProbe probe_activations(const MemoryProbe& p, int64_t m) {
  const std::vector<int64_t> indices = p.data.largest_examples(m);
  const int64_t before = live_bytes(p.device);
  reset_memory_peak(p.device);
  ActivationProbe out;
  try {
    const GatheredMicroBatch gathers(p.gather);
    const Batch batch = p.data.gather(indices).to(p.device);
    out.positions = batch.inputs.numel();
    at::Tensor loss;
    {
      AutocastGuard autocast(p.device.type(), p.precision);
      loss = p.window_loss ? window_loss_probe_loss(*p.window_loss, batch) : p.loss(p.model.forward(batch), batch);
    }
    p.accumulator.accumulate(loss, batch.samples, batch.items);
  } catch (const c10::OutOfMemoryError&) {
    p.accumulator.discard_window();
    out.bytes = kDoesNotFit;
    return out;
  }
  out.bytes = std::max<int64_t>(memory_reading(p.device).peak_bytes - before, 0);
  p.accumulator.discard_window();
  return out;
}

struct StepProbe {
  int64_t state = 0;      // optimizer state the first step creates
  int64_t transient = 0;  // above that, during the step
};

// One optimizer step on zero gradients, undone: what the optimizer's state and its step cost.
// Optimizers that hold their state from construction (gradacc's FusedAdamW, or a state already
// loaded) have it in the static part; theirs is not probed.
StepProbe probe_optimizer_step(const MemoryProbe& p) {
  if (dynamic_cast<FusedAdamW*>(&p.optimizer) != nullptr || !p.optimizer.state().empty()) return {};
  std::vector<std::pair<at::Tensor, at::Tensor>> weights;
  for (auto& group : p.optimizer.param_groups()) {
    for (const at::Tensor& w : group.params()) weights.emplace_back(w, w.detach().clone());
  }
  const int64_t before = live_bytes(p.device);
  reset_memory_peak(p.device);
  StepProbe s;
  try {
    p.optimizer.step();
    const int64_t after = live_bytes(p.device);
    s.state = after - before;
    s.transient = std::max<int64_t>(memory_reading(p.device).peak_bytes - after, 0);
  } catch (const std::exception&) {
    // An optimizer that cannot step without a closure (LBFGS): assume Adam-like state, 2 × weights.
    for (const auto& [w, copy] : weights) s.state += 2 * static_cast<int64_t>(w.nbytes());
  }
  torch::NoGradGuard no_grad;
  for (auto& [w, copy] : weights) w.copy_(copy);
  p.optimizer.state().clear();
  return s;
}

// The transient of the window boundary's own work: the float64 gradient norm.
int64_t probe_boundary(const MemoryProbe& p) {
  const int64_t before = live_bytes(p.device);
  reset_memory_peak(p.device);
  { const at::Tensor norm = p.accumulator.window_norm(); }
  return std::max<int64_t>(memory_reading(p.device).peak_bytes - before, 0);
}

// fixed + x · per_unit from micro-batches of 1 and min(4, cap) of the largest examples, where x
// counts examples, or computed positions when `per_position`.
ActivationCost fit_activations(const MemoryProbe& p, int64_t cap, bool per_position) {
  const int64_t m1 = 1, m2 = std::min<int64_t>(4, cap);
  const ActivationProbe a1 = probe_activations(p, m1);
  const int64_t x1 = per_position ? a1.positions : m1;
  if (m2 == m1 || a1.bytes >= kDoesNotFit) return {0, a1.bytes >= kDoesNotFit ? a1.bytes : (a1.bytes + x1 - 1) / x1};
  const ActivationProbe a2 = probe_activations(p, m2);
  const int64_t x2 = per_position ? a2.positions : m2;
  if (a2.bytes >= kDoesNotFit || x2 <= x1) return {0, a2.bytes >= kDoesNotFit ? a2.bytes : (a2.bytes + x2 - 1) / x2};
  ActivationCost c;
  c.per_example = std::max<int64_t>((a2.bytes - a1.bytes + (x2 - x1) - 1) / (x2 - x1), 1);
  c.fixed = std::max<int64_t>(a1.bytes - c.per_example * x1, 0);
  return c;
}

// A window's peak: static + max(held + max(activations, pass 2's loss), the step). `held` and
// `window_loss` are a window loss's cache and its loss over the window (0 otherwise): the cache
// lives through the window's micro-batches and is gone by the optimizer step.
struct WindowPeak {
  int64_t static_bytes = 0, held = 0, window_loss = 0, step = 0;
  int64_t at(int64_t activations) const {
    return static_bytes + std::max(held + std::max(activations, window_loss), step);
  }
};

int64_t budget_for(int64_t peak) { return static_cast<int64_t>(static_cast<double>(peak) / kUsable) + 1; }

}  // namespace

MemoryPlan plan_memory(const MemoryProbe& p, const MemoryPlanRequest& r) {
  if (r.budget_bytes <= 0) throw ConfigError(fmt::format("memory_budget must be positive, got {}", r.budget_bytes));
  MemoryPlan plan;
  plan.budget_bytes = r.budget_bytes;
  const int64_t share = (r.global_batch + r.world_size - 1) / r.world_size;
  const int64_t cap = std::min(share, p.data.size());
  const auto usable = static_cast<int64_t>(static_cast<double>(r.budget_bytes) * kUsable);
  const std::string budget = format_bytes(r.budget_bytes);

  const int64_t static0 = live_bytes(p.device);
  ProbeUndo undo(p);
  p.model.module->train();
  StepProbe step = probe_optimizer_step(p);
  step.transient = std::max(step.transient, probe_boundary(p));
  plan.optimizer_state_bytes = step.state;
  plan.step_bytes = step.transient;
  plan.static_bytes = static0 + step.state;
  if (plan.static_bytes >= usable) {
    // ZeRO-3 divides the static need by the ranks; half the budget is left for the units gathered,
    // the buckets and one micro-batch's activations, which this estimate cannot measure.
    const int64_t ranks = std::max<int64_t>(2, (2 * plan.static_bytes + usable - 1) / usable);
    throw ConfigError(
        fmt::format("memory budget {} is below the static need of {} (parameters, gradient buffer, optimizer state and "
                    "master weights): the smallest budget that could work is {}{}",
                    budget, format_bytes(plan.static_bytes), format_bytes(budget_for(plan.static_bytes + 1)),
                    r.zero_stage < 3 ? fmt::format(", or about {} ranks under --zero 3, which divides that need by "
                                                   "the ranks (gradacc launch --nproc {} -- train ... --zero 3)",
                                                   r.world_size * ranks, r.world_size * ranks)
                                     : std::string()));
  }
  WindowPeak peak{plan.static_bytes, 0, 0, step.transient};
  std::optional<WindowCacheCost> cache;
  if (p.window_loss) {
    cache = measure_window_cache(*p.window_loss, p.data, p.device, p.precision, r.global_batch);
    peak.held = plan.window_cache_bytes = cache->held(r.global_batch, share);
    peak.window_loss = plan.window_loss_bytes = cache->loss_transient(r.global_batch);
  }
  const Batch largest = p.data.gather(p.data.largest_examples(1));
  plan.probe_examples_items = largest.items;
  plan.probe_example_positions = largest.inputs.numel();
  // The unit the fit counts, and the smallest micro-batch in it: one example, or with a token
  // budget the positions of the longest sequence's row (a packed row at least).
  const bool tokens = r.token_budget;
  const int64_t one = tokens ? std::max(plan.probe_example_positions, p.data.packed_row_length()) : 1;
  const int64_t cap_units = cap * one;
  const auto unit_name = [&](int64_t x) {
    return tokens ? fmt::format("micro_batching tokens:{}", x) : fmt::format("micro_batch {}", x);
  };

  // Each checkpointing mode the model offers: its activation cost and the budget micro-batch 1 needs.
  const auto& toggle = p.model.set_activation_checkpointing;
  const bool can_checkpoint = toggle && toggle(true);
  if (toggle) toggle(false);
  if (r.checkpointing.value_or(false) && !can_checkpoint) {
    throw ConfigError("activation checkpointing: this model has no blocks to checkpoint");
  }
  std::optional<ActivationCost> cost_off, cost_on;
  if (!r.checkpointing.has_value() || !*r.checkpointing) {
    cost_off = fit_activations(p, cap, tokens);
    plan.min_budget_without_checkpointing = budget_for(peak.at(cost_off->at(one)));
  }
  if (can_checkpoint && r.checkpointing.value_or(true)) {
    toggle(true);
    cost_on = fit_activations(p, cap, tokens);
    toggle(false);
    plan.min_budget_with_checkpointing = budget_for(peak.at(cost_on->at(one)));
  }
  const auto fits = [&](const ActivationCost& c, int64_t x) { return peak.at(c.at(x)) <= usable; };
  // Checkpointing only when no micro-batch fits without it, and it makes one fit.
  const bool use_checkpointing = !cost_off || (!fits(*cost_off, one) && cost_on && fits(*cost_on, one));
  plan.checkpointing = use_checkpointing;
  plan.activations = use_checkpointing ? *cost_on : *cost_off;
  plan.min_budget = use_checkpointing ? *plan.min_budget_with_checkpointing : plan.min_budget_without_checkpointing;
  if (!fits(plan.activations, one)) {
    std::string modes;
    if (cost_off && cost_on) {
      plan.min_budget = std::min(plan.min_budget_without_checkpointing, *plan.min_budget_with_checkpointing);
      modes = fmt::format(" ({} without activation checkpointing, {} with)",
                          format_bytes(plan.min_budget_without_checkpointing),
                          format_bytes(*plan.min_budget_with_checkpointing));
    } else if (cost_on) {
      modes = " with activation checkpointing";
    }
    if (cache) {  // the largest window whose cache leaves room for a micro-batch of one
      const int64_t one_example =
          std::min(cost_off ? cost_off->at(one) : kDoesNotFit, cost_on ? cost_on->at(one) : kDoesNotFit);
      const auto fits_window = [&](int64_t n) {
        const WindowPeak at_n{plan.static_bytes, cache->held(n, (n + r.world_size - 1) / r.world_size),
                              cache->loss_transient(n), step.transient};
        return at_n.at(one_example) <= usable;
      };
      int64_t window = r.world_size - 1, above = r.global_batch;  // fits (or none does) / does not
      while (above - window > 1) {
        const int64_t mid = window + (above - window) / 2;
        (fits_window(mid) ? window : above) = mid;
      }
      throw ConfigError(fmt::format(
          "memory budget {} cannot hold the window loss's cache for a global batch of {} ({} of representations, "
          "their gradients and the window's inputs, {} for the loss over the window) beside a micro-batch: {}",
          budget, r.global_batch, format_bytes(plan.window_cache_bytes), format_bytes(plan.window_loss_bytes),
          window >= r.world_size
              ? fmt::format("a global batch of {} fits, or give a budget of {}", window, format_bytes(plan.min_budget))
              : fmt::format("the smallest budget that works is {}", format_bytes(plan.min_budget))));
    }
    throw ConfigError(
        fmt::format("memory budget {} cannot hold one micro-batch: the smallest budget that works is {}{}", budget,
                    format_bytes(plan.min_budget), modes));
  }

  // The largest micro-batch the fit allows, or the user's; then measured at that size.
  const ActivationCost& c = plan.activations;
  int64_t x = std::clamp<int64_t>(
      (usable - plan.static_bytes - peak.held - c.fixed) / std::max<int64_t>(c.per_example, 1), one, cap_units);
  const std::optional<int64_t> asked = tokens ? r.tokens : r.micro_batch;
  if (asked) {
    const int64_t want = tokens ? *asked : std::min(*asked, cap);
    if (!fits(c, want)) {
      throw ConfigError(fmt::format(
          "{} needs about {} of tensor memory, over the budget of {}: the largest that fits is {} (or leave it out "
          "and let the planner choose)",
          unit_name(*asked), format_bytes(peak.at(c.at(want))), budget,
          tokens ? fmt::format("tokens:{}", x) : std::to_string(x)));
    }
    x = want;
  }
  // Examples the confirming probe runs: x of them, or with a token budget the rows of the longest
  // sequence that x positions hold.
  const auto probe_size = [&](int64_t units) { return tokens ? std::clamp<int64_t>(units / one, 1, cap) : units; };
  if (plan.checkpointing) toggle(true);
  for (int attempt = 0;; ++attempt) {
    const ActivationProbe measured = probe_activations(p, probe_size(x));
    plan.probed_peak = measured.bytes >= kDoesNotFit ? kDoesNotFit : peak.at(measured.bytes);
    if (peak.at(measured.bytes) <= usable) break;
    if (asked || x == one || attempt == 4) {
      if (plan.checkpointing) toggle(false);
      throw ConfigError(fmt::format(
          "{} measured {} of tensor memory, over the budget of {}{}",
          tokens ? unit_name(x) : fmt::format("micro-batch {}", x),
          measured.bytes >= kDoesNotFit ? std::string("out of memory") : format_bytes(plan.probed_peak), budget,
          x == one
              ? fmt::format(": the smallest budget that works is about {}", format_bytes(budget_for(plan.probed_peak)))
              : fmt::format(": give a smaller {}, or a larger budget", tokens ? "token budget" : "micro_batch")));
    }
    // The measurement says the fit was low at this size: scale down by what was seen.
    const int64_t seen = tokens ? std::max<int64_t>(measured.positions, 1) : x;
    const int64_t per_seen = std::max<int64_t>((measured.bytes - c.fixed) / seen, c.per_example);
    x = std::clamp<int64_t>((usable - plan.static_bytes - peak.held - c.fixed) / per_seen, one, x - 1);
  }
  plan.micro_batch = probe_size(x);
  plan.micro_batch_tokens = tokens ? x : 0;
  // A token-budget micro-batch holds at least ⌊x / one⌋ sequences (each row is at most `one` wide),
  // so a share needs at most this many.
  plan.accumulation_steps = (share + plan.micro_batch - 1) / plan.micro_batch;
  plan.predicted_peak = peak.at(c.at(x));
  return plan;
}

}  // namespace gradacc
