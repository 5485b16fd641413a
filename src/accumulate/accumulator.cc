// Exact gradient accumulation. Read this file top to bottom; it is the core of gradacc.
//
// ── The math ────────────────────────────────────────────────────────────────────────────────
// A window is the set of examples of one optimizer step, split into micro-batches m = 1..M.
// Each example contributes loss terms ℓ_i: one per sample (classification) or one per real token
// (language models; padding contributes none). Let N be the number of terms in the window. The
// full-batch gradient is
//
//     g = ∇ (1/N) Σ_{i ∈ window} ℓ_i = (1/N) Σ_m ∇ L_m,      L_m = Σ_{i ∈ m} ℓ_i.
//
// N is only known once the window has been seen, and we refuse to read micro-batches ahead. So
// each micro-batch backpropagates s·L_m with a constant s = 1/Ñ (Ñ = nominal count, e.g. the
// samples of a full window), autograd adds the results into one buffer G = s Σ_m ∇L_m, and at
// the boundary
//
//     g = f · G,   f = Ñ / N.
//
// For per-sample normalization of a full window Ñ = N, so f = 1 exactly and G already is the
// full-batch gradient (each logit gradient carries the same 1/N as in the full batch). A short
// last window, or a window of padded text, simply has another N: it is rescaled by its real size.
//
// The naive scheme — mean loss of each micro-batch divided by M — computes (1/M) Σ_m L_m / N_m,
// which equals g only when every N_m is the same. With padding it is not (the 2024 bug).
//
// Clipping acts on g, never on a micro-batch: ‖g‖ = f‖G‖, c = min(1, max_norm / (‖g‖ + 1e-6)),
// and the buffer is multiplied once by f·c. One reduction (the norm) and at most one multiply
// pass touch the gradients at the boundary; the loss and the norm are read in one transfer.
//
// Loss scaling (fp16) multiplies s by the scale S: G = S·s Σ_m ∇L_m, and f = Ñ / (N·S). The
// unscale is part of f — still one factor, applied once per window — and ‖g‖ = f‖G‖ is the norm of
// the unscaled gradient, so clipping sees true values. If ‖G‖ is inf or NaN (an fp16 overflow in
// any micro-batch), the window is dropped: no update, no LR-schedule step, S backs off.
//
// Data parallel over R ranks: rank r holds G_r = S·s Σ_{m ∈ r} ∇L_m over its slice of the window,
// and the window gradient is g = f · Σ_r G_r with N = Σ_r N_r, the count of the whole window. So
// the boundary sums the buffer over ranks once, with the loss sum and the counts N_r carried in a
// tail of the same buffer — one pass gives Σ_r G_r and N together — and everything after that is
// the single-process algorithm. (Averaging per-rank means instead would repeat the naive bug
// across ranks whenever their token counts differ.)
//
// ZeRO-1 splits the same sum by elements instead of computing it everywhere: the buffer (padded to
// R·L) is reduce-scattered, so rank r receives only its slice (Σ_r' G_r')[r·L, (r+1)·L), steps the
// optimizer state it owns for that slice, and an all-gather returns every rank the whole updated
// parameters. The clip norm must be the norm of the whole g, not of a slice:
//     ‖g‖² = f² Σ_r ‖shard_r‖²,
// so each rank's ‖shard_r‖² travels in the all-reduce of the loss and counts (a norm taken over
// one shard would clip each shard differently). Three collectives per window, none per micro-batch.
//
// ZeRO-2 computes the same shard without ever holding G: each micro-batch's S·s·∇L_m is reduced
// bucket by bucket, each bucket to the rank owning its elements, and added into that rank's
// shard — Σ_m Σ_r of the slice, the same sum in another order. The boundary is ZeRO-1's minus the
// reduce-scatter: one small all-reduce (counts, loss, ‖shard‖²), the factor f, the update, the
// all-gather. Normalization stays exact because the buckets carry sums; only the boundary divides.
//
// This file is the algorithm; accumulator_sync.cc holds its data-parallel plumbing (the totals
// gathered across ranks, ZeRO's collectives, and the overlap of the last backward with them).
// ─────────────────────────────────────────────────────────────────────────────────────────────
#include "accumulate/accumulator.h"

