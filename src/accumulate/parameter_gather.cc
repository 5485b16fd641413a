#include "accumulate/parameter_gather.h"

#include <stdexcept>

#include <ATen/ops/empty_like.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "gradacc/errors.h"

namespace gradacc {

ParameterGather::ParameterGather(ZeroShard& zero, Units* units, GradientReducer* reducer,
                                 ParameterGatherOptions options)
    : zero_(zero), units_(units), reducer_(nullptr), options_(options) {
  if (zero_.stage() != 3) throw ConfigError("ParameterGather needs a ZeRO-3 layout");
  declared_ = units_ ? static_cast<int64_t>(units_->size()) : 0;
  if (zero_.units() != declared_ && zero_.units() != declared_ + 1)
    throw ConfigError(fmt::format("ZeRO-3: the layout has {} units, the model declares {}", zero_.units(), declared_));
  root_ = zero_.units() > declared_ ? declared_ : -1;
  state_.assign(zero_.units(), State::kWhole);  // ZeroShard starts whole
  ticket_.assign(zero_.units(), 0);
  scratch_.resize(zero_.units());
  remaining_.assign(zero_.units(), 0);
  set_reducer(reducer);
}

ParameterGather::~ParameterGather() {
  if (units_) units_->set_observer(nullptr);
}

void ParameterGather::set_reducer(GradientReducer* reducer) {
  if (reducer && (reducer->world_size() != zero_.world_size() || reducer->rank() != zero_.rank()))
    throw ConfigError("ZeRO-3: the reducer's ranks are not the shard layout's");
  reducer_ = reducer;
}

void ParameterGather::start(int64_t u) {
  if (state_[u] != State::kFree) return;
  zero_.allocate_unit(u);
  if (in_micro_batch_) ++gathers_;  // a window's traffic; unshard()'s are not
  if (reducer_) {                   // the collective, also at world 1 (gpu-check's one-rank NCCL run)
    ticket_[u] = reducer_->start_all_gather(zero_.unit_input(u), zero_.unit_output(u));
    state_[u] = State::kInFlight;
    return;
  }
  // No group: every slot from this rank's own slice (exact at world 1).
  torch::NoGradGuard no_grad;
  const int64_t length = zero_.unit_length(u);
  const at::Tensor in = zero_.unit_input(u);
  for (int r = 0; r < zero_.world_size(); ++r) zero_.unit_output(u).narrow(0, r * length, length).copy_(in);
  if (zero_.world_size() > 1 && in.is_cpu()) {
    // The memory planner's probes, before the group: c10d's Gloo all-gather gathers into a flat
    // buffer of its own and copies it out, so a gather in flight holds the unit twice. A probe
    // holds a buffer of that size until the gather would be waited for.
    scratch_[u] = at::empty_like(zero_.unit_output(u));
    state_[u] = State::kInFlight;
    return;
  }
  state_[u] = State::kWhole;
}

void ParameterGather::wait(int64_t u) {
  if (state_[u] != State::kInFlight) return;
  if (scratch_[u].defined())
    scratch_[u].reset();
  else
    reducer_->wait_gather(ticket_[u]);
  state_[u] = State::kWhole;
}

void ParameterGather::ensure(int64_t u) {
  start(u);
  wait(u);
}

void ParameterGather::release(int64_t u) {
  if (state_[u] == State::kFree) return;
  wait(u);  // its buffer is being written
  zero_.free_unit(u);
  state_[u] = State::kFree;
}

void ParameterGather::shard() {
  if (units_) units_->set_observer(this);
  for (int64_t u = 0; u < zero_.units(); ++u) release(u);
  sharded_ = true;
}

void ParameterGather::unshard() {
  if (zero_.world_size() > 1 && !reducer_)
    throw std::logic_error("ZeRO-3: the model is made whole again by an all-gather, which needs the group");
  for (int64_t u = 0; u < zero_.units(); ++u) start(u);
  for (int64_t u = 0; u < zero_.units(); ++u) ensure(u);
  if (units_) units_->set_observer(nullptr);
  sharded_ = false;
}

void ParameterGather::begin_micro_batch(bool counted) {
  if (!sharded_) return;
  in_micro_batch_ = counted;
  for (int64_t u = 0; u < zero_.units(); ++u) remaining_[u] = static_cast<int64_t>(zero_.unit_params(u).size());
  if (root_ >= 0) ensure(root_);
  if (options_.prefetch && declared_ > 0) start(0);
}

void ParameterGather::end_micro_batch() {
  if (!sharded_) return;
  if (!keeping()) {  // a window that keeps its units frees them at its boundary
    for (int64_t u = 0; u < zero_.units(); ++u) release(u);
  }
  in_micro_batch_ = false;
}

void ParameterGather::end_window() {
  if (!sharded_) return;
  for (int64_t u = 0; u < zero_.units(); ++u) release(u);
}

void ParameterGather::abandon_micro_batch() noexcept {
  in_micro_batch_ = false;
  for (int64_t u = 0; u < zero_.units(); ++u) {
    if (state_[u] == State::kInFlight && !scratch_[u].defined()) {
      // Its memory stays (the collective may still write it); a later gather fills it anew.
      state_[u] = State::kFree;
      continue;
    }
    scratch_[u].reset();
    if (state_[u] != State::kFree) zero_.free_unit(u);
    state_[u] = State::kFree;
  }
}

void ParameterGather::before_forward(size_t unit) {
  const auto u = static_cast<int64_t>(unit);
  ensure(u);
  if (options_.prefetch && u + 1 < declared_) start(u + 1);
}

void ParameterGather::after_forward(size_t unit, bool backward_follows) {
  if (!backward_follows || (options_.reshard_after_forward && !keeping())) release(static_cast<int64_t>(unit));
}

void ParameterGather::before_backward(size_t unit) {
  const auto u = static_cast<int64_t>(unit);
  ensure(u);
  if (options_.prefetch && u > 0) start(u - 1);
}

void ParameterGather::parameter_ready(size_t param) {
  if (!sharded_) return;
  const int64_t u = zero_.unit_of(param);
  if (--remaining_[u] == 0 && u != root_ && !keeping()) release(u);
}

}  // namespace gradacc
