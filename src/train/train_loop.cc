#include "train/train_loop.h"

#include <algorithm>
#include <chrono>

#include <ATen/record_function.h>

#include <fmt/format.h>

#include "gradacc/device.h"
#include "gradacc/errors.h"
#include "train/gradient_cache.h"
#include "train/loss_check.h"
#include "train/oom_replay.h"

namespace gradacc {

namespace {

// Forward and backward of one window, a micro-batch at a time: only one micro-batch of
// activations lives.
// A window loss: the window's batches, then gradient caching's three passes (gradient_cache.h).
// Returns the bytes of representations and gradients it held.
int64_t run_cached_window(const LoopParts& p, const Window& window) {
  std::vector<Batch> batches;
  bool any = false;
  for (const std::vector<int64_t>& indices : window.micro_batches) {
    batches.push_back(indices.empty() ? Batch{} : p.data.gather_in_epoch(indices, window.epoch).to(p.device));
    any = any || !indices.empty();
  }
  const Batch stand_in =
      any ? Batch{} : p.data.gather_in_epoch({0}, window.epoch).to(p.device);  // shapes for an empty share
  const GradientCacheParts parts{*p.window_loss, p.accumulator, p.device, p.precision, p.reducer};
  return accumulate_window_loss(parts, batches, stand_in).cached_bytes;
}

int64_t run_window(const LoopParts& p, const Window& window) {
  if (p.window_loss) return run_cached_window(p, window);
  // This rank's last micro-batch with examples: during its backward, data parallel with overlap
  // starts reducing the window's gradient bucket by bucket.
  size_t last = window.micro_batches.size();
  for (size_t m = 0; m < window.micro_batches.size(); ++m) {
    if (!window.micro_batches[m].empty()) last = m;
  }
  // ZeRO-3 runs every micro-batch, stand-ins too: every rank's last is the window's last, and the
  // reduces it starts (unsharded accumulation) are issued in the same place on every rank.
  if (p.gather && !window.micro_batches.empty()) last = window.micro_batches.size() - 1;
  for (size_t m = 0; m < window.micro_batches.size(); ++m) {
    const std::vector<int64_t>& indices = window.micro_batches[m];
    if (indices.empty() && !p.gather) {  // this rank's share of a short window ran out
      p.accumulator.empty_micro_batch();
      continue;
    }
    const bool stand_in = indices.empty();  // ZeRO-3: gathers as the others do, adds nothing
    const GatheredMicroBatch gathers(p.gather);
    if (m == last) p.accumulator.overlap_next_backward();
    // The phases are named for the profiler (--profile): free when it is off.
    const Batch batch = [&] {
      RECORD_USER_SCOPE("gradacc::data");
      return p.data.gather_in_epoch(stand_in ? std::vector<int64_t>{0} : indices, window.epoch).to(p.device);
    }();
    if (batch.targets.dim() > 1 && !stand_in) p.accumulator.count_positions(batch.targets.numel());
    at::Tensor loss_sum;
    {
      RECORD_USER_SCOPE("gradacc::forward_and_loss");
      AutocastGuard autocast(p.device.type(), p.precision);
      loss_sum = p.loss(p.model.forward(batch), batch);
    }
    require_loss_value(loss_sum, /*training=*/true);
    RECORD_USER_SCOPE("gradacc::backward_and_accumulate");
    if (stand_in)
      p.accumulator.accumulate(loss_sum * 0.0, 0, 0);
    else
      p.accumulator.accumulate(loss_sum, batch.samples, batch.items);
  }
  return 0;
}

// The accumulation of the window after `steps_taken` steps (auto's, the schedule's, else the
// plan's), and the examples such a window holds: the one computation the loop, the lr factor and
// the resume note share.
int64_t planned_accumulation(const LoopParts& p, const BatchPlan& plan, int64_t steps_taken) {
  if (p.auto_accum) return p.auto_accum->current();
  if (p.accum_schedule) return p.accum_schedule->at(steps_taken);
  return plan.accumulation_steps;
}

int64_t window_examples(const LoopParts& p, const BatchPlan& plan, int64_t accumulation) {
  if (!p.accum_schedule && !p.auto_accum) return plan.global_batch;  // fixed: however it is split
  return plan.micro_batch * accumulation * plan.world_size;
}

}  // namespace

int64_t planned_window(const LoopParts& p, int64_t steps_taken) {
  const BatchPlan& plan = p.sampler.plan();
  return window_examples(p, plan, planned_accumulation(p, plan, steps_taken));
}

std::map<std::string, std::string> LoopCursor::state() const {
  return {{"epoch", std::to_string(next.epoch)},
          {"window", std::to_string(next.window)},
          {"offset", std::to_string(next.offset)}};
}

void LoopCursor::load_state(const std::map<std::string, std::string>& state) {
  next = {state_count(state, "epoch"), state_count(state, "window"), state_count(state, "offset")};
}

std::vector<StepReport> train_steps(const LoopParts& p, int64_t steps, LoopPosition& pos, const StepCallback& on_step) {
  std::vector<StepReport> reports;
  reports.reserve(steps);
  install_cpu_memory_counter();  // idempotent; the Trainer installs it before the model exists
  p.model.module->train();
  OomReplay replay(p.sampler, p.accumulator, p.device, p.replay_on_oom);
  const int64_t n = p.sampler.dataset_size();
  std::vector<int64_t> order = p.sampler.epoch_order(pos.epoch);
  auto next_epoch = [&] {
    pos.window = pos.offset = 0;
    order = p.sampler.epoch_order(++pos.epoch);
  };
  for (int64_t s = 0; s < steps; ++s) {
    const auto start = std::chrono::steady_clock::now();
    const BatchPlan& plan = replay.sampler().plan();
    // Which examples this window holds: the next `global` of the epoch's order (fewer at its end).
    const bool varying = p.accum_schedule || p.auto_accum;  // windows whose size changes over the run
    // (Varying windows replay no out-of-memory: replay.sampler() is then p.sampler.)
    const int64_t accum = planned_accumulation(p, plan, p.accumulator.steps_taken());
    const int64_t global = window_examples(p, plan, accum);
    if (p.sampler.drop_partial() && n - pos.offset < global) {
      if (pos.offset == 0)
        throw PlanError(fmt::format("a window of {} examples does not fit the {} examples", global, n));
      next_epoch();
    }

    // Forward and backward of the window, a micro-batch at a time (run again with half the
    // micro-batch if memory runs out).
    int64_t replays = 0, cache_bytes = 0;
    const Window window = replay.run(
        [&](const WindowSampler& s) {
          return s.window_at(order, pos.epoch, pos.window, pos.offset, varying ? accum : s.plan().accumulation_steps);
        },
        [&](const Window& w) { cache_bytes = run_window(p, w); }, replays);

    // Window boundary: exact normalization, clip, optimizer and schedule step.
    if (p.lr_scaler) p.accumulator.set_lr_scale(p.lr_scaler->factor(global), p.lr_scaler->schedule_position());
    StepReport report = [&] {
      RECORD_USER_SCOPE("gradacc::window_boundary");
      return p.accumulator.step();
    }();
    report.peak_bytes = memory_reading(p.device).peak_bytes;  // allocator statistics: no device sync
    report.micro_batch = replay.sampler().plan().micro_batch;
    if (replay.sampler().token_budget().tokens > 0) {  // token budget: the most rows a micro-batch held
      report.micro_batch = 0;
      for (const auto& m : window.micro_batches) report.micro_batch = std::max<int64_t>(report.micro_batch, m.size());
    }
    report.oom_replays = replays;
    report.window_cache_bytes = cache_bytes;
    if (p.lr_scaler && !report.skipped) p.lr_scaler->advance(report.lr_scale);
    if (p.lr_scaler && p.lr_scaler->schedule_position()) report.lr_position = *p.lr_scaler->schedule_position();
    if (p.auto_accum) p.auto_accum->after_step(report);  // before the callback: a checkpoint saves the decision
    reports.push_back(report);

    // An epoch ends when its examples run out; with `drop`, when the rest is too short for the
    // next window (checked before that window runs, above).
    const int64_t epoch = pos.epoch;
    ++pos.window;
    pos.offset += window.global_samples;
    if (pos.offset == n) next_epoch();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (on_step && !on_step(report, StepContext{epoch, seconds, pos})) break;
    if (p.lr_scaler && p.lr_scaler->finished()) break;  // AdaScale went the schedule's whole length
  }
  return reports;
}

}  // namespace gradacc
