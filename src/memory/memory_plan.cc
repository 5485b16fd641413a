// plan_memory(): measure the static part, the optimizer step and the activations, then pick the
// largest micro-batch that fits (see memory_plan.h for the model of a window's peak).
#include "gradacc/memory/memory_plan.h"

#include <algorithm>
#include <limits>

#include <ATen/Context.h>
#include <ATen/core/Generator.h>
#include <c10/util/Exception.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <nlohmann/json.hpp>

#include "gradacc/device/device.h"
#include "gradacc/errors.h"
#include "gradacc/optim/fused_adamw.h"
#include "gradacc/util/parse.h"

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

// The peak above what is live during one micro-batch of the m largest examples: the batch, the
// forward's activations, the backward. The window is discarded afterwards.
int64_t probe_activations(const MemoryProbe& p, int64_t m) {
  const std::vector<int64_t> indices = p.data.largest_examples(m);
  const int64_t before = live_bytes(p.device);
  reset_memory_peak(p.device);
  try {
    const Batch batch = p.data.gather(indices).to(p.device);
    at::Tensor loss;
    {
      AutocastGuard autocast(p.device.type(), p.precision);
      loss = p.loss(p.model.forward(batch), batch);
    }
    p.accumulator.accumulate(loss, batch.samples, batch.items);
  } catch (const c10::OutOfMemoryError&) {
    p.accumulator.discard_window();
    return kDoesNotFit;
  }
  const int64_t peak = memory_reading(p.device).peak_bytes - before;
  p.accumulator.discard_window();
  return std::max<int64_t>(peak, 0);
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

ActivationCost fit_activations(const MemoryProbe& p, int64_t cap) {
  const int64_t m1 = 1, m2 = std::min<int64_t>(4, cap);
  const int64_t a1 = probe_activations(p, m1);
  if (m2 == m1 || a1 >= kDoesNotFit) return {0, a1};
  const int64_t a2 = probe_activations(p, m2);
  if (a2 >= kDoesNotFit) return {0, a2 / m2};
  ActivationCost c;
  c.per_example = std::max<int64_t>((a2 - a1 + (m2 - m1) - 1) / (m2 - m1), 1);
  c.fixed = std::max<int64_t>(a1 - c.per_example * m1, 0);
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
    throw ConfigError(
        fmt::format("memory budget {} is below the static need of {} (parameters, gradient buffer, optimizer state and "
                    "master weights): the smallest budget that could work is {}",
                    budget, format_bytes(plan.static_bytes), format_bytes(budget_for(plan.static_bytes + 1))));
  }
  plan.probe_examples_items = p.data.gather(p.data.largest_examples(1)).items;

  // Each checkpointing mode the model offers: its activation cost and the budget micro-batch 1 needs.
  const auto& toggle = p.model.set_activation_checkpointing;
  const bool can_checkpoint = toggle && toggle(true);
  if (toggle) toggle(false);
  if (r.checkpointing.value_or(false) && !can_checkpoint) {
    throw ConfigError("activation checkpointing: this model has no blocks to checkpoint");
  }
  std::optional<ActivationCost> cost_off, cost_on;
  if (!r.checkpointing.has_value() || !*r.checkpointing) {
    cost_off = fit_activations(p, cap);
    plan.min_budget_without_checkpointing = budget_for(peak_of(plan.static_bytes, cost_off->at(1), step.transient));
  }
  if (can_checkpoint && r.checkpointing.value_or(true)) {
    toggle(true);
    cost_on = fit_activations(p, cap);
    toggle(false);
    plan.min_budget_with_checkpointing = budget_for(peak_of(plan.static_bytes, cost_on->at(1), step.transient));
  }
  const auto fits = [&](const ActivationCost& c, int64_t m) {
    return peak_of(plan.static_bytes, c.at(m), step.transient) <= usable;
  };
  // Checkpointing only when no micro-batch fits without it, and it makes one fit.
  const bool use_checkpointing = !cost_off || (!fits(*cost_off, 1) && cost_on && fits(*cost_on, 1));
  plan.checkpointing = use_checkpointing;
  plan.activations = use_checkpointing ? *cost_on : *cost_off;
  plan.min_budget = use_checkpointing ? *plan.min_budget_with_checkpointing : plan.min_budget_without_checkpointing;
  if (!fits(plan.activations, 1)) {
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
  int64_t m = std::clamp<int64_t>((usable - plan.static_bytes - c.fixed) / std::max<int64_t>(c.per_example, 1), 1, cap);
  if (r.micro_batch) {
    const int64_t asked = std::min(*r.micro_batch, cap);
    if (!fits(c, asked)) {
      throw ConfigError(fmt::format(
          "micro_batch {} needs about {} of tensor memory, over the budget of {}: the largest micro-batch that fits is "
          "{} (or leave micro_batch out and let the planner choose)",
          *r.micro_batch, format_bytes(peak_of(plan.static_bytes, c.at(asked), step.transient)), budget, m));
    }
    m = asked;
  }
  if (plan.checkpointing) toggle(true);
  for (int attempt = 0;; ++attempt) {
    const int64_t measured = probe_activations(p, m);
    plan.probed_peak = measured >= kDoesNotFit ? kDoesNotFit : plan.static_bytes + measured;
    if (peak_of(plan.static_bytes, measured, step.transient) <= usable) break;
    if (r.micro_batch || m == 1 || attempt == 4) {
      if (plan.checkpointing) toggle(false);
      throw ConfigError(fmt::format(
          "micro-batch {} measured {} of tensor memory, over the budget of {}{}", m,
          measured >= kDoesNotFit ? std::string("out of memory") : format_bytes(plan.probed_peak), budget,
          m == 1
              ? fmt::format(": the smallest budget that works is about {}", format_bytes(budget_for(plan.probed_peak)))
              : ": give a smaller micro_batch, or a larger budget"));
    }
    // The measurement says the fit was low at this size: scale down by what was seen.
    const int64_t per_seen = std::max<int64_t>((measured - c.fixed) / m, c.per_example);
    m = std::clamp<int64_t>((usable - plan.static_bytes - c.fixed) / per_seen, 1, m - 1);
  }
  plan.micro_batch = m;
  plan.accumulation_steps = (share + m - 1) / m;
  plan.predicted_peak = peak_of(plan.static_bytes, c.at(m), step.transient);
  return plan;
}

std::string MemoryPlan::describe() const {
  std::string s;
  s += fmt::format("memory budget            {}\n", format_bytes(budget_bytes));
  s += fmt::format("micro-batch              {}\n", micro_batch);
  s += fmt::format("accumulation steps       {}\n", accumulation_steps);
  s += fmt::format("activation checkpointing {}\n", checkpointing ? "on (blocks)" : "off");
  s += fmt::format("predicted peak           {}\n", format_bytes(predicted_peak));
  s += fmt::format("measured at micro-batch  {}\n", format_bytes(probed_peak));
  s += fmt::format("static part (measured)   {} (optimizer state {})\n", format_bytes(static_bytes),
                   optimizer_state_bytes > 0 ? format_bytes(optimizer_state_bytes) : std::string("in it"));
  s += fmt::format("activations              {} + {} per example (longest: {} items)\n",
                   format_bytes(activations.fixed), format_bytes(activations.per_example), probe_examples_items);
  s += fmt::format("smallest budget          {}", format_bytes(min_budget));
  if (min_budget_without_checkpointing > 0)
    s += fmt::format("; {} without checkpointing", format_bytes(min_budget_without_checkpointing));
  if (min_budget_with_checkpointing) s += fmt::format(", {} with", format_bytes(*min_budget_with_checkpointing));
  return s + "\n";
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
                      {"min_budget_bytes", min_budget},
                      {"min_budget_without_checkpointing_bytes", min_budget_without_checkpointing}};
  j["min_budget_with_checkpointing_bytes"] =
      min_budget_with_checkpointing ? nlohmann::json(*min_budget_with_checkpointing) : nlohmann::json(nullptr);
  return j.dump();
}

}  // namespace gradacc
