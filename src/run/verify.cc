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

// One of the two runs: its own model, optimizer, schedule and accumulator, same seed and data.
std::vector<StepReport> run_one(const TrainConfig& c, const RunSetup& setup, const BatchPlan& plan, const Dataset& data,
                                int64_t steps, std::shared_ptr<Network>& model_out) {
  auto model = make_seeded_model(c, data.num_classes());
  model->to(setup.device);
  auto optimizer = make_optimizer(model->parameters(), c.optimizer);
  LrScheduleOptions so = setup.schedule;
  const LrSchedule schedule(so);
  AccumulatorOptions ao = setup.accumulator;
  ao.nominal_count = plan.global_batch;
  Accumulator accumulator(*model, *optimizer, &schedule, ao);
  const WindowSampler sampler(data.size(), plan, setup.sampler);
  LoopPosition pos;
  auto reports = train_steps(*model, accumulator, data, sampler, steps, setup.device, pos);
  model_out = model;
  return reports;
}

}  // namespace

VerifyResult run_verify(const TrainConfig& c, const VerifyOptions& o) {
  if (o.steps < 1) throw ConfigError(fmt::format("verify needs ≥ 1 step, got {}", o.steps));
  if (c.threads > 0) at::set_num_threads(c.threads);
  const Workload work = load_workload(c);
  RunSetup setup = make_run_setup(c, *work.train);
  setup.schedule.total_steps = std::max(setup.schedule.total_steps, o.steps);

  VerifyResult r;
  r.accumulated_plan = setup.plan;
  r.full_plan = setup.plan;
  r.full_plan.micro_batch = setup.plan.rank_batch();
  r.full_plan.accumulation_steps = 1;

  // The starting weights, to measure how far training moved them.
  TensorMap initial;
  {
    auto m = make_seeded_model(c, work.train->num_classes());
    for (const auto& [name, t] : module_state(*m)) initial.emplace(name, t.to(at::kDouble));
  }
  std::shared_ptr<Network> full_model, acc_model;
  const auto full = run_one(c, setup, r.full_plan, *work.train, o.steps, full_model);
  const auto acc = run_one(c, setup, r.accumulated_plan, *work.train, o.steps, acc_model);

  for (size_t i = 0; i < full.size(); ++i) {
    r.full_loss.push_back(full[i].loss);
    r.accumulated_loss.push_back(acc[i].loss);
    const double rel = std::abs(full[i].loss - acc[i].loss) / std::max(std::abs(full[i].loss), 1e-12);
    r.rel_loss_diff.push_back(rel);
    r.max_rel_loss_diff = std::max(r.max_rel_loss_diff, rel);
  }
  const TensorMap a = module_state(*full_model), b = module_state(*acc_model);
  for (const auto& [name, t] : a) {
    if (!at::isFloatingType(t.scalar_type())) continue;  // counters such as num_batches_tracked
    const at::Tensor w = t.to(at::kCPU, at::kDouble);
    r.max_weight_movement = std::max(r.max_weight_movement, (w - initial.at(name)).abs().max().item<double>());
    const double d = (w - b.at(name).to(at::kCPU, at::kDouble)).abs().max().item<double>();
    if (r.worst_tensor.empty() || d > r.max_abs_weight_diff) {
      r.max_abs_weight_diff = d;
      r.worst_tensor = name;
    }
  }
  r.max_rel_weight_diff = r.max_abs_weight_diff / std::max(r.max_weight_movement, 1e-30);
  r.pass = r.max_rel_weight_diff <= o.weight_tolerance && r.max_rel_loss_diff <= o.loss_tolerance;
  if (!r.pass && c.model.name == "cnn" && c.model.norm == NormKind::kBatch && setup.plan.accumulation_steps > 1) {
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
  if (!r.explanation.empty()) j["explanation"] = r.explanation;
  return j.dump();
}

std::string verify_text(const VerifyResult& r, const VerifyOptions& o) {
  std::string s = fmt::format("full batch:  {}\naccumulated: {}\n", describe(r.full_plan), describe(r.accumulated_plan));
  s += fmt::format("{:>5}  {:>14}  {:>14}  {:>10}\n", "step", "full loss", "accum loss", "rel diff");
  for (size_t i = 0; i < r.full_loss.size(); ++i) {
    s += fmt::format("{:>5}  {:>14.8f}  {:>14.8f}  {:>10.2e}\n", i + 1, r.full_loss[i], r.accumulated_loss[i], r.rel_loss_diff[i]);
  }
  s += fmt::format("max |Δweight| = {:.3e} (in {}), {:.3e} of the largest distance a weight moved ({:.3e}; tolerance {:.0e})\n",
                   r.max_abs_weight_diff, r.worst_tensor, r.max_rel_weight_diff, r.max_weight_movement, o.weight_tolerance);
  s += fmt::format("max relative loss difference = {:.3e} (tolerance {:.0e})\n", r.max_rel_loss_diff, o.loss_tolerance);
  s += r.pass ? "PASS: accumulated training matches full-batch training\n"
              : "FAIL: accumulated training differs from full-batch training\n";
  if (!r.explanation.empty()) s += "why: " + r.explanation + "\n";
  return s;
}

}  // namespace gradacc
