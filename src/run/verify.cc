#include "gradacc/run/verify.h"

#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <ATen/Parallel.h>

#include "gradacc/io/safetensors.h"
#include "gradacc/optim/optimizer.h"
#include "gradacc/run/trainer.h"

namespace gradacc {
namespace {

// One run: its own model, optimizer, schedule and accumulator; same seed and data as the others.
std::vector<StepReport> run_one(const TrainConfig& c, const RunSetup& setup, const BatchPlan& plan, const Dataset& data,
                                int64_t steps, Normalization normalization, std::shared_ptr<Network>& model_out) {
  AccumulatorOptions ao = setup.accumulator;
  ao.normalization = normalization;
  // The naive scheme divides each micro-batch mean by the number of micro-batches.
  ao.nominal_count = normalization == Normalization::kNaiveMicroMean ? plan.accumulation_steps : plan.global_batch;
  TrainingStack stack = make_training_stack(c, setup, data.num_classes(), ao);
  const WindowSampler sampler(data.size(), plan, setup.sampler);
  LoopPosition pos;
  auto reports = train_steps(*stack.model, *stack.accumulator, data, sampler, steps, setup.device, pos, {}, nullptr,
                             setup.precision);
  model_out = stack.model;
  return reports;
}

struct Difference {
  std::vector<double> loss, rel_loss;
  double max_rel_loss = 0.0, max_abs_weight = 0.0, movement = 0.0, max_rel_weight = 0.0;
  std::string worst_tensor;
};

// How far run b strayed from the reference run a (weights compared over floating-point tensors).
Difference compare(const std::vector<StepReport>& a, const Network& a_model, const std::vector<StepReport>& b,
                   const Network& b_model, const TensorMap& initial) {
  Difference d;
  for (size_t i = 0; i < a.size(); ++i) {
    const double rel = std::abs(a[i].loss - b[i].loss) / std::max(std::abs(a[i].loss), 1e-12);
    d.loss.push_back(b[i].loss);
    d.rel_loss.push_back(rel);
    d.max_rel_loss = std::max(d.max_rel_loss, rel);
  }
  const TensorMap sa = module_state(a_model), sb = module_state(b_model);
  for (const auto& [name, t] : sa) {
    if (!at::isFloatingType(t.scalar_type())) continue;  // counters such as num_batches_tracked
    const at::Tensor w = t.to(at::kCPU, at::kDouble);
    d.movement = std::max(d.movement, (w - initial.at(name)).abs().max().item<double>());
    const double diff = (w - sb.at(name).to(at::kCPU, at::kDouble)).abs().max().item<double>();
    if (d.worst_tensor.empty() || diff > d.max_abs_weight) {
      d.max_abs_weight = diff;
      d.worst_tensor = name;
    }
  }
  d.max_rel_weight = d.max_abs_weight / std::max(d.movement, 1e-30);
  return d;
}

}  // namespace

VerifyResult run_verify(const TrainConfig& c, const VerifyOptions& o) {
  if (o.steps < 1) throw ConfigError(fmt::format("verify needs ≥ 1 step, got {}", o.steps));
  if (!c.accum_schedule.empty()) throw ConfigError("verify compares fixed plans; drop --accum-schedule");
  if (c.threads > 0) at::set_num_threads(c.threads);
  const Workload work = load_workload(c);
  RunSetup setup = make_run_setup(c, *work.train, work.text);
  setup.schedule.total_steps = std::max(setup.schedule.total_steps, o.steps);

  VerifyResult r;
  r.accumulated_plan = setup.plan;
  r.full_plan = setup.plan;
  r.full_plan.micro_batch = setup.plan.rank_batch();
  r.full_plan.accumulation_steps = 1;

  TensorMap initial;  // the starting weights, to measure how far training moved them
  for (const auto& [name, t] : module_state(*make_seeded_model(c, work.train->num_classes()))) {
    initial.emplace(name, t.to(at::kDouble));
  }
  const Normalization ours = setup.accumulator.normalization;
  std::shared_ptr<Network> full_model, acc_model;
  const auto full = run_one(c, setup, r.full_plan, *work.train, o.steps, ours, full_model);
  const auto acc = run_one(c, setup, r.accumulated_plan, *work.train, o.steps, ours, acc_model);
  for (const auto& s : full) r.full_loss.push_back(s.loss);
  const Difference d = compare(full, *full_model, acc, *acc_model, initial);
  r.accumulated_loss = d.loss;
  r.rel_loss_diff = d.rel_loss;
  r.max_rel_loss_diff = d.max_rel_loss;
  r.max_abs_weight_diff = d.max_abs_weight;
  r.max_weight_movement = d.movement;
  r.max_rel_weight_diff = d.max_rel_weight;
  r.worst_tensor = d.worst_tensor;
  r.pass = r.max_rel_weight_diff <= o.weight_tolerance && r.max_rel_loss_diff <= o.loss_tolerance;

  if (ours == Normalization::kPerItem) {  // show what the naive scheme would have done
    std::shared_ptr<Network> naive_model;
    const auto naive = run_one(c, setup, r.accumulated_plan, *work.train, o.steps, Normalization::kNaiveMicroMean, naive_model);
    const Difference n = compare(full, *full_model, naive, *naive_model, initial);
    r.has_naive = true;
    r.naive_loss = n.loss;
    r.naive_max_rel_loss_diff = n.max_rel_loss;
    r.naive_max_abs_weight_diff = n.max_abs_weight;
    r.naive_max_rel_weight_diff = n.max_rel_weight;
  }

  if (!r.pass && c.model.name == "cnn" && c.model.resolved_norm() == NormKind::kBatch && setup.plan.accumulation_steps > 1) {
    r.explanation = fmt::format(
        "BatchNorm normalizes each micro-batch of {} with its own mean and variance, while the full batch uses "
        "statistics of all {}: the forward pass itself differs, so no loss scaling can make the gradients equal "
        "(its running statistics also update {}× per step). Use --norm group or --norm layer, which normalize "
        "each example on its own and accumulate exactly.",
        setup.plan.micro_batch, r.full_plan.micro_batch, setup.plan.accumulation_steps);
  }
  return r;
}

std::string verify_json(const VerifyResult& r, const VerifyOptions& o) {
  nlohmann::ordered_json j;
  j["pass"] = r.pass;
  j["steps"] = static_cast<int64_t>(r.full_loss.size());
  j["max_abs_weight_diff"] = r.max_abs_weight_diff;
  j["max_rel_weight_diff"] = r.max_rel_weight_diff;
  j["max_weight_movement"] = r.max_weight_movement;
  j["max_rel_loss_diff"] = r.max_rel_loss_diff;
  j["weight_tolerance"] = o.weight_tolerance;
  j["loss_tolerance"] = o.loss_tolerance;
  j["worst_tensor"] = r.worst_tensor;
  j["full_plan"] = describe(r.full_plan);
  j["accumulated_plan"] = describe(r.accumulated_plan);
  j["full_loss"] = r.full_loss;
  j["accumulated_loss"] = r.accumulated_loss;
  j["rel_loss_diff"] = r.rel_loss_diff;
  if (r.has_naive) {
    j["naive_max_abs_weight_diff"] = r.naive_max_abs_weight_diff;
    j["naive_max_rel_weight_diff"] = r.naive_max_rel_weight_diff;
    j["naive_max_rel_loss_diff"] = r.naive_max_rel_loss_diff;
    j["naive_loss"] = r.naive_loss;
  }
  if (!r.explanation.empty()) j["explanation"] = r.explanation;
  return j.dump();
}

std::string verify_text(const VerifyResult& r, const VerifyOptions& o) {
  std::string s = fmt::format("full batch:  {}\naccumulated: {}\n", describe(r.full_plan), describe(r.accumulated_plan));
  s += fmt::format("{:>5}  {:>14}  {:>14}  {:>10}", "step", "full loss", "accum loss", "rel diff");
  s += r.has_naive ? fmt::format("  {:>14}\n", "naive loss") : "\n";
  for (size_t i = 0; i < r.full_loss.size(); ++i) {
    s += fmt::format("{:>5}  {:>14.8f}  {:>14.8f}  {:>10.2e}", i + 1, r.full_loss[i], r.accumulated_loss[i], r.rel_loss_diff[i]);
    s += r.has_naive ? fmt::format("  {:>14.8f}\n", r.naive_loss[i]) : "\n";
  }
  s += fmt::format("max |Δweight| = {:.3e} (in {}), {:.3e} of the largest distance a weight moved ({:.3e}; tolerance {:.0e})\n",
                   r.max_abs_weight_diff, r.worst_tensor, r.max_rel_weight_diff, r.max_weight_movement, o.weight_tolerance);
  s += fmt::format("max relative loss difference = {:.3e} (tolerance {:.0e})\n", r.max_rel_loss_diff, o.loss_tolerance);
  if (r.has_naive) {
    s += fmt::format("naive scheme (micro-batch mean / accumulation steps): max |Δweight| = {:.3e} ({:.3e} relative), "
                     "max relative loss difference = {:.3e}\n",
                     r.naive_max_abs_weight_diff, r.naive_max_rel_weight_diff, r.naive_max_rel_loss_diff);
  }
  s += r.pass ? "PASS: accumulated training matches full-batch training\n"
              : "FAIL: accumulated training differs from full-batch training\n";
  if (!r.explanation.empty()) s += "why: " + r.explanation + "\n";
  return s;
}

}  // namespace gradacc
