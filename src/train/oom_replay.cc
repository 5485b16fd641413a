#include "train/oom_replay.h"

#include <algorithm>
#include <string>

#include <ATen/core/Generator.h>
#include <c10/util/Exception.h>
#include <fmt/format.h>

#include "gradacc/device.h"
#include "gradacc/errors.h"

namespace gradacc {

OomReplay::OomReplay(const WindowSampler& sampler, Accumulator& accumulator, at::Device device, bool enabled)
    : sampler_(sampler), accumulator_(accumulator), device_(device), enabled_(enabled) {}

Window OomReplay::run(const std::function<Window(const WindowSampler&)>& cut,
                      const std::function<void(const Window&)>& run, int64_t& replays) {
  replays = 0;
  // A clone, not get_state(): no tensor, so nothing the memory budget could refuse.
  const at::Generator rng_at_start = enabled_ ? default_generator(device_).clone() : at::Generator();
  for (;;) {
    const Window window = cut(sampler());
    reset_memory_peak(device_);
    try {
      run(window);
      return window;
    } catch (const c10::OutOfMemoryError& e) {
      if (!enabled_) throw;
      accumulator_.discard_window();
      halve(e);
      {
        // The state passes through a 5 KB tensor: not the window's memory, so not the budget's.
        const int64_t limit = cpu_memory_limit();
        set_cpu_memory_limit(0);
        set_generator_state(device_, rng_at_start.get_state());
        set_cpu_memory_limit(limit);
      }
      ++replays;
    }
  }
}

void OomReplay::halve(const c10::OutOfMemoryError& e) {
  const BatchPlan now = sampler().plan();  // copies: `halved_` is replaced below
  TokenBudget tokens = sampler().token_budget();
  // With a token budget, half the tokens, down to the longest sequence (or packed row).
  const int64_t fewest_tokens =
      tokens.tokens > 0
          ? std::max(*std::max_element(tokens.lengths->begin(), tokens.lengths->end()), tokens.packed_row_length)
          : 0;
  if (tokens.tokens > 0 ? tokens.tokens <= fewest_tokens : now.micro_batch == 1) {
    const std::string why = e.what();
    throw MemoryError(fmt::format("out of memory at step {} with {}: {}", accumulator_.steps_taken() + 1,
                                  tokens.tokens > 0 ? fmt::format("micro-batches of {} tokens", tokens.tokens)
                                                    : std::string("a micro-batch of 1"),
                                  why.substr(0, why.find('\n'))));
  }
  const int64_t n = sampler_.dataset_size();
  if (tokens.tokens > 0) {
    tokens.tokens = std::max(fewest_tokens, tokens.tokens / 2);
    halved_.emplace(n, now, sampler_.options(), std::move(tokens));
  } else {
    halved_.emplace(n,
                    BatchPlan::resolve({now.global_batch, (now.micro_batch + 1) / 2, std::nullopt, now.world_size,
                                        /*short_last_micro=*/true}),
                    sampler_.options());
  }
}

}  // namespace gradacc