#include <chrono>
#include <cmath>
#include <stdexcept>

#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <fmt/format.h>

#include "accumulate/window_stats.h"
#include "gradacc/errors.h"
#include "gradacc/optimizer.h"
#include "optim/fused_adamw.h"

namespace gradacc {

using detail::kStatSlots;
using detail::kZeroSlots;

Accumulator::Accumulator(torch::nn::Module& model, torch::optim::Optimizer& optimizer, const LrSchedule* schedule,
                         AccumulatorOptions options, MasterWeights* master, LossScaler* scaler, ZeroShard* zero)
    : optimizer_(optimizer), schedule_(schedule), options_(options), master_(master), scaler_(scaler), zero_(zero) {
  if (master_ && zero_) throw ConfigError("ZeRO keeps its own master weights: pass one of master, zero");
  set_options(options);

  int64_t total = 0;
  for (const at::Tensor& p : model.parameters()) {
    if (!p.requires_grad()) continue;
    if (!params_.empty() && (p.scalar_type() != params_[0].scalar_type() || p.device() != params_[0].device())) {
      throw ConfigError("all trainable parameters must share one dtype and device");
    }
    params_.push_back(p);
    total += p.numel();
  }
  if (params_.empty()) throw ConfigError("the model has no trainable parameters");

  // One contiguous buffer; each .grad is a view of its slice. Autograd adds into a defined .grad
  // in place, so every backward accumulates straight into this buffer: zeroing is one memset,
  // the norm one reduction, a rescale one multiply, and a data-parallel reduction one tensor.
  // The accumulation buffer: fp32 under master weights, else the parameters' dtype. A short tail
  // after the gradients carries the window's loss and counts through the same all-reduce.
  // Under ZeRO the buffer is padded to R·L for the reduce-scatter, and the statistics travel apart.
  low_precision_model_ = master_ || (zero_ && zero_->low_precision());
  const at::ScalarType accum_dtype = low_precision_model_ ? at::kFloat : params_[0].scalar_type();
  if (zero_ && zero_->total() != total) throw ConfigError("a ZeroShard of another model");
  window_loss_ = at::zeros({}, params_[0].options().dtype(at::kDouble).requires_grad(false));
  if (zero_) {
    zero_stats_ = at::zeros({kZeroSlots}, params_[0].options().dtype(at::kDouble).requires_grad(false));
    stats_host_ = at::zeros({kZeroSlots}, at::TensorOptions().dtype(at::kDouble));
  }
  if (shards_gradients()) {  // no whole-gradient buffer: the shard and the buckets (no group yet)
    sharded_ = std::make_unique<GradientShard>(params_, *zero_, nullptr, /*bucket_bytes=*/int64_t{25} << 20);
    return;
  }
  buffer_ = at::zeros({zero_ ? zero_->padded() : total + kStatSlots},
                      params_[0].options().dtype(accum_dtype).requires_grad(false));
  flat_grad_ = buffer_.narrow(0, 0, total);
  if (!zero_) {
    stats_ = buffer_.narrow(0, total, kStatSlots);
    stats_host_ = at::zeros({kStatSlots}, at::TensorOptions().dtype(at::kFloat));
  }
  if (master_ && master_->model_params().size() != params_.size()) throw ConfigError("master weights of another model");
  if (low_precision_model_) micro_grad_ = at::zeros({total}, params_[0].options().requires_grad(false));
  int64_t offset = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor& p = params_[i];
    flat_views_.push_back(flat_grad_.narrow(0, offset, p.numel()).view(p.sizes()));
    if (low_precision_model_) {
      // Backward writes the model's low-precision .grad; the fp32 sum is the masters' .grad (under
      // ZeRO, the reduce-scatter's input).
      if (master_ && !master_->model_params()[i].is_same(p)) throw ConfigError("master weights of another model");
      micro_views_.push_back(micro_grad_.narrow(0, offset, p.numel()).view(p.sizes()));
      p.mutable_grad() = micro_views_.back();
      if (master_) master_->masters()[i].mutable_grad() = flat_views_.back();
    } else {
      p.mutable_grad() = flat_views_.back();
    }
    offset += p.numel();
  }
}

