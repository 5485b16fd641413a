#include "train/train_loop.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <tuple>
#include <utility>

#include <ATen/Context.h>
#include <ATen/core/Generator.h>
#include <ATen/record_function.h>
#include <c10/util/Exception.h>

#include <fmt/format.h>

#include "gradacc/device.h"
#include "gradacc/errors.h"

namespace gradacc {

namespace {

// Forward and backward of one window, a micro-batch at a time: only one micro-batch of
// activations lives.
void run_window(const LoopParts& p, const Window& window) {
  // This rank's last micro-batch with examples: during its backward, data parallel with overlap
  // starts reducing the window's gradient bucket by bucket.
  size_t last = window.micro_batches.size();
  for (size_t m = 0; m < window.micro_batches.size(); ++m) {
    if (!window.micro_batches[m].empty()) last = m;
  }
  for (size_t m = 0; m < window.micro_batches.size(); ++m) {
    const std::vector<int64_t>& indices = window.micro_batches[m];
    if (indices.empty()) {  // this rank's share of a short window ran out
      p.accumulator.empty_micro_batch();
      continue;
    }
    if (m == last) p.accumulator.overlap_next_backward();
    // The phases are named for the profiler (--profile): free when it is off.
    const Batch batch = [&] {
      RECORD_USER_SCOPE("gradacc::data");
      return p.data.gather(indices).to(p.device);
    }();
    if (batch.targets.dim() > 1) p.accumulator.count_positions(batch.targets.numel());  // padding included
    at::Tensor loss_sum;
    {
      RECORD_USER_SCOPE("gradacc::forward_and_loss");
      AutocastGuard autocast(p.device.type(), p.precision);
      loss_sum = p.loss(p.model.forward(batch), batch);
    }
    RECORD_USER_SCOPE("gradacc::backward_and_accumulate");
    p.accumulator.accumulate(loss_sum, batch.samples, batch.items);
  }
}

}  // namespace

std::vector<StepReport> train_steps(const LoopParts& p, int64_t steps, LoopPosition& pos, const StepCallback& on_step) {
  std::vector<StepReport> reports;
  reports.reserve(steps);
  install_cpu_memory_counter();  // idempotent; the Trainer installs it before the model exists
  p.model.module->train();
  const WindowSampler* sampler = &p.sampler;
  std::optional<WindowSampler> halved;  // after a replay: the same order in smaller micro-batches
  const int64_t n = p.sampler.dataset_size();
  std::vector<int64_t> order = p.sampler.epoch_order(pos.epoch);
  auto next_epoch = [&] {
    pos.window = pos.offset = 0;
    order = p.sampler.epoch_order(++pos.epoch);
  };
  for (int64_t s = 0; s < steps; ++s) {
    const auto start = std::chrono::steady_clock::now();
    const BatchPlan& plan = sampler->plan();
    // Which examples this window holds: the next `global` of the epoch's order (fewer at its end).
    const bool varying = p.accum_schedule || p.auto_accum;  // windows whose size changes over the run
    const int64_t accum = p.auto_accum       ? p.auto_accum->current()
                          : p.accum_schedule ? p.accum_schedule->at(p.accumulator.steps_taken())
                                             : plan.accumulation_steps;
    const int64_t global = varying ? plan.micro_batch * accum * plan.world_size : plan.global_batch;
    if (p.sampler.drop_partial() && n - pos.offset < global) {
      if (pos.offset == 0)
        throw PlanError(fmt::format("a window of {} examples does not fit the {} examples", global, n));
      next_epoch();
    }

    // Forward and backward of the window; run again with half the micro-batch if memory runs out.
    // (A clone, not get_state(): no tensor, so nothing the memory budget could refuse.)
    const at::Generator rng_at_start = p.replay_on_oom ? default_generator(p.device).clone() : at::Generator();
    Window window;
    int64_t replays = 0;
    for (;;) {
      window = sampler->window_at(order, pos.epoch, pos.window, pos.offset,
                                  varying ? accum : sampler->plan().accumulation_steps);
      reset_memory_peak(p.device);
      try {
        run_window(p, window);
        break;
      } catch (const c10::OutOfMemoryError& e) {
        if (!p.replay_on_oom) throw;
        p.accumulator.discard_window();
        const BatchPlan now = sampler->plan();  // copies: `halved` is replaced below
        TokenBudget tokens = sampler->token_budget();
        // With a token budget, half the tokens, down to the longest sequence (or packed row).
        const int64_t fewest_tokens =
            tokens.tokens > 0
                ? std::max(*std::max_element(tokens.lengths->begin(), tokens.lengths->end()), tokens.packed_row_length)
                : 0;
        if (tokens.tokens > 0 ? tokens.tokens <= fewest_tokens : now.micro_batch == 1) {
          const std::string why = e.what();
          throw MemoryError(fmt::format("out of memory at step {} with {}: {}", p.accumulator.steps_taken() + 1,
                                        tokens.tokens > 0 ? fmt::format("micro-batches of {} tokens", tokens.tokens)
                                                          : std::string("a micro-batch of 1"),
                                        why.substr(0, why.find('\n'))));
        }
        {
          // The state passes through a 5 KB tensor: not the window's memory, so not the budget's.
          const int64_t limit = cpu_memory_limit();
          set_cpu_memory_limit(0);
          set_generator_state(p.device, rng_at_start.get_state());
          set_cpu_memory_limit(limit);
        }
        if (tokens.tokens > 0) {
          tokens.tokens = std::max(fewest_tokens, tokens.tokens / 2);
          halved.emplace(n, now, p.sampler.options(), std::move(tokens));
        } else {
          halved.emplace(n,
                         BatchPlan::resolve({now.global_batch, (now.micro_batch + 1) / 2, std::nullopt, now.world_size,
                                             /*short_last_micro=*/true}),
                         p.sampler.options());
        }
        sampler = &*halved;
        ++replays;
      }
    }

    // Window boundary: exact normalization, clip, optimizer and schedule step.
    StepReport report = [&] {
      RECORD_USER_SCOPE("gradacc::window_boundary");
      return p.accumulator.step();
    }();
    report.peak_bytes = memory_reading(p.device).peak_bytes;  // allocator statistics: no device sync
    report.micro_batch = sampler->plan().micro_batch;
    if (sampler->token_budget().tokens > 0) {  // token budget: the most rows a micro-batch held
      report.micro_batch = 0;
      for (const auto& m : window.micro_batches) report.micro_batch = std::max<int64_t>(report.micro_batch, m.size());
    }
    report.oom_replays = replays;
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
  }
  return reports;
}

}  // namespace gradacc
