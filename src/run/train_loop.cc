#include "gradacc/run/train_loop.h"

#include <chrono>

#include <fmt/format.h>

#include "gradacc/device/device.h"
#include "gradacc/errors.h"

namespace gradacc {

std::vector<StepReport> train_steps(const LoopParts& p, int64_t steps, LoopPosition& pos, const StepCallback& on_step) {
  std::vector<StepReport> reports;
  reports.reserve(steps);
  install_cpu_memory_counter();  // idempotent; the Trainer installs it before the model exists
  p.model.module->train();
  const BatchPlan& plan = p.sampler.plan();
  const int64_t n = p.sampler.dataset_size();
  std::vector<int64_t> order = p.sampler.epoch_order(pos.epoch);
  auto next_epoch = [&] {
    pos.window = pos.offset = 0;
    order = p.sampler.epoch_order(++pos.epoch);
  };
  for (int64_t s = 0; s < steps; ++s) {
    const auto start = std::chrono::steady_clock::now();
    // Which examples this window holds: the next `global` of the epoch's order (fewer at its end).
    const int64_t accum =
        p.accum_schedule ? p.accum_schedule->at(p.accumulator.steps_taken()) : plan.accumulation_steps;
    const int64_t global = plan.micro_batch * accum * plan.world_size;
    if (p.sampler.drop_partial() && n - pos.offset < global) {
      if (pos.offset == 0)
        throw PlanError(fmt::format("a window of {} examples does not fit the {} examples", global, n));
      next_epoch();
    }
    const Window window = p.sampler.window_at(order, pos.epoch, pos.window, pos.offset, accum);
    reset_memory_peak(p.device);

    // Forward and backward, one micro-batch at a time: only one micro-batch of activations lives.
    for (const std::vector<int64_t>& indices : window.micro_batches) {
      if (indices.empty()) {  // this rank's share of a short window ran out
        p.accumulator.empty_micro_batch();
        continue;
      }
      const Batch batch = p.data.gather(indices).to(p.device);
      at::Tensor loss_sum;
      {
        AutocastGuard autocast(p.device.type(), p.precision);
        loss_sum = p.loss(p.model.forward(batch), batch);
      }
      p.accumulator.accumulate(loss_sum, batch.samples, batch.items);
    }
    // Window boundary: exact normalization, clip, optimizer and schedule step.
    StepReport report = p.accumulator.step();
    report.peak_bytes = memory_reading(p.device).peak_bytes;  // allocator statistics: no device sync
    reports.push_back(report);

    // An epoch ends when its examples run out; with `drop`, when the rest is too short for the
    // next window (checked before that window runs, above).
    const int64_t epoch = pos.epoch;
    ++pos.window;
    pos.offset += window.global_samples;
    if (pos.offset == n) next_epoch();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (on_step && !on_step(report, StepContext{epoch, seconds, pos})) break;
  }
  return reports;
}

}  // namespace gradacc