void Accumulator::set_options(const AccumulatorOptions& options) {
  if (window_micro_batches_ > 0) throw ConfigError("the accumulator's options change between windows only");
  if (options.max_grad_norm < 0) {
    throw ConfigError(fmt::format("max_grad_norm must be ≥ 0, got {}", options.max_grad_norm));
  }
  if (options.nominal_count < 1) {
    throw ConfigError(fmt::format("nominal_count must be ≥ 1, got {}", options.nominal_count));
  }
  options_ = options;
  pre_scale_ = 1.0 / static_cast<double>(options_.nominal_count);
}

void Accumulator::accumulate(const at::Tensor& loss_sum, int64_t samples, int64_t items) {
  if (samples < 0 || items < 0) throw ConfigError("micro-batch counts must be ≥ 0");
  const bool per_micro_sync = distributed() && sync_mode_ == SyncMode::kEveryMicroBatch;
  if (per_micro_sync && !low_precision_model_) {
    for (size_t i = 0; i < params_.size(); ++i) params_[i].mutable_grad() = micro_views_[i];  // this micro-batch alone
  }
  const double s = pre_scale_ * (scaler_ ? scaler_->scale() : 1.0);  // s, times S with a loss scaler
  if (shards_gradients() && noise_ && window_micro_batches_ == 0) sharded_->measure_next_backward();
  if (options_.normalization == Normalization::kNaiveMicroMean) {  // for comparison only
    const at::Tensor micro_mean = loss_sum / static_cast<double>(std::max<int64_t>(items, 1));
    (micro_mean * s).backward();
    window_loss_.add_(micro_mean.detach());
  } else {
    // Gradients of s·L_m add into the flat buffer; no host sync happens here.
    (loss_sum * s).backward();
    window_loss_.add_(loss_sum.detach());
  }
  if (shards_gradients()) {
    sharded_->end_micro_batch();  // ZeRO-2: this micro-batch's buckets are reduced into the shard
  } else if (overlap_armed_) {
    start_ready_buckets(/*all=*/true);  // parameters this micro-batch gave no gradient
    overlap_armed_ = false;             // (a low-precision model's gradient was folded bucket by bucket)
  } else if (micro_grad_.defined()) {
    fold_micro_grad();
  }
  if (noise_ && window_micro_batches_ == 0) {  // the small batch of the noise scale: no host read here
    small_sq_ = shards_gradients() ? sharded_->measured_square_norm().clone() : window_norm().square();
    small_count_ = count_of(samples, items);
  }
  window_samples_ += samples;
  window_items_ += items;
  ++window_micro_batches_;
}

// The micro-batch's gradient, alone in micro_grad_, joins the window sum: all-reduced first when
// syncing every micro-batch; in fp32 under master weights, where many small contributions do not
// round away (a bf16 sum keeps 8 significant bits).
void Accumulator::fold_micro_grad() {
  if (distributed() && sync_mode_ == SyncMode::kEveryMicroBatch) {
    reducer_->sum_across_ranks(micro_grad_);
    if (!low_precision_model_) {
      for (size_t i = 0; i < params_.size(); ++i) params_[i].mutable_grad() = flat_views_[i];
    }
  }
  flat_grad_.add_(micro_grad_);
  micro_grad_.zero_();
}

void Accumulator::set_noise_scale(NoiseScaleEstimator* estimator) {
  if (estimator && distributed() && sync_mode_ == SyncMode::kEveryMicroBatch)
    throw ConfigError(
        "the noise scale needs per-window sync (every-micro-batch sync mixes the ranks' first micro-batches)");
  if (estimator && options_.normalization == Normalization::kNaiveMicroMean)
    throw ConfigError("the noise scale needs per-item normalization");
  noise_ = estimator;
}

void Accumulator::empty_micro_batch() {
  if (shards_gradients()) {  // ZeRO-2 reduces every micro-batch: this rank joins with zeros
    sharded_->empty_micro_batch();
    return;
  }
  if (!(distributed() && sync_mode_ == SyncMode::kEveryMicroBatch)) return;
  if (!low_precision_model_) {
    for (size_t i = 0; i < params_.size(); ++i) params_[i].mutable_grad() = micro_views_[i];
  }
  fold_micro_grad();  // contributes zeros, takes part in the collective
}

