// WindowLoss: a loss over the whole window at once — contrastive losses with in-batch negatives
// (InfoNCE, CLIP-style, SimCLR, dense retrieval) — trained exactly under accumulation.
//
// Accumulation is exact for a sum of per-example terms. A contrastive loss compares each example
// with every other one of its batch, so summing per-micro-batch losses would train another
// objective: 8 negatives instead of 512. The Trainer instead runs gradient caching (Gao et al.
// 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup") on each window:
//   1. every micro-batch's encode() without gradients, keeping only its representations (fp32);
//      data parallel, all ranks' representations are gathered, so the loss sees the global window;
//   2. loss() over the window's representations and targets, and its gradient with respect to
//      each representation (this rank keeps the rows of its own examples);
//   3. every micro-batch's encode() again, with gradients, replaying the RNG state (dropout) and
//      autocast of pass 1, and backpropagating the cached representation gradients into the
//      accumulation buffer.
// The window boundary is unchanged: one reduction, the gradient divided once by the window's real
// sample count, no compensation factor. Cost: about one more forward per micro-batch, and the
// window's representations, their gradients and inputs held between the passes.
//
// Contract:
//   encode(batch)      → representations: one tensor, or several (query and passage), each with
//                        batch.samples rows. Run twice per micro-batch with the same RNG state.
//   loss(reps, targets) → a 0-dim tensor: the SUM of the window's loss terms, one per sample
//                        (gradacc's convention; the Trainer divides by the window's count). reps
//                        are the window's representations (all ranks' examples, in rank order,
//                        fp32), targets the batches' targets concatenated the same way.
// Refused, one line each: a loss that is not 0-dim, representations whose rows differ from the
// micro-batch's samples, token budgets, packing and ZeRO-3 (not supported yet). A memory budget
// counts the window's cache (docs/memory.md).
//
// Thread safety: the functions are called on the training thread only.
#pragma once

#include <functional>
#include <vector>

#include <ATen/core/Tensor.h>

#include "gradacc/dataset.h"

namespace gradacc {

struct WindowLoss {
  std::function<std::vector<at::Tensor>(const Batch& batch)> encode;
  std::function<at::Tensor(const std::vector<at::Tensor>& representations, const at::Tensor& targets)> loss;

  // encode(batch), held to its contract: at least one tensor, each with one row per sample of the
  // batch. Throws ConfigError (one line, naming the shape) otherwise. What gradacc calls.
  std::vector<at::Tensor> encode_rows(const Batch& batch) const;
};

// The naive way to train the same loss, for comparison (`gradacc verify`, `--negatives
// micro-batch`): each micro-batch's loss over its own representations, so that only the
// micro-batch's other examples are negatives, accumulated as any per-example loss. `forward`
// stands in for the model's forward (it runs the encoder and hands over its representations,
// flattened side by side); `loss` is the LossFn (gradacc/model.h) over them.
struct PerMicroBatchLoss {
  std::function<at::Tensor(const Batch& batch)> forward;
  std::function<at::Tensor(const at::Tensor& outputs, const Batch& batch)> loss;
};
PerMicroBatchLoss per_micro_batch(WindowLoss window);

// Σ_i of the symmetric InfoNCE terms of two views: with logits s_ij = <â_i, b̂_j> / temperature over
// L2-normalized rows, each sample i contributes ½ (−log softmax_j(s_i·)_i − log softmax_j(s_·i)_i):
// its positive is the other view of itself, every other sample of the window a negative. `a` and
// `b` are [N, d]. Throws ConfigError for other shapes or temperature ≤ 0.
at::Tensor info_nce_sum(const at::Tensor& a, const at::Tensor& b, double temperature = 0.1);

}  // namespace gradacc
