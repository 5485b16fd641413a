// MemoryPlan's two renderings: the lines of `gradacc plan --fit`, and one JSON object.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/parse.h"
#include "gradacc/memory_plan.h"

namespace gradacc {

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
  if (window_cache_bytes > 0) {
    s += fmt::format("window loss cache        {} held through the window, {} more for the loss over it\n",
                     format_bytes(window_cache_bytes), format_bytes(window_loss_bytes));
  }
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
  if (window_cache_bytes > 0) {
    j["window_cache_bytes"] = window_cache_bytes;
    j["window_loss_bytes"] = window_loss_bytes;
  }
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