int64_t Accumulator::count_of(int64_t samples, int64_t items) const {
  switch (options_.normalization) {
    case Normalization::kPerSample: return samples;
    case Normalization::kPerItem: return items;
    case Normalization::kNaiveMicroMean: return items > 0 ? options_.nominal_count : 0;  // f = 1
  }
  return 0;
}

int64_t Accumulator::window_count() const { return count_of(window_samples_, window_items_); }

at::Tensor Accumulator::window_norm() const {
  return detail::norm64(shards_gradients() ? zero_->shard_grad() : flat_grad_);
}

// f = Ñ/(N·S): turns the buffer into the exact, unscaled window gradient (see the math above).
// The one place this factor is computed; step() and window_gradient() both use it.
double Accumulator::boundary_factor(int64_t count) const {
  const double loss_scale = scaler_ ? scaler_->scale() : 1.0;
  return static_cast<double>(options_.nominal_count) / (static_cast<double>(count) * loss_scale);
}

at::Tensor Accumulator::window_gradient() const {
  const int64_t count = window_count();
  if (count == 0) throw std::logic_error("the open window has nothing in it");
  if (shards_gradients()) throw std::logic_error("under ZeRO-2 no rank holds the whole window gradient");
  return flat_grad_ * boundary_factor(count);
}

void Accumulator::discard_window() {
  if (sharded_) sharded_->discard_window();
  if (gather_) {
    gather_->end_window();
    gathers_before_ = gather_->gathers();  // a probe's or a replayed window's gathers are not the next step's
  }
  if (shards_gradients()) zero_->shard_grad().zero_();
  if (buffer_.defined()) buffer_.zero_();
  if (micro_grad_.defined()) micro_grad_.zero_();
  if (!low_precision_model_ && !shards_gradients()) {
    for (size_t i = 0; i < params_.size(); ++i) params_[i].mutable_grad() = flat_views_[i];
  }
  window_loss_.zero_();
  window_samples_ = window_items_ = window_micro_batches_ = window_positions_ = small_count_ = 0;
}

