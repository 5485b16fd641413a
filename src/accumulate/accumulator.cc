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
// ─────────────────────────────────────────────────────────────────────────────────────────────
#include "gradacc/accumulate/accumulator.h"

#include <chrono>
#include <cmath>
#include <stdexcept>

#include <ATen/ops/empty.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/zeros.h>
#include <fmt/format.h>

#include "gradacc/optim/fused_adamw.h"
#include "gradacc/optim/optimizer.h"

namespace gradacc {

Accumulator::Accumulator(torch::nn::Module& model, torch::optim::Optimizer& optimizer, const LrSchedule* schedule,
                         AccumulatorOptions options, MasterWeights* master, LossScaler* scaler)
    : optimizer_(optimizer), schedule_(schedule), options_(options), master_(master), scaler_(scaler) {
  if (options_.max_grad_norm < 0) {
    throw std::invalid_argument(fmt::format("max_grad_norm must be ≥ 0, got {}", options_.max_grad_norm));
  }
  if (options_.nominal_count < 1) {
    throw std::invalid_argument(fmt::format("nominal_count must be ≥ 1, got {}", options_.nominal_count));
  }
  pre_scale_ = 1.0 / static_cast<double>(options_.nominal_count);

  int64_t total = 0;
  for (const at::Tensor& p : model.parameters()) {
    if (!p.requires_grad()) continue;
    if (!params_.empty() && (p.scalar_type() != params_[0].scalar_type() || p.device() != params_[0].device())) {
      throw std::invalid_argument("all trainable parameters must share one dtype and device");
    }
    params_.push_back(p);
    total += p.numel();
  }
  if (params_.empty()) throw std::invalid_argument("the model has no trainable parameters");

  // One contiguous buffer; each .grad is a view of its slice. Autograd adds into a defined .grad
  // in place, so every backward accumulates straight into this buffer: zeroing is one memset,
  // the norm one reduction, a rescale one multiply, and a data-parallel reduction one tensor.
  flat_grad_ = at::zeros({total}, params_[0].options().requires_grad(false));
  if (master_) {
    // Backward writes the model's low-precision .grad; the fp32 sum is the masters' .grad.
    if (master_->model_params().size() != params_.size()) throw std::invalid_argument("master weights of another model");
    flat_grad_ = flat_grad_.to(at::kFloat);
    model_grad_ = at::zeros({total}, params_[0].options().requires_grad(false));
  }
  int64_t offset = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor& p = params_[i];
    if (master_) {
      if (!master_->model_params()[i].is_same(p)) throw std::invalid_argument("master weights of another model");
      p.mutable_grad() = model_grad_.narrow(0, offset, p.numel()).view(p.sizes());
      master_->masters()[i].mutable_grad() = flat_grad_.narrow(0, offset, p.numel()).view(p.sizes());
    } else {
      p.mutable_grad() = flat_grad_.narrow(0, offset, p.numel()).view(p.sizes());
    }
    offset += p.numel();
  }
  window_loss_ = at::zeros({}, params_[0].options().dtype(at::kDouble).requires_grad(false));
}

void Accumulator::accumulate(const at::Tensor& loss_sum, int64_t samples, int64_t items) {
  if (samples < 0 || items < 0) throw std::invalid_argument("micro-batch counts must be ≥ 0");
  const double s = pre_scale_ * (scaler_ ? scaler_->scale() : 1.0);  // s, times S with a loss scaler
  if (options_.normalization == Normalization::kNaiveMicroMean) {  // for comparison only
    const at::Tensor micro_mean = loss_sum / static_cast<double>(std::max<int64_t>(items, 1));
    (micro_mean * s).backward();
    window_loss_.add_(micro_mean.detach());
  } else {
    // Gradients of s·L_m add into the flat buffer; no host sync happens here.
    (loss_sum * s).backward();
    window_loss_.add_(loss_sum.detach());
  }
  if (master_) {
    // Low-precision parameters: move this micro-batch's gradient into the fp32 sum, where many
    // small contributions do not round away (a bf16 sum keeps 8 significant bits).
    flat_grad_.add_(model_grad_);
    model_grad_.zero_();
  }
  window_samples_ += samples;
  window_items_ += items;
  ++window_micro_batches_;
}

