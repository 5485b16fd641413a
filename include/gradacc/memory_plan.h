// The memory planner: from a memory budget and a global batch to a micro-batch, an accumulation
// and activation checkpointing, measured on the real model, data and device (docs/memory.md).
//
// What it measures (tensor memory through the allocator, device/device.h):
//   static     — what is live before the first micro-batch: parameters, the gradient buffer,
//                fp32 master weights, the optimizer's state (created by one probe step, then undone,
//                for optimizers that allocate it lazily), plus whatever else the process holds;
//   activation — the peak above that during one micro-batch's forward and backward, at two
//                micro-batch sizes (1 and min(4, share)) of the data set's largest examples, fitted
//                as fixed + m · per_example;
//   step       — the transient peak above static during the optimizer step.
// Predicted peak of a window with micro-batch m: static + max(fixed + m · per_example, step).
// A window loss (gradient caching) adds its cache, held beside every micro-batch, and the loss
// over the window (pass 2): static + max(cache + max(activations, loss), step).
// It picks the largest m ≤ the rank's share of the window whose prediction fits 98% of the
// budget, then runs a forward/backward at that m to confirm (and steps down if it does not fit).
// Token-budget micro-batches (request.token_budget) are planned the same way in computed
// positions (rows × row width, Batch::inputs) instead of examples: the fit is fixed + n · per
// position, and the budget N is the largest n that fits. A micro-batch of at most N positions
// never needs more than N/L rows of the longest sequence (L positions each), which is what the
// confirming probe runs: activations grow with positions, and any per-row quadratic term (attention
// without a fused kernel) is largest for the widest rows.
// Activation checkpointing is turned on only when no micro-batch fits without it (unless the
// caller fixed it). Under ZeRO, `zero auto` plans on ZeRO-1 first and takes ZeRO-2 only when ZeRO-1
// cannot hold one micro-batch (or the asked one); the plan reports both stages either way. The probes change nothing:
// weights, buffers (BatchNorm statistics), the RNG, the optimizer state and the accumulator are as they were.
//
// Thread safety: none; runs on the training thread, before training.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace gradacc {

// Activation memory of one micro-batch of m examples: fixed + m · per_example (bytes); when planning
// a token budget, m counts computed positions and per_example is per position.
struct ActivationCost {
  int64_t fixed = 0;
  int64_t per_example = 0;
  int64_t at(int64_t m) const { return fixed + m * per_example; }
};

// Data parallel under ZeRO: what one stage costs at the planned micro-batch. ZeRO-1 keeps the whole
// fp32 gradient buffer and reduces it once per window; ZeRO-2 keeps 1/R of it (plus two buckets)
// and reduces every micro-batch's gradient.
struct ZeroStageCost {
  int stage = 0;
  int64_t predicted_peak = 0;        // measured for the planned stage, estimated for the other
  bool measured = false;             // planned on this stage (else: the planned peak ± the buffers' difference)
  bool fits = false;                 // within the budget's usable 98%
  int64_t gradient_bytes_moved = 0;  // fp32 gradient passed into reductions per window by this rank
  // ZeRO-3: whether units are freed after their forward, whether they stay for the window with the
  // gradient summed unsharded, and the parameter bytes this rank's all-gathers produce per window.
  bool reshard_after_forward = true;
  bool accumulate_unsharded = false;
  int64_t parameter_bytes_gathered = 0;
};

struct MemoryPlan {
  int64_t budget_bytes = 0;
  int64_t micro_batch = 0;         // examples; with a token budget, rows of the longest sequence
  int64_t accumulation_steps = 0;  // with a token budget, the most micro-batches a share needs
  int64_t micro_batch_tokens = 0;  // the token budget N (rows × longest row); 0: fixed micro-batches
  bool checkpointing = false;
  int64_t static_bytes = 0;           // measured; includes optimizer_state_bytes
  int64_t optimizer_state_bytes = 0;  // measured by a probe step (0 when already allocated and in static)
  int64_t step_bytes = 0;             // transient of the optimizer step, above static
  ActivationCost activations;         // of the chosen checkpointing mode
  int64_t predicted_peak = 0;         // static + max(activations.at(micro_batch), step)
  int64_t probed_peak = 0;            // static + the measured forward/backward peak at micro_batch
  int64_t min_budget = 0;             // with micro-batch 1, in the chosen mode
  int64_t min_budget_without_checkpointing = 0;
  std::optional<int64_t> min_budget_with_checkpointing;  // unset: the model cannot checkpoint
  // A window loss (gradient caching): what the window holds beside each micro-batch's activations
  // (this rank's batches and representations, the window's representations and their gradients),
  // and the transient of the loss over the window. Both 0 without one.
  int64_t window_cache_bytes = 0, window_loss_bytes = 0;
  int64_t probe_examples_items = 0;     // items (tokens) of the largest example probed
  int64_t probe_example_positions = 0;  // positions it computes in a batch of its own
  // Data parallel under ZeRO (else empty / 0): both stages' cost, the stage planned for, and with
  // `zero auto` why the planner chose it (the cheapest in communication that fits).
  std::vector<ZeroStageCost> zero_stages;
  int zero_stage = 0;
  std::string zero_choice;

  std::string describe() const;  // several lines, for `gradacc plan --fit`
  std::string json() const;      // one JSON object
};
}  // namespace gradacc
