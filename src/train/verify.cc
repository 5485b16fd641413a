#include "gradacc/verify.h"

#include <algorithm>
#include <cmath>

#include <ATen/ops/equal.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <nlohmann/json.hpp>

#include "accumulate/accumulator.h"
#include "gradacc/device.h"
#include "gradacc/errors.h"
#include "gradacc/safetensors.h"
#include "gradacc/trainer.h"
#include "train/run_plan.h"
#include "train/verify_runs.h"

namespace gradacc {
namespace {

// Which of verify's runs: the full-batch reference, the accumulated run, or the naive scheme's.
enum class Scheme { kReference, kAccumulated, kNaive };

// Builds and runs one trainer with these options. With `capture`, one window whose gradient the
// optimizer records instead of stepping (verify_runs.h). `micro_batch`: the accumulated run's.
struct RunRequest {
  const TrainOptions& options;
  Scheme scheme;
  int64_t micro_batch = 0;
  std::shared_ptr<std::vector<at::Tensor>> capture;
};
using RunFn = std::function<VerifyRun(const RunRequest& request)>;

struct Difference {
  std::vector<double> loss, rel_loss;
  double max_rel_loss = 0.0, max_abs_weight = 0.0, movement = 0.0, max_rel_weight = 0.0;
  std::string worst_tensor;
};

// Whether one training-mode forward of `model` on two examples moves the default CPU generator
// (dropout): then a batch and its micro-batches draw different masks. The generator is put back.
bool draws_random_numbers(const Model& model, const Dataset& data) {
  if (data.size() < 1 || !model.forward) return false;
  const at::Tensor before = generator_state(at::Device(at::kCPU));
  bool moved = false;
  try {
    torch::NoGradGuard no_grad;
    model.module->train();
    model.forward(data.gather({0, std::min<int64_t>(1, data.size() - 1)}));
    moved = !at::equal(before, generator_state(at::Device(at::kCPU)));
  } catch (const std::exception&) {
    moved = false;  // a model that cannot run here says nothing either way
  }
  set_generator_state(at::Device(at::kCPU), before);
  return moved;
}

// How far run b strayed from the reference run a (weights compared over floating-point tensors).
Difference compare(const VerifyRun& a, const VerifyRun& b, const TensorMap& initial) {
  Difference d;
  for (size_t i = 0; i < a.steps.size() && i < b.steps.size(); ++i) {
    const double rel = std::abs(a.steps[i].loss - b.steps[i].loss) / std::max(std::abs(a.steps[i].loss), 1e-12);
    d.loss.push_back(b.steps[i].loss);
    d.rel_loss.push_back(rel);
    d.max_rel_loss = std::max(d.max_rel_loss, rel);
  }
  const TensorMap sa = module_state(*a.model.module), sb = module_state(*b.model.module);
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

// The comparison itself, whatever the loss: the reference and accumulated runs (and the naive one
// when asked) through `run`, from the weights of `initial_model`.
VerifyResult verify_runs(const Model& initial_model, const Dataset& data, TrainOptions options, const VerifyOptions& o,
                         const RunFn& run, const std::string& naive_scheme) {
  if (o.steps < 1) throw ConfigError(fmt::format("verify needs ≥ 1 step, got {}", o.steps));
  if (!options.batch().accum_schedule().empty())
    throw ConfigError("verify compares fixed plans; drop the accumulation schedule");
  if (options.batch().accum_auto()) throw ConfigError("verify compares fixed plans; give a number to accum, not auto");
  if (!(o.weight_tolerance >= 0) || !(o.loss_tolerance >= 0)) throw ConfigError("verify tolerances must be ≥ 0");
  options.logging().log_path("").progress(false);
  options.checkpoint(CheckpointOptions());
  options.batch().normalization(Normalization::kPerItem);

  TensorMap initial;  // the starting weights, to measure how far training moved them
  for (const auto& [name, t] : module_state(*initial_model.module)) initial.emplace(name, t.to(at::kCPU, at::kDouble));

  // The accumulated run's plan decides the windows; the full-batch run takes each rank's window
  // in one micro-batch. A run shorter than K steps is lengthened, so the schedule reaches step K.
  const RunPlan plan = resolve_run(options, DistEnv::from_environment(), data.size());
  if (plan.total_steps < o.steps) options.data().steps(o.steps).epochs(std::nullopt);
  TrainOptions full = options;
  // The reference is the plain full batch: no memory budget, no activation checkpointing.
  full.batch()
      .global_batch(plan.batch.global_batch)
      .micro_batch((plan.batch.global_batch + plan.batch.world_size - 1) / plan.batch.world_size)
      .accumulation_steps(1)
      .micro_batch_tokens(std::nullopt);
  full.memory(MemoryOptions());

  VerifyResult r;
  // The accumulated run first: its micro-batch (a memory budget's, as planned) is what a window
  // loss's reference slices its encoder by.
  const VerifyRun accumulated = run({options, Scheme::kAccumulated, 0, nullptr});
  const int64_t micro = accumulated.plan.micro_batch;
  const VerifyRun reference = run({full, Scheme::kReference, micro, nullptr});
  // The first window's gradients, captured in place of a step: their relative L2 difference. The
  // capture runs take the accumulated run's micro-batch as planned: a budget planned again without
  // the optimizer's state could choose another (and, with dropout, other masks). A budget stays, so
  // an uneven micro-batch stays allowed, but one no run can reach: the micro-batch given is only
  // checked against it, and the capture's own memory is not what is verified.
  TrainOptions as_planned = options;
  if (options.memory().budget()) {
    as_planned.batch().accumulation_steps(std::nullopt);
    as_planned.memory().budget(int64_t{1} << 50);
    if (accumulated.micro_batch_tokens > 0)
      as_planned.batch().micro_batch_tokens(accumulated.micro_batch_tokens);
    else
      as_planned.batch().micro_batch(micro);
  }
  const auto captured = [&](const TrainOptions& t, Scheme scheme) {
    return run({t, scheme, micro, std::make_shared<std::vector<at::Tensor>>()}).gradient;
  };
  const std::vector<at::Tensor> full_gradient = captured(full, Scheme::kReference);
  r.grad_rel_l2 = relative_l2(full_gradient, captured(as_planned, Scheme::kAccumulated));
  r.full_plan = resolve_run(full, DistEnv::from_environment(), data.size()).batch;
  r.accumulated_plan = accumulated.plan;
  r.micro_batch_tokens = accumulated.micro_batch_tokens;
  for (const auto& s : reference.steps) r.full_loss.push_back(s.loss);
  const Difference d = compare(reference, accumulated, initial);
  r.accumulated_loss = d.loss;
  r.rel_loss_diff = d.rel_loss;
  r.max_rel_loss_diff = d.max_rel_loss;
  r.max_abs_weight_diff = d.max_abs_weight;
  r.max_weight_movement = d.movement;
  r.max_rel_weight_diff = d.max_rel_weight;
  r.worst_tensor = d.worst_tensor;
  r.pass = r.max_rel_weight_diff <= o.weight_tolerance && r.max_rel_loss_diff <= o.loss_tolerance;

  if (o.compare_naive) {  // show what the naive scheme would have done
    const VerifyRun n_run = run({options, Scheme::kNaive, micro, nullptr});
    r.naive_grad_rel_l2 = relative_l2(full_gradient, captured(as_planned, Scheme::kNaive));
    const Difference n = compare(reference, n_run, initial);
    r.has_naive = true;
    r.naive_scheme = naive_scheme;
    r.naive_loss = n.loss;
    r.naive_max_rel_loss_diff = n.max_rel_loss;
    r.naive_max_abs_weight_diff = n.max_abs_weight;
    r.naive_max_rel_weight_diff = n.max_rel_weight;
  }

  if (!r.pass) {
    const std::string bn = batchnorm_warning(*accumulated.model.module, accumulated.plan);
    if (!bn.empty()) {
      r.explanation = fmt::format(
          "BatchNorm normalizes each micro-batch of {} with its own mean and variance, while the full batch uses "
          "statistics of all {}: the forward pass itself differs, so no loss scaling can make the gradients equal "
          "(its running statistics also update {}× per step). Use GroupNorm or LayerNorm (--norm group or --norm "
          "layer), "
          "which normalize each example on its own and accumulate exactly.",
          accumulated.plan.micro_batch, r.full_plan.micro_batch, accumulated.plan.accumulation_steps);
    }
  }
  return r;
}

}  // namespace

VerifyResult verify_accumulation(const std::function<Model()>& make_model, const OptimizerFactory& make_optimizer,
                                 std::shared_ptr<const Dataset> data, TrainOptions options, const LossFn& loss,
                                 const VerifyOptions& o) {
  const RunFn run = [&](const RunRequest& q) {
    TrainOptions t = q.options;
    if (q.scheme == Scheme::kNaive) t.batch().normalization(Normalization::kNaiveMicroMean);
    Trainer trainer(make_model(), q.capture ? gradient_capture(q.capture) : make_optimizer, data, t, loss);
    return run_trainer(trainer, q.capture ? 1 : o.steps, q.capture);
  };
  VerifyResult r =
      verify_runs(make_model(), *data, std::move(options), o, run, "each micro-batch's mean / accumulation steps");
  if (!r.pass && r.explanation.empty() && draws_random_numbers(make_model(), *data)) {
    r.explanation = fmt::format(
        "the model draws random numbers in its forward (dropout, in training mode): one batch of {} draws other "
        "masks than micro-batches of {}, so the runs differ by their masks, not by the accumulation. Verify with "
        "dropout off (--dropout 0); a window loss (gradient caching) replays its masks, and verify compares those "
        "exactly.",
        r.full_plan.micro_batch, r.accumulated_plan.micro_batch);
  }
  return r;
}

VerifyResult verify_window_loss(const std::function<WindowModel()>& make, const OptimizerFactory& make_optimizer,
                                std::shared_ptr<const Dataset> data, TrainOptions options, const VerifyOptions& o) {
  const RunFn run = [&](const RunRequest& q) {
    WindowModel m = make();
    const OptimizerFactory optimizer = q.capture ? gradient_capture(q.capture) : make_optimizer;
    const int64_t steps = q.capture ? 1 : o.steps;
    if (q.scheme == Scheme::kNaive) {
      const PerMicroBatchLoss per_micro = per_micro_batch(std::move(m.loss));
      m.model.forward = per_micro.forward;
      Trainer trainer(std::move(m.model), optimizer, data, q.options, per_micro.loss);
      return run_trainer(trainer, steps, q.capture);
    }
    if (q.scheme == Scheme::kReference) m.loss = encoded_in_slices(std::move(m.loss), q.micro_batch);
    Trainer trainer(std::move(m.model), optimizer, data, q.options, std::move(m.loss));
    return run_trainer(trainer, steps, q.capture);
  };
  return verify_runs(make().model, *data, std::move(options), o, run,
                     "each micro-batch's loss over its own examples only");
}

namespace {

nlohmann::ordered_json finite_or_null(double x) { return std::isfinite(x) ? nlohmann::ordered_json(x) : nullptr; }

}  // namespace

std::string verify_json(const VerifyResult& r, const VerifyOptions& o) {
  nlohmann::ordered_json j;
  j["pass"] = r.pass;
  j["steps"] = static_cast<int64_t>(r.full_loss.size());
  j["max_abs_weight_diff"] = r.max_abs_weight_diff;
  j["max_rel_weight_diff"] = r.max_rel_weight_diff;
  j["max_weight_movement"] = r.max_weight_movement;
  j["grad_rel_l2"] = finite_or_null(r.grad_rel_l2);
  j["max_rel_loss_diff"] = r.max_rel_loss_diff;
  j["weight_tolerance"] = o.weight_tolerance;
  j["loss_tolerance"] = o.loss_tolerance;
  j["worst_tensor"] = r.worst_tensor;
  j["full_plan"] = describe(r.full_plan);
  j["accumulated_plan"] = describe(r.accumulated_plan);
  if (r.micro_batch_tokens > 0) j["micro_batching"] = fmt::format("tokens:{}", r.micro_batch_tokens);
  j["full_loss"] = r.full_loss;
  j["accumulated_loss"] = r.accumulated_loss;
  j["rel_loss_diff"] = r.rel_loss_diff;
  if (r.has_naive) {
    j["naive_scheme"] = r.naive_scheme;
    j["naive_grad_rel_l2"] = finite_or_null(r.naive_grad_rel_l2);
    j["naive_max_abs_weight_diff"] = r.naive_max_abs_weight_diff;
    j["naive_max_rel_weight_diff"] = r.naive_max_rel_weight_diff;
    j["naive_max_rel_loss_diff"] = r.naive_max_rel_loss_diff;
    j["naive_loss"] = r.naive_loss;
  }
  if (!r.explanation.empty()) j["explanation"] = r.explanation;
  return j.dump();
}

std::string verify_text(const VerifyResult& r, const VerifyOptions& o) {
  std::string s =
      fmt::format("full batch:  {}\naccumulated: {}\n", describe(r.full_plan),
                  r.micro_batch_tokens > 0 ? fmt::format("global_batch={} in micro-batches of at most {} tokens "
                                                         "(longest first) world_size={}",
                                                         r.accumulated_plan.global_batch, r.micro_batch_tokens,
                                                         r.accumulated_plan.world_size)
                                           : describe(r.accumulated_plan));
  s += fmt::format("{:>5}  {:>14}  {:>14}  {:>10}", "step", "full loss", "accum loss", "rel diff");
  s += r.has_naive ? fmt::format("  {:>14}\n", "naive loss") : "\n";
  for (size_t i = 0; i < r.full_loss.size(); ++i) {
    s += fmt::format("{:>5}  {:>14.8f}  {:>14.8f}  {:>10.2e}", i + 1, r.full_loss[i], r.accumulated_loss[i],
                     r.rel_loss_diff[i]);
    s += r.has_naive ? fmt::format("  {:>14.8f}\n", r.naive_loss[i]) : "\n";
  }
  s += fmt::format(
      "max |Δweight| = {:.3e} (in {}), {:.3e} of the largest distance a weight moved ({:.3e}; tolerance {:.0e})\n",
      r.max_abs_weight_diff, r.worst_tensor, r.max_rel_weight_diff, r.max_weight_movement, o.weight_tolerance);
  s += fmt::format("first window's gradient: ‖g_full − g_acc‖ / ‖g_full‖ = {:.3e}\n", r.grad_rel_l2);
  s += fmt::format("max relative loss difference = {:.3e} (tolerance {:.0e})\n", r.max_rel_loss_diff, o.loss_tolerance);
  if (r.has_naive) {
    s += fmt::format(
        "naive scheme ({}): max |Δweight| = {:.3e} ({:.3e} relative), max relative loss difference = {:.3e}, "
        "first window's gradient {:.3e} from the full batch's\n",
        r.naive_scheme, r.naive_max_abs_weight_diff, r.naive_max_rel_weight_diff, r.naive_max_rel_loss_diff,
        r.naive_grad_rel_l2);
  }
  s += r.pass ? "PASS: accumulated training matches full-batch training\n"
              : "FAIL: accumulated training differs from full-batch training\n";
  if (!r.explanation.empty()) s += "why: " + r.explanation + "\n";
  return s;
}

}  // namespace gradacc