StepReport Accumulator::step() {
  const auto start = std::chrono::steady_clock::now();
  if (!distributed() && (window_micro_batches_ == 0 || window_count() == 0)) {
    throw std::logic_error(fmt::format("optimizer step on a window with {} micro-batches and no {}",
                                       window_micro_batches_,
                                       options_.normalization == Normalization::kPerSample ? "samples" : "items"));
  }
  if (zero_ && !distributed()) throw std::logic_error("ZeRO step without the data-parallel group (set_reducer)");
  const at::Tensor& grad_home = low_precision_model_ ? micro_grad_ : flat_grad_;
  for (const at::Tensor& p : shards_gradients() ? std::vector<at::Tensor>{} : params_) {
    const at::Tensor& g = p.grad();
    const auto* base = static_cast<const char*>(grad_home.data_ptr());
    const auto* at = g.defined() ? static_cast<const char*>(g.data_ptr()) : nullptr;
    if (at < base || at >= base + grad_home.nbytes()) {
      throw std::logic_error(
          "a parameter's .grad no longer views the accumulation buffer (zero_grad or a replaced .grad?)");
    }
  }

  const WindowTotals totals = zero_ ? reduce_scatter_totals() : distributed() ? all_reduce_totals() : local_totals();
  const int64_t samples = totals.samples, items = totals.items;
  const int64_t count = count_of(samples, items);  // global when data parallel
  if (count == 0) throw std::logic_error("optimizer step on a window with no samples or items on any rank");

  const double loss_scale = scaler_ ? scaler_->scale() : 1.0;
  const double f = boundary_factor(count);
  const double loss_sum = totals.loss_sum, grad_norm = f * totals.grad_norm;

  StepReport r;
  r.loss = loss_sum / static_cast<double>(count);
  r.grad_norm = grad_norm;
  r.loss_scale = loss_scale;
  r.samples = samples;
  r.items = items;
  r.computed_items = totals.positions;
  r.micro_batches = window_micro_batches_;
  r.stop_requested = totals.stop_requested;
  r.lr = scheduled_lr();
  r.lr_scale = lr_scale_;

  // The norm doubles as the overflow check: an inf or NaN anywhere in G makes ‖G‖ non-finite.
  // (Checked on the host because the norm is read anyway; no separate pass or flag.)
  r.skipped = scaler_ && !std::isfinite(grad_norm);
  // Nothing makes such a window finite again without a loss scaler (the update would carry it into
  // every weight), nor with a scale already below 2^-24, fp16's smallest step, where the forward
  // overflows by itself: stop with the last good step's weights (the same step on every rank).
  if (scaler_ ? r.skipped && loss_scale < 0x1p-24 : !(std::isfinite(grad_norm) && std::isfinite(r.loss))) {
    discard_window();
    throw NumericalError(fmt::format(
        "step {}: the window's loss ({}) or gradient norm ({}) is not finite{}, so its update was not applied and "
        "training stops: lower the learning rate, clip the gradient (--clip), or look for inf/NaN in the data",
        steps_ + 1, std::isnan(r.loss) ? NAN : r.loss, std::isnan(grad_norm) ? NAN : grad_norm,  // "nan", never "-nan"
        scaler_ ? fmt::format(" even at loss scale {:g}", loss_scale) : ""));
  }
  if (noise_) {
    // |G_small|² of the first micro-batch's mean gradient: the buffer held S·s·n_small times it.
    const double s_small = pre_scale_ * loss_scale;
    const NoiseScaleReading n = totals.small_count > 0 && !r.skipped
                                    ? noise_->update(totals.small_mean_sq / (s_small * s_small), totals.small_count,
                                                     grad_norm * grad_norm, static_cast<double>(count))
                                    : noise_->reading();
    r.noise_measured = true;
    r.noise_scale = n.noise_scale;
    r.grad_sq_est = n.grad_sq;
    r.trace_sigma_est = n.trace_sigma;
  }
  if (r.skipped) {
    scaler_->update(/*found_inf=*/true);
  } else {
    if (options_.max_grad_norm > 0 && grad_norm > options_.max_grad_norm) {
      r.clip_coef = options_.max_grad_norm / (grad_norm + 1e-6);
    }
    // Normalization, unscaling and clipping folded into a single factor: the fused optimizer
    // applies it inside its update (no pass of our own); otherwise one multiply over the buffer,
    // skipped when it is 1.
    // Under ZeRO the optimizer reads only this rank's shard of the summed gradient.
    const double scale = f * r.clip_coef;
    if (scale != 1.0) {
      if (auto* fused = dynamic_cast<FusedAdamW*>(&optimizer_)) {
        fused->scale_next_step(scale);
      } else {
        (zero_ ? zero_->shard_grad() : flat_grad_).mul_(scale);
      }
    }
    if (schedule_) set_lr(optimizer_, r.lr);
    optimizer_.step();
    ++updates_;
    if (master_) master_->copy_to_model();
    if (zero_ && zero_->stage() < 3)
      reducer_->all_gather(zero_->gather_input(), zero_->flat_params());  // every rank's updated shard
    else if (zero_)
      zero_->refresh_gather_input();  // ZeRO-3: the units gather it when they next run
    if (scaler_) scaler_->update(/*found_inf=*/false);
  }
  ++steps_;
  r.step = steps_;
  if (reducer_) {  // every collective of the window, the all-gather of ZeRO included
    r.allreduce_calls = reducer_->calls() - calls_before_;
    r.allreduce_bytes = reducer_->bytes() - bytes_before_;
    calls_before_ = reducer_->calls();
    bytes_before_ = reducer_->bytes();
  }
  if (gather_) {
    gather_->end_window();  // units kept whole through the window are stale now
    r.parameter_gathers = gather_->gathers() - gathers_before_;
    gathers_before_ = gather_->gathers();
  }

  if (shards_gradients()) zero_->shard_grad().zero_();  // ZeRO-2/3 sum into the shard; ZeRO-1 overwrites it
  if (buffer_.defined()) buffer_.zero_();
  window_loss_.zero_();
  window_samples_ = window_items_ = window_micro_batches_ = window_positions_ = small_count_ = 0;
  r.boundary_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace gradacc