int64_t Accumulator::window_count() const {
  switch (options_.normalization) {
    case Normalization::kPerSample: return window_samples_;
    case Normalization::kPerItem: return window_items_;
    case Normalization::kNaiveMicroMean: return window_items_ > 0 ? options_.nominal_count : 0;  // f = 1
  }
  return 0;
}

at::Tensor Accumulator::window_gradient() const {
  const int64_t count = window_count();
  if (count == 0) throw std::logic_error("the open window has nothing in it");
  const double scale = scaler_ ? scaler_->scale() : 1.0;
  return flat_grad_ * (static_cast<double>(options_.nominal_count) / (static_cast<double>(count) * scale));
}

void Accumulator::resume_at(int64_t steps_taken, int64_t updates_applied) {
  if (window_micro_batches_ != 0) throw std::logic_error("resume_at() inside an open window");
  if (updates_applied < 0 || updates_applied > steps_taken) {
    throw std::logic_error(fmt::format("resume_at({}, {}): need 0 ≤ updates ≤ steps", steps_taken, updates_applied));
  }
  steps_ = steps_taken;
  updates_ = updates_applied;
}

StepReport Accumulator::step() {
  const auto start = std::chrono::steady_clock::now();
  const int64_t count = window_count();
  if (window_micro_batches_ == 0 || count == 0) {
    throw std::logic_error(fmt::format("optimizer step on a window with {} micro-batches and no {}",
                                       window_micro_batches_,
                                       options_.normalization == Normalization::kPerSample ? "samples" : "items"));
  }
  const at::Tensor& grad_home = master_ ? model_grad_ : flat_grad_;
  for (const at::Tensor& p : params_) {
    const at::Tensor& g = p.grad();
    const auto* base = static_cast<const char*>(grad_home.data_ptr());
    const auto* at = g.defined() ? static_cast<const char*>(g.data_ptr()) : nullptr;
    if (at < base || at >= base + grad_home.nbytes()) {
      throw std::logic_error("a parameter's .grad no longer views the accumulation buffer (zero_grad or a replaced .grad?)");
    }
  }

  // f = Ñ/(N·S) turns the buffer into the exact, unscaled window gradient (see the math above).
  const double loss_scale = scaler_ ? scaler_->scale() : 1.0;
  const double f = static_cast<double>(options_.nominal_count) / (static_cast<double>(count) * loss_scale);

  // The one device→host transfer of the step: window loss sum and ‖G‖.
  const at::Tensor norm_G = at::linalg_vector_norm(flat_grad_, 2).to(at::kDouble);
  const at::Tensor host = at::stack({window_loss_, norm_G}).cpu();
  const double loss_sum = host[0].item<double>(), grad_norm = f * host[1].item<double>();

  StepReport r;
  r.loss = loss_sum / static_cast<double>(count);
  r.grad_norm = grad_norm;
  r.loss_scale = loss_scale;
  r.samples = window_samples_;
  r.items = window_items_;
  r.micro_batches = window_micro_batches_;
  r.lr = schedule_ ? schedule_->lr_at(updates_) : optimizer_.param_groups().front().options().get_lr();

  // The norm doubles as the overflow check: an inf or NaN anywhere in G makes ‖G‖ non-finite.
  // (Checked on the host because the norm is read anyway; no separate pass or flag.)
  r.skipped = scaler_ && !std::isfinite(grad_norm);
  if (r.skipped) {
    scaler_->update(/*found_inf=*/true);
  } else {
    if (options_.max_grad_norm > 0 && grad_norm > options_.max_grad_norm) {
      r.clip_coef = options_.max_grad_norm / (grad_norm + 1e-6);
    }
    // Normalization, unscaling and clipping folded into a single factor: the fused optimizer
    // applies it inside its update (no pass of our own); otherwise one multiply over the buffer,
    // skipped when it is 1.
    const double scale = f * r.clip_coef;
    if (scale != 1.0) {
      if (auto* fused = dynamic_cast<FusedAdamW*>(&optimizer_)) {
        fused->scale_next_step(scale);
      } else {
        flat_grad_.mul_(scale);
      }
    }
    if (schedule_) set_lr(optimizer_, r.lr);
    optimizer_.step();
    ++updates_;
    if (master_) master_->copy_to_model();
    if (scaler_) scaler_->update(/*found_inf=*/false);
  }
  ++steps_;
  r.step = steps_;

  flat_grad_.zero_();
  window_loss_.zero_();
  window_samples_ = window_items_ = window_micro_batches_ = 0;
  r.boundary_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace gradacc
