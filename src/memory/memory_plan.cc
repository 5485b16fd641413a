// plan_memory(): measure the static part, the optimizer step and the activations, then pick the
// largest micro-batch that fits (see memory_plan.h for the model of a window's peak).
#include "memory/planner.h"

#include <algorithm>
#include <limits>

#include <ATen/Context.h>
#include <ATen/core/Generator.h>
#include <c10/util/Exception.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <nlohmann/json.hpp>

#include "base/parse.h"
#include "gradacc/device.h"
#include "gradacc/errors.h"
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
      loss = p.loss(p.model.forward(batch), batch);
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

int64_t peak_of(int64_t static_bytes, int64_t activations, int64_t step) {
  return static_bytes + std::max(activations, step);
}

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
    plan.min_budget_without_checkpointing = budget_for(peak_of(plan.static_bytes, cost_off->at(one), step.transient));
  }
  if (can_checkpoint && r.checkpointing.value_or(true)) {
    toggle(true);
    cost_on = fit_activations(p, cap, tokens);
    toggle(false);
    plan.min_budget_with_checkpointing = budget_for(peak_of(plan.static_bytes, cost_on->at(one), step.transient));
  }
  const auto fits = [&](const ActivationCost& c, int64_t x) {
    return peak_of(plan.static_bytes, c.at(x), step.transient) <= usable;
  };
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
    throw ConfigError(
        fmt::format("memory budget {} cannot hold one micro-batch: the smallest budget that works is {}{}", budget,
                    format_bytes(plan.min_budget), modes));
  }

  // The largest micro-batch the fit allows, or the user's; then measured at that size.
  const ActivationCost& c = plan.activations;
  int64_t x =
      std::clamp<int64_t>((usable - plan.static_bytes - c.fixed) / std::max<int64_t>(c.per_example, 1), one, cap_units);
  const std::optional<int64_t> asked = tokens ? r.tokens : r.micro_batch;
  if (asked) {
    const int64_t want = tokens ? *asked : std::min(*asked, cap);
    if (!fits(c, want)) {
      throw ConfigError(fmt::format(
          "{} needs about {} of tensor memory, over the budget of {}: the largest that fits is {} (or leave it out "
          "and let the planner choose)",
          unit_name(*asked), format_bytes(peak_of(plan.static_bytes, c.at(want), step.transient)), budget,
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
    plan.probed_peak = measured.bytes >= kDoesNotFit ? kDoesNotFit : plan.static_bytes + measured.bytes;
    if (peak_of(plan.static_bytes, measured.bytes, step.transient) <= usable) break;
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
    x = std::clamp<int64_t>((usable - plan.static_bytes - c.fixed) / per_seen, one, x - 1);
  }
  plan.micro_batch = probe_size(x);
  plan.micro_batch_tokens = tokens ? x : 0;
  // A token-budget micro-batch holds at least ⌊x / one⌋ sequences (each row is at most `one` wide),
  // so a share needs at most this many.
  plan.accumulation_steps = (share + plan.micro_batch - 1) / plan.micro_batch;
  plan.predicted_peak = peak_of(plan.static_bytes, c.at(x), step.transient);
  return plan;
}

std::string MemoryPlan::describe() const {
  std::string s;
  s += fmt::format("memory budget            {}\n", format_bytes(budget_bytes));
  if (micro_batch_tokens > 0) {
    s += fmt::format("micro-batches            of at most {} tokens (rows × longest row): tokens:{}\n",
                     micro_batch_tokens, micro_batch_tokens);
    s += fmt::format("accumulation steps       at most {} ({} longest sequences per micro-batch)\n", accumulation_steps,
                     micro_batch);
  } else {
    s += fmt::format("micro-batch              {}\n", micro_batch);
    s += fmt::format("accumulation steps       {}\n", accumulation_steps);
  }
  s += fmt::format("activation checkpointing {}\n", checkpointing ? "on (blocks)" : "off");
  s += fmt::format("predicted peak           {}\n", format_bytes(predicted_peak));
  s += fmt::format("measured at micro-batch  {}\n", format_bytes(probed_peak));
  s += fmt::format("static part (measured)   {} (optimizer state {})\n", format_bytes(static_bytes),
                   optimizer_state_bytes > 0 ? format_bytes(optimizer_state_bytes) : std::string("in it"));
  s += fmt::format("activations              {} + {} per {} (longest: {} items)\n", format_bytes(activations.fixed),
                   format_bytes(activations.per_example), micro_batch_tokens > 0 ? "token" : "example",
                   probe_examples_items);
  s += fmt::format("smallest budget          {}", format_bytes(min_budget));
  if (min_budget_without_checkpointing > 0)
    s += fmt::format("; {} without checkpointing", format_bytes(min_budget_without_checkpointing));
  if (min_budget_with_checkpointing) s += fmt::format(", {} with", format_bytes(*min_budget_with_checkpointing));
  s += "\n";
  for (const ZeroStageCost& z : zero_stages) {
    if (z.stage == 3) {
      s += fmt::format(
          "ZeRO-3, {:<17}peak {} ({}{}), {} of parameters gathered and {} of gradient reduced per window\n",
          z.accumulate_unsharded    ? "kept for window"
          : z.reshard_after_forward ? "resharding"
                                    : "kept to backward",
          format_bytes(z.predicted_peak), z.measured ? "measured" : "estimated", z.fits ? "" : ", over the budget",
          format_bytes(z.parameter_bytes_gathered), format_bytes(z.gradient_bytes_moved));
      continue;
    }
    s += fmt::format("ZeRO-{}                   peak {} ({}{}), {} of gradient reduced per window{}\n", z.stage,
                     format_bytes(z.predicted_peak), z.measured ? "planned" : "estimated",
                     z.fits ? "" : ", over the budget", format_bytes(z.gradient_bytes_moved),
                     z.stage == 1 ? " (one reduce-scatter)" : " (every micro-batch's)");
  }
  if (zero_stage > 0)
    s += fmt::format("ZeRO stage               {}{}\n", zero_stage, zero_choice.empty() ? "" : ": " + zero_choice);
  return s;
}

std::string MemoryPlan::json() const {
  nlohmann::json j = {{"budget_bytes", budget_bytes},
                      {"micro_batch", micro_batch},
                      {"accumulation_steps", accumulation_steps},
                      {"activation_checkpointing", checkpointing ? "blocks" : "off"},
                      {"predicted_peak_bytes", predicted_peak},
                      {"probed_peak_bytes", probed_peak},
                      {"static_bytes", static_bytes},
                      {"optimizer_state_bytes", optimizer_state_bytes},
                      {"step_bytes", step_bytes},
                      {"activation_fixed_bytes", activations.fixed},
                      {"activation_bytes_per_example", activations.per_example},
                      {"probe_example_items", probe_examples_items},
                      {"probe_example_positions", probe_example_positions},
                      {"min_budget_bytes", min_budget},
                      {"min_budget_without_checkpointing_bytes", min_budget_without_checkpointing}};
  j["micro_batch_tokens"] = micro_batch_tokens > 0 ? nlohmann::json(micro_batch_tokens) : nlohmann::json(nullptr);
  if (micro_batch_tokens > 0) {  // the fit counts positions, not examples
    j.erase("activation_bytes_per_example");
    j["activation_bytes_per_token"] = activations.per_example;
  }
  j["min_budget_with_checkpointing_bytes"] =
      min_budget_with_checkpointing ? nlohmann::json(*min_budget_with_checkpointing) : nlohmann::json(nullptr);
  if (zero_stage > 0) {
    nlohmann::json stages = nlohmann::json::array();
    for (const ZeroStageCost& z : zero_stages) {
      stages.push_back({{"stage", z.stage},
                        {"predicted_peak_bytes", z.predicted_peak},
                        {"measured", z.measured},
                        {"fits", z.fits},
                        {"gradient_bytes_moved_per_window", z.gradient_bytes_moved}});
      if (z.stage == 3) {
        stages.back()["reshard_after_forward"] = z.reshard_after_forward;
        stages.back()["accumulate_unsharded"] = z.accumulate_unsharded;
        stages.back()["parameter_bytes_gathered_per_window"] = z.parameter_bytes_gathered;
      }
    }
    j["zero"] = {{"stage", zero_stage}, {"choice", zero_choice}, {"stages", stages}};
  }
  return j.dump();
}

}  // namespace gradacc
