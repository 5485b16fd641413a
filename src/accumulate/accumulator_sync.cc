// The Accumulator's side that is not its algorithm (that, with its math, is in accumulator.cc):
// the window's totals, read on one process or gathered across ranks (by one all-reduce of the
// buffer with its statistics tail, or by ZeRO-1's reduce-scatter and a small all-reduce); joining
// a group; the overlap of the last backward with the reduction, bucket by bucket; ZeRO's
// settings; and the run's position.
#include "accumulate/accumulator.h"

#include <cmath>
#include <stdexcept>

#include <ATen/ops/cat.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/zeros_like.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include "accumulate/window_stats.h"
#include "gradacc/errors.h"

namespace gradacc {

using detail::kSplit;

void Accumulator::set_reducer(GradientReducer* reducer, SyncMode mode) {
  if (window_micro_batches_ != 0) throw std::logic_error("set_reducer() inside an open window");
  if (zero_ && (!reducer || reducer->world_size() != zero_->world_size() || reducer->rank() != zero_->rank()))
    throw ConfigError("ZeRO: the reducer's ranks are not the shard layout's");
  if (zero_ && mode != SyncMode::kPerWindow)
    throw ConfigError("ZeRO communicates once per window (--sync window), not every micro-batch");
  reducer_ = reducer;
  sync_mode_ = mode;
  if (shards_gradients()) {  // the buckets, made without the group (for the memory planner), reduce over it
    sharded_->set_reducer(reducer_);
    return;
  }
  if (!distributed()) return;
  const at::ScalarType t = buffer_.scalar_type();
  if (t != at::kFloat && t != at::kDouble) {
    throw ConfigError(fmt::format("data-parallel training sums gradients in fp32, not {} (use --grad-accum-dtype fp32)",
                                  c10::toString(t)));
  }
  if (mode == SyncMode::kEveryMicroBatch && !micro_grad_.defined()) {
    micro_grad_ = at::zeros_like(flat_grad_);
    int64_t offset = 0;
    for (const at::Tensor& p : params_) {
      micro_views_.push_back(micro_grad_.narrow(0, offset, p.numel()).view(p.sizes()));
      offset += p.numel();
    }
  }
  calls_before_ = reducer_->calls();
  bytes_before_ = reducer_->bytes();
}

// Single process: the one device→host transfer of the step reads the window loss sum and ‖G‖ (and
// the noise scale's first-micro-batch ‖G‖²).
Accumulator::WindowTotals Accumulator::local_totals() {
  WindowTotals t;
  t.samples = window_samples_;
  t.items = window_items_;
  t.positions = window_positions_;
  t.stop_requested = stop_signal_ && *stop_signal_ != 0;
  const at::Tensor host = (small_count_ > 0 ? at::stack({window_loss_, window_norm(), small_sq_})
                                            : at::stack({window_loss_, window_norm()}))
                              .cpu();
  const double* v = host.data_ptr<double>();
  t.loss_sum = v[0];
  t.grad_norm = v[1];
  if (small_count_ > 0) {
    t.small_count = static_cast<double>(small_count_);
    t.small_mean_sq = v[2] / (t.small_count * t.small_count);
  }
  return t;
}

// Data parallel: the window's loss and counts ride in the buffer's tail, so one all-reduce pass
// (of a few buckets) makes gradients, loss and counts global at once. Per-micro-batch sync has
// reduced the gradients already; only the tail is left.
Accumulator::WindowTotals Accumulator::all_reduce_totals() {
  auto* h = stats_host_.data_ptr<float>();
  h[1] = static_cast<float>(window_samples_ / kSplit);
  h[2] = static_cast<float>(window_samples_ % kSplit);
  h[3] = static_cast<float>(window_items_ / kSplit);
  h[4] = static_cast<float>(window_items_ % kSplit);
  h[5] = stop_signal_ && *stop_signal_ != 0 ? 1.0f : 0.0f;
  h[6] = 0.0f;
  h[7] = small_count_ > 0 ? 1.0f : 0.0f;
  h[8] = static_cast<float>(small_count_);
  h[9] = static_cast<float>(window_positions_ / kSplit);
  h[10] = static_cast<float>(window_positions_ % kSplit);
  stats_.copy_(stats_host_);
  stats_.narrow(0, 0, 1).copy_(window_loss_.reshape({1}));
  if (small_count_ > 0) {  // this rank's first micro-batch, as the mean gradient of its own count
    const double n = static_cast<double>(small_count_);
    stats_.narrow(0, 6, 1).copy_((small_sq_ / (n * n)).reshape({1}));
  }
  if (!buckets_.empty()) {  // overlap: the gradient went bucket by bucket; the tail follows alone
    start_ready_buckets(/*all=*/true);
    reducer_->wait_pending();
    next_bucket_ = 0;
  }
  if (sync_mode_ == SyncMode::kPerWindow && buckets_.empty() && !reducer_->rounds_on_wire()) {
    reducer_->sum_across_ranks(buffer_);  // gradient and tail in one pass
  } else {
    // A 16-bit wire rounds what it sums: the gradient goes through it, the counts stay exact.
    if (sync_mode_ == SyncMode::kPerWindow && buckets_.empty()) reducer_->sum_across_ranks(flat_grad_);
    reducer_->sum_exact(stats_);
  }
  // The one device→host transfer of the step: global loss, counts and ‖G‖ (and the noise scale's
  // small batches, summed over ranks).
  const at::Tensor host = at::cat({stats_.to(at::kDouble), window_norm().reshape({1})}).cpu();
  const double* v = host.data_ptr<double>();
  WindowTotals t;
  t.loss_sum = v[0];
  t.samples = static_cast<int64_t>(v[1]) * kSplit + static_cast<int64_t>(v[2]);
  t.items = static_cast<int64_t>(v[3]) * kSplit + static_cast<int64_t>(v[4]);
  t.stop_requested = v[5] > 0;  // any rank's request stops every rank after this same window
  if (v[7] > 0) {               // the mean over the ranks that measured one: the same on every rank
    t.small_mean_sq = v[6] / v[7];
    t.small_count = v[8] / v[7];
  }
  t.positions = static_cast<int64_t>(v[9]) * kSplit + static_cast<int64_t>(v[10]);
  t.grad_norm = v[detail::kStatSlots];
  return t;
}

// ZeRO-1: the buffer is reduce-scattered (this rank's slice of Σ_r G_r lands in shard_grad; under
// ZeRO-2 it is there already, summed micro-batch by micro-batch), then
// one small all-reduce sums the loss, the counts and the shards' ‖G‖² (float64, so the counts are
// exact): ‖G‖ = sqrt(Σ_r ‖shard_r‖²), the global norm on every rank.
Accumulator::WindowTotals Accumulator::reduce_scatter_totals() {
  if (sharded_)
    sharded_->end_window();  // ZeRO-2: the micro-batches' reduces, the last ones waited for here
  else
    reducer_->reduce_scatter(buffer_, zero_->shard_grad());
  auto* h = stats_host_.data_ptr<double>();
  h[1] = static_cast<double>(window_samples_);
  h[2] = static_cast<double>(window_items_);
  h[3] = stop_signal_ && *stop_signal_ != 0 ? 1.0 : 0.0;
  h[5] = small_count_ > 0 ? 1.0 : 0.0;
  h[6] = static_cast<double>(small_count_);
  h[8] = static_cast<double>(window_positions_);
  zero_stats_.copy_(stats_host_);
  zero_stats_.narrow(0, 0, 1).copy_(window_loss_.reshape({1}));
  if (small_count_ > 0) {
    const double n = static_cast<double>(small_count_);
    zero_stats_.narrow(0, 4, 1).copy_((small_sq_ / (n * n)).reshape({1}));
  }
  zero_stats_.narrow(0, 7, 1).copy_(detail::norm64(zero_->shard_grad()).square().reshape({1}));
  reducer_->sum_exact(zero_stats_);
  const at::Tensor host = zero_stats_.cpu();  // the step's one device→host transfer
  const double* v = host.data_ptr<double>();
  WindowTotals t;
  t.loss_sum = v[0];
  t.samples = static_cast<int64_t>(v[1]);
  t.items = static_cast<int64_t>(v[2]);
  t.stop_requested = v[3] > 0;
  if (v[5] > 0) {
    t.small_mean_sq = v[4] / v[5];
    t.small_count = v[6] / v[5];
  }
  t.positions = static_cast<int64_t>(v[8]);
  t.grad_norm = std::sqrt(v[7]);
  return t;
}

// ── Overlap ──────────────────────────────────────────────────────────────────────────────────
// The window gradient is final once the last micro-batch's backward has added into it, and the
// backward produces gradients roughly from the last layer to the first. So the buffer is cut into
// buckets in reverse parameter order, and a bucket's all-reduce starts as soon as the hooks of all
// its parameters have fired in that last backward, while the backward goes on with earlier layers.
// Buckets start strictly in index order (a full bucket waits for the ones before it), so every
// rank issues the same collectives in the same order even if their hooks fire in another order.
struct Accumulator::OverlapHook : torch::autograd::PostAccumulateGradHook {
  OverlapHook(Accumulator* a, size_t i) : accumulator(a), param(i) {}
  void operator()(const at::Tensor&) override { accumulator->parameter_ready(param); }
  Accumulator* accumulator;
  size_t param;
};

void Accumulator::set_overlap(int64_t bucket_bytes) {
  if (bucket_bytes < 1) throw ConfigError("overlap: bucket_bytes must be ≥ 1");
  if (shards_gradients()) {
    if (window_micro_batches_ != 0) throw std::logic_error("set_overlap() inside an open window");
    sharded_.reset();  // its destructor removes the hooks the new one sets
    sharded_ = std::make_unique<GradientShard>(params_, *zero_, reducer_, bucket_bytes);
    sharded_->set_accumulate_unsharded(unsharded_accumulation_);
    set_parameter_gather(gather_);
    return;
  }
  if (!distributed() || sync_mode_ != SyncMode::kPerWindow)
    throw ConfigError("overlap needs data parallel with per-window sync (set_reducer first)");
  if (zero_) throw ConfigError("overlap: ZeRO-1 reduce-scatters the whole buffer at the boundary");
  const int64_t per_bucket = std::max<int64_t>(1, bucket_bytes / static_cast<int64_t>(flat_grad_.element_size()));
  buckets_.clear();
  bucket_of_.assign(params_.size(), 0);
  int64_t end = flat_grad_.numel();
  for (size_t k = params_.size(); k-- > 0;) {  // reverse order: the last parameters' gradients come first
    const int64_t n = params_[k].numel();
    if (buckets_.empty() || buckets_.back().end - buckets_.back().begin >= per_bucket)
      buckets_.push_back(Bucket{end, end, 0, 0});
    Bucket& b = buckets_.back();
    b.begin -= n;
    ++b.params;
    bucket_of_[k] = buckets_.size() - 1;
    end -= n;
    torch::autograd::impl::set_post_acc_grad_hooks(params_[k], std::make_unique<OverlapHook>(this, k));
  }
}

Accumulator::~Accumulator() {
  if (buckets_.empty()) return;
  for (const at::Tensor& p : params_) torch::autograd::impl::set_post_acc_grad_hooks(p, nullptr);
}

void Accumulator::overlap_next_backward() {
  // ZeRO-3's unsharded accumulation: the window's one reduction starts during this backward.
  if (sharded_ && unsharded_accumulation_) sharded_->overlap_next_backward();
  if (buckets_.empty()) return;
  // The noise scale reads the first micro-batch's gradient after its backward: if that is also
  // the last, the buckets must not be in flight yet. They start at the boundary then.
  if (noise_ && window_micro_batches_ == 0) return;
  for (Bucket& b : buckets_) b.remaining = b.params;
  overlap_armed_ = true;
}

void Accumulator::parameter_ready(size_t param) {
  if (!overlap_armed_) return;
  --buckets_[bucket_of_[param]].remaining;
  start_ready_buckets(/*all=*/false);
}

void Accumulator::start_ready_buckets(bool all) {
  while (next_bucket_ < buckets_.size() && (all || buckets_[next_bucket_].remaining == 0)) {
    const Bucket& b = buckets_[next_bucket_++];
    if (overlap_armed_ && low_precision_model_) {  // this micro-batch's gradient joins the fp32 sum first
      flat_grad_.narrow(0, b.begin, b.end - b.begin).add_(micro_grad_.narrow(0, b.begin, b.end - b.begin));
      micro_grad_.narrow(0, b.begin, b.end - b.begin).zero_();
    }
    reducer_->start_sum(flat_grad_.narrow(0, b.begin, b.end - b.begin));
  }
}

void Accumulator::set_parameter_gather(ParameterGather* gather) {
  if (gather && (!zero_ || zero_->stage() != 3)) throw ConfigError("a ParameterGather needs a ZeRO-3 accumulator");
  gather_ = gather;
  if (!sharded_) return;
  if (gather_)
    sharded_->set_arrival_listener([gather](size_t param) { gather->parameter_ready(param); });
  else
    sharded_->set_arrival_listener({});
  gathers_before_ = gather_ ? gather_->gathers() : 0;
}

void Accumulator::set_lr_scale(double scale, std::optional<double> position) {
  if (!(scale > 0) || !std::isfinite(scale)) throw ConfigError(fmt::format("lr scale {} is not positive", scale));
  if (!schedule_ && (scale != 1.0 || position))
    throw ConfigError("an lr scale needs an LR schedule (the base it multiplies)");
  if (position && !(*position >= 0)) throw ConfigError(fmt::format("schedule position {} is negative", *position));
  lr_scale_ = scale;
  lr_position_ = position;
}

double Accumulator::scheduled_lr() const {
  if (!schedule_) return optimizer_.param_groups().front().options().get_lr();
  return (lr_position_ ? schedule_->lr_at_position(*lr_position_) : schedule_->lr_at(updates_)) * lr_scale_;
}

void Accumulator::set_accumulate_unsharded(bool on) {
  if (on && (!zero_ || zero_->stage() != 3)) throw ConfigError("unsharded accumulation is ZeRO-3's (--zero 3)");
  if (window_micro_batches_ != 0) throw std::logic_error("set_accumulate_unsharded() inside an open window");
  unsharded_accumulation_ = on;
  if (sharded_) sharded_->set_accumulate_unsharded(on);
}

void Accumulator::resume_at(int64_t steps_taken, int64_t updates_applied) {
  if (window_micro_batches_ != 0) throw std::logic_error("resume_at() inside an open window");
  if (updates_applied < 0 || updates_applied > steps_taken) {
    throw std::logic_error(fmt::format("resume_at({}, {}): need 0 ≤ updates ≤ steps", steps_taken, updates_applied));
  }
  steps_ = steps_taken;
  updates_ = updates_applied;
}

std::map<std::string, std::string> Accumulator::state() const {
  return {{"step", std::to_string(steps_)}, {"updates", std::to_string(updates_)}};
}

void Accumulator::load_state(const std::map<std::string, std::string>& state) {
  const int64_t steps = state_count(state, "step"), updates = state_count(state, "updates");
  if (updates > steps)
    throw ConfigError(fmt::format("{} updates after {} steps: more updates than steps", updates, steps));
  resume_at(steps, updates);
}

int64_t Accumulator::gradient_bytes() const {
  int64_t bytes = 0;
  for (const at::Tensor* t : {&buffer_, &micro_grad_}) {
    if (t->defined()) bytes += static_cast<int64_t>(t->nbytes());
  }
  if (zero_) bytes += static_cast<int64_t>(zero_->shard_grad().nbytes());
  if (sharded_) bytes += sharded_->staging_bytes();
  return bytes;
}

}  // namespace gradacc
