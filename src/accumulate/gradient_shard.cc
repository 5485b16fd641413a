#include "accumulate/gradient_shard.h"

#include <algorithm>
#include <stdexcept>

#include <ATen/ops/zeros.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/csrc/autograd/variable.h>

#include "accumulate/window_stats.h"
#include "gradacc/errors.h"

namespace gradacc {

struct GradientShard::Hook : torch::autograd::PostAccumulateGradHook {
  Hook(GradientShard* s, size_t i) : shard(s), param(i) {}
  void operator()(const at::Tensor&) override { shard->parameter_ready(param); }
  GradientShard* shard;
  size_t param;
};

GradientShard::GradientShard(std::vector<at::Tensor> params, ZeroShard& zero, GradientReducer* reducer,
                             int64_t bucket_bytes)
    : params_(std::move(params)), zero_(zero), reducer_(reducer) {
  if (bucket_bytes < 1) throw ConfigError("ZeRO-2: bucket_bytes must be ≥ 1");
  set_reducer(reducer);
  const int64_t per_bucket = bucket_elements(zero_, bucket_bytes);
  // Buckets from the last element down: gradients come roughly in reverse parameter order. A
  // bucket ends at the current position and begins no lower than its segment (one owner's part).
  const std::vector<ZeroShard::Segment>& segments = zero_.segments();
  for (auto seg = segments.rbegin(); seg != segments.rend(); ++seg) {
    for (int64_t end = seg->end; end > seg->begin;) {
      const int64_t begin = std::max(end - per_bucket, seg->begin);
      buckets_.push_back(Bucket{begin, end, seg->owner, seg->shard_offset + (begin - seg->begin), 0, 0, -1});
      slot_length_ = std::max(slot_length_, end - begin);
      end = begin;
    }
  }
  // Each parameter's slices, bucket by bucket.
  pieces_.resize(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const int64_t lo = zero_.flat_offset(i), hi = lo + params_[i].numel();
    for (size_t k = 0; k < buckets_.size(); ++k) {
      Bucket& b = buckets_[k];
      const int64_t from = std::max(lo, b.begin), to = std::min(hi, b.end);
      if (from >= to) continue;
      pieces_[i].push_back(Piece{k, from - lo, from - b.begin, to - from});
      ++b.pieces;
    }
    params_[i].mutable_grad().reset();  // autograd hands each gradient over fresh; the hook takes it
    torch::autograd::impl::set_post_acc_grad_hooks(params_[i], std::make_unique<Hook>(this, i));
  }
  const at::TensorOptions fp32 = zero_.shard_grad().options();
  for (int s = 0; s < 2; ++s) {
    slots_.push_back(at::zeros({slot_length_}, fp32));
    slot_busy_.push_back(0);
  }
  square_norm_ = at::zeros({}, fp32.dtype(at::kDouble));
  reset_micro_batch();
}

void GradientShard::set_reducer(GradientReducer* reducer) {
  if (reducer && (reducer->world_size() != zero_.world_size() || reducer->rank() != zero_.rank()))
    throw ConfigError("ZeRO-2: the reducer's ranks are not the shard layout's");
  if (!in_flight_.empty()) throw std::logic_error("ZeRO-2: set_reducer with reductions in flight");
  reducer_ = reducer;
}

// At most bucket_bytes of fp32, and at most 1/8 of a shard, so that the two staging buffers stay
// within a quarter of the shard whatever the model's size.
int64_t GradientShard::bucket_elements(const ZeroShard& zero, int64_t bucket_bytes) {
  return std::max<int64_t>(1, std::min({bucket_bytes / 4, (zero.length() + 7) / 8, zero.total()}));
}

GradientShard::~GradientShard() {
  for (const at::Tensor& p : params_) torch::autograd::impl::set_post_acc_grad_hooks(p, nullptr);
}

int64_t GradientShard::staging_bytes() const {
  const int64_t sum = unsharded_.defined() ? static_cast<int64_t>(unsharded_.nbytes()) : 0;
  return static_cast<int64_t>(slots_.size()) * slot_length_ * 4 + sum;
}

void GradientShard::set_accumulate_unsharded(bool on) {
  if (!in_flight_.empty()) throw std::logic_error("ZeRO: set_accumulate_unsharded with reductions in flight");
  if (on == accumulates_unsharded()) return;
  slots_.clear();
  slot_busy_.clear();
  for (Bucket& b : buckets_) b.slot = -1;
  if (on) {
    unsharded_ = at::zeros({zero_.padded()}, zero_.shard_grad().options());
    return;
  }
  unsharded_.reset();
  for (int s = 0; s < 2; ++s) {
    slots_.push_back(at::zeros({slot_length_}, zero_.shard_grad().options()));
    slot_busy_.push_back(0);
  }
}

void GradientShard::reset_micro_batch() {
  for (Bucket& b : buckets_) b.remaining = b.pieces;
  arrived_.assign(params_.size(), 0);
  next_ = 0;
}

void GradientShard::parameter_ready(size_t param) {
  at::Tensor& p = params_[param];
  const at::Tensor g = p.grad();
  if (!g.defined()) return;
  torch::NoGradGuard no_grad;
  const bool again = arrived_[param];
  if (again) {
    // A second gradient for one parameter in one backward (reentrant recomputation): it can only
    // join a bucket that has not started yet.
    for (const Piece& piece : pieces_[param]) {
      if (piece.bucket < next_)
        throw std::logic_error("ZeRO-2: a parameter's gradient arrived again after its bucket was reduced");
    }
  }
  const at::Tensor flat = g.reshape({-1});
  if (measuring_) square_norm_.add_(detail::norm64(flat).square());
  if (unsharded_.defined()) {  // summed whole; reduced once: during the last backward, or at the end
    unsharded_.narrow(0, zero_.flat_offset(param), flat.numel()).add_(flat);
    if (overlap_ && !again) {
      for (const Piece& piece : pieces_[param]) --buckets_[piece.bucket].remaining;
      start_unsharded(/*all=*/false);
    }
    arrived_[param] = 1;
    p.mutable_grad().reset();
    if (on_arrival_ && !again) on_arrival_(param);
    return;
  }
  for (const Piece& piece : pieces_[param]) {
    Bucket& b = buckets_[piece.bucket];
    if (b.in_flight) drain(/*keep_sums=*/true);  // its buffer is still being reduced (last micro-batch)
    if (b.slot < 0) b.slot = acquire_slot();
    slots_[b.slot].narrow(0, piece.to, piece.length).add_(flat.narrow(0, piece.from, piece.length));
    if (!arrived_[param]) --b.remaining;
    // Bucket by bucket, so a parameter larger than a bucket needs no more buffers than a small one.
    start_ready(/*all=*/false);
  }
  arrived_[param] = 1;
  p.mutable_grad().reset();  // the gradient lives on in the staging buffer only
  if (on_arrival_ && !again) on_arrival_(param);
}

// A free staging buffer: when none is, the reductions in flight are finished first (at most two
// buckets in flight); only when every buffer belongs to a bucket still filling does the pool grow.
int GradientShard::acquire_slot() {
  for (;;) {
    for (size_t s = 0; s < slots_.size(); ++s) {
      if (!slot_busy_[s]) {
        slot_busy_[s] = 1;
        return static_cast<int>(s);
      }
    }
    if (in_flight_.empty()) break;
    drain(/*keep_sums=*/true);
  }
  slots_.push_back(at::zeros({slot_length_}, zero_.shard_grad().options()));
  slot_busy_.push_back(1);
  peak_slots_ = std::max<int64_t>(peak_slots_, static_cast<int64_t>(slots_.size()));
  return static_cast<int>(slots_.size()) - 1;
}

void GradientShard::start_ready(bool all) {
  while (next_ < buckets_.size() && (all || buckets_[next_].remaining == 0)) {
    Bucket& b = buckets_[next_++];
    if (b.in_flight) drain(/*keep_sums=*/true);  // the last micro-batch's reduction of it first
    if (b.slot < 0) b.slot = acquire_slot();     // no gradient arrived: it reduces zeros
    if (reducer_) reducer_->start_reduce(slots_[b.slot].narrow(0, 0, b.end - b.begin), b.owner);
    b.in_flight = true;
    in_flight_.push_back(next_ - 1);
  }
}

// Waits for the reductions in flight; the owner adds each sum into its shard of the window's
// gradient. Every staging buffer goes back to the pool zeroed (the others' contents are undefined
// after a reduce).
void GradientShard::drain(bool keep_sums) {
  if (reducer_) reducer_->wait_pending();
  torch::NoGradGuard no_grad;
  for (size_t k : in_flight_) {
    Bucket& b = buckets_[k];
    at::Tensor& slot = slots_[b.slot];
    if (keep_sums && b.owner == zero_.rank())
      zero_.shard_grad().narrow(0, b.shard_at, b.end - b.begin).add_(slot.narrow(0, 0, b.end - b.begin));
    slot.zero_();
    slot_busy_[b.slot] = 0;
    b.slot = -1;
    b.in_flight = false;
  }
  in_flight_.clear();
}

void GradientShard::end_micro_batch() {
  if (!unsharded_.defined()) start_ready(/*all=*/true);
  if (overlap_) {  // the window's last backward: the buckets it did not complete start now
    start_unsharded(/*all=*/true);
    started_ = true;
    overlap_ = false;
  }
  measuring_ = false;
  reset_micro_batch();
}

void GradientShard::empty_micro_batch() { end_micro_batch(); }

void GradientShard::end_window() {
  if (unsharded_.defined()) {
    reduce_unsharded();
    return;
  }
  drain(/*keep_sums=*/true);
  trim_slots();
}

// Unsharded accumulation's one reduction: every bucket of the whole sum, in bucket order, to its
// owner (together a reduce-scatter of the window's gradient), then each owner adds its part into
// the shard. Without a group each rank keeps its own part (the planner's probes).
void GradientShard::reduce_unsharded() {
  if (!started_) {
    next_ = 0;
    start_unsharded(/*all=*/true);
  }
  started_ = false;
  if (reducer_) reducer_->wait_pending();
  torch::NoGradGuard no_grad;
  for (const Bucket& b : buckets_) {
    if (b.owner == zero_.rank())
      zero_.shard_grad().narrow(0, b.shard_at, b.end - b.begin).add_(unsharded_.narrow(0, b.begin, b.end - b.begin));
  }
  unsharded_.zero_();  // the others' parts are undefined after a reduce
}

// Starts, in bucket order, the reduces of the whole sum's buckets that are complete (or all).
void GradientShard::start_unsharded(bool all) {
  while (next_ < buckets_.size() && (all || buckets_[next_].remaining == 0)) {
    const Bucket& b = buckets_[next_++];
    if (reducer_) reducer_->start_reduce(unsharded_.narrow(0, b.begin, b.end - b.begin), b.owner);
  }
}

// Buffers the pool grew by (gradients out of bucket order, as a checkpointed block's come) are
// given back at the boundary: what stays between windows is two buckets, and the growth shows in
// the peak of the micro-batches that need it (where the memory planner measures it).
void GradientShard::trim_slots() {
  if (slots_.size() <= 2) return;
  slots_.resize(2);
  slot_busy_.resize(2);
}

void GradientShard::discard_window() {
  drain(/*keep_sums=*/false);  // also waits for the reduces of an overlapped last backward
  overlap_ = started_ = false;
  if (unsharded_.defined()) unsharded_.zero_();
  for (Bucket& b : buckets_) {  // buckets that were filling
    if (b.slot >= 0) {
      slots_[b.slot].zero_();
      slot_busy_[b.slot] = 0;
      b.slot = -1;
    }
  }
  for (at::Tensor& p : params_) p.mutable_grad().reset();
  square_norm_.zero_();
  measuring_ = false;
  reset_micro_batch();
  trim_slots();
}

}  // namespace gradacc
