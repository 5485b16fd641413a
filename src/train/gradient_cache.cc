#include "train/gradient_cache.h"

#include <algorithm>
#include <string>

#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <c10/util/StringUtil.h>
#include <c10/util/accumulate.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "gradacc/device.h"
#include "gradacc/errors.h"

namespace gradacc {
namespace {

// Every rank's row count, in rank order (one small all-gather; read on the host once per window).
std::vector<int64_t> gather_counts(GradientReducer* reducer, int64_t rows, const at::Device& device) {
  if (!reducer || reducer->world_size() == 1) return {rows};
  const at::Tensor mine =
      at::full({1}, static_cast<double>(rows), at::TensorOptions().dtype(at::kDouble).device(device));
  const at::Tensor all = at::empty({reducer->world_size()}, mine.options());
  reducer->all_gather(mine, all);
  const at::Tensor host = all.cpu();
  std::vector<int64_t> counts;
  for (int r = 0; r < reducer->world_size(); ++r) counts.push_back(static_cast<int64_t>(host.data_ptr<double>()[r]));
  return counts;
}

// `local`'s rows on every rank, concatenated in rank order: each rank's rows padded to the most any
// rank has, one all-gather, the padding dropped.
at::Tensor gather_rows(GradientReducer* reducer, const at::Tensor& local, const std::vector<int64_t>& counts) {
  if (!reducer || reducer->world_size() == 1) return local;
  const int64_t most = *std::max_element(counts.begin(), counts.end());
  const int64_t row = c10::multiply_integers(local.sizes().slice(1));  // elements per row
  const at::Tensor padded = at::zeros({std::max<int64_t>(1, most * row)}, local.options());
  if (local.size(0) > 0) padded.narrow(0, 0, local.numel()).copy_(local.reshape({-1}));
  const at::Tensor all = at::empty({padded.numel() * reducer->world_size()}, local.options());
  reducer->all_gather(padded, all);
  std::vector<at::Tensor> pieces;
  for (size_t r = 0; r < counts.size(); ++r)
    pieces.push_back(all.narrow(0, static_cast<int64_t>(r) * padded.numel(), counts[r] * row));
  std::vector<int64_t> shape = local.sizes().vec();
  shape[0] = -1;
  return at::cat(pieces).reshape(shape);
}

std::string shape_of(const at::Tensor& t) { return t.defined() ? c10::str(t.sizes()) : std::string("(none)"); }

}  // namespace

CachedWindow accumulate_window_loss(const GradientCacheParts& p, const std::vector<Batch>& micro_batches,
                                    const Batch& stand_in) {
  // Pass 1: representations without gradients, each micro-batch's RNG state kept for pass 3.
  std::vector<at::Tensor> rng;
  std::vector<std::vector<at::Tensor>> reps;
  size_t kinds = 0;
  int64_t local = 0;
  {
    torch::NoGradGuard no_grad;
    for (const Batch& b : micro_batches) {
      rng.push_back(generator_state(p.device));
      if (b.samples == 0) {
        reps.emplace_back();
        continue;
      }
      AutocastGuard autocast(p.device.type(), p.precision);
      std::vector<at::Tensor> r = p.loss.encode_rows(b);
      for (at::Tensor& t : r) t = t.to(at::kFloat);
      if (kinds != 0 && r.size() != kinds)
        throw ConfigError("the window loss's encoder returned another number of representations for another batch");
      kinds = r.size();
      local += b.samples;
      reps.push_back(std::move(r));
    }
  }
  const at::Tensor rng_after = generator_state(p.device);
  // A rank whose share of a short window is empty still joins the gathers: its (zero) rows take
  // their shapes and types from a stand-in example, encoded without gradients.
  std::vector<at::Tensor> shapes;
  at::Tensor no_targets;
  for (const auto& r : reps) {
    if (!r.empty()) {
      shapes = r;
      break;
    }
  }
  if (shapes.empty()) {
    torch::NoGradGuard no_grad;
    AutocastGuard autocast(p.device.type(), p.precision);
    for (const at::Tensor& t : p.loss.encode_rows(stand_in)) shapes.push_back(t.to(at::kFloat).narrow(0, 0, 0));
    no_targets = stand_in.targets.narrow(0, 0, 0);
    set_generator_state(p.device, rng_after);
  }

  // Pass 2: the loss over the window (all ranks), and its gradient with respect to this rank's rows.
  const std::vector<int64_t> counts = gather_counts(p.reducer, local, p.device);
  int64_t total = 0, offset = 0;
  const int rank = p.reducer ? p.reducer->rank() : 0;
  for (size_t r = 0; r < counts.size(); ++r) {
    if (static_cast<int>(r) < rank) offset += counts[r];
    total += counts[r];
  }
  std::vector<at::Tensor> window(shapes.size());
  std::vector<at::Tensor> targets;
  for (size_t k = 0; k < shapes.size(); ++k) {
    std::vector<at::Tensor> rows{shapes[k].narrow(0, 0, 0)};
    for (const auto& r : reps)
      if (!r.empty()) rows.push_back(r[k]);
    window[k] = gather_rows(p.reducer, at::cat(rows), counts).detach().requires_grad_(true);
  }
  if (no_targets.defined()) targets.push_back(no_targets);
  for (const Batch& b : micro_batches)
    if (b.samples > 0) targets.push_back(b.targets);
  const at::Tensor window_targets = gather_rows(p.reducer, at::cat(targets), counts);
  CachedWindow out;
  out.window_samples = total;
  std::vector<at::Tensor> grads;
  {
    torch::AutoGradMode grad(true);
    const at::Tensor loss = p.loss.loss(window, window_targets);
    if (!loss.defined() || loss.dim() != 0)
      throw ConfigError(
          fmt::format("the window loss returned a tensor of shape {}: it must return one number (0-dim), "
                      "the sum of the window's loss terms",
                      shape_of(loss)));
    grads = torch::autograd::grad({loss}, window);
    out.loss_sum = loss.detach().to(at::kFloat);
  }
  // What the window holds between the passes (memory/window_cache.h counts the same for the
  // planner): this rank's batches and representations, the window's rows and their gradients.
  for (const at::Tensor& g : grads) out.cached_bytes += static_cast<int64_t>(g.nbytes()) * 2;
  for (size_t m = 0; m < micro_batches.size(); ++m) {
    const Batch& b = micro_batches[m];
    if (b.samples == 0) continue;
    out.cached_bytes += static_cast<int64_t>(b.inputs.nbytes() + b.targets.nbytes());
    for (const at::Tensor& r : reps[m]) out.cached_bytes += static_cast<int64_t>(r.nbytes());
  }

  // Pass 3: each micro-batch again, with gradients and its pass-1 RNG state; its rows' cached
  // gradients flow back through it into the accumulation buffer.
  size_t last = micro_batches.size();
  for (size_t m = 0; m < micro_batches.size(); ++m)
    if (micro_batches[m].samples > 0) last = m;
  int64_t row = offset;
  for (size_t m = 0; m < micro_batches.size(); ++m) {
    const Batch& b = micro_batches[m];
    if (b.samples == 0) {
      p.accumulator.empty_micro_batch();
      continue;
    }
    if (m == last) p.accumulator.overlap_next_backward();
    set_generator_state(p.device, rng[m]);
    at::Tensor surrogate;
    {
      AutocastGuard autocast(p.device.type(), p.precision);
      const std::vector<at::Tensor> r = p.loss.encode_rows(b);
      for (size_t k = 0; k < r.size(); ++k) {
        const at::Tensor term = (r[k].to(at::kFloat) * grads[k].narrow(0, row, b.samples)).sum();
        surrogate = surrogate.defined() ? surrogate + term : term;
      }
    }
    // Its gradient is the cached one; its value this micro-batch's share of the window's loss.
    const at::Tensor share = out.loss_sum * (static_cast<double>(b.samples) / static_cast<double>(total));
    p.accumulator.accumulate(surrogate - surrogate.detach() + share, b.samples, b.samples);
    row += b.samples;
  }
  set_generator_state(p.device, rng_after);
  return out;
}

}  // namespace gradacc
