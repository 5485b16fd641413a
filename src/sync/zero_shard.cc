#include "sync/zero_shard.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>

#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/core/StorageImpl.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/grad_mode.h>
#include "gradacc/errors.h"

namespace gradacc {

ZeroShard::ZeroShard(torch::nn::Module& model, int rank, int world_size, std::optional<at::ScalarType> low_precision,
                     int stage, std::vector<std::vector<int64_t>> units, bool last_unit_first)
    : rank_(rank), world_(world_size), stage_(stage) {
  if (world_ < 1 || rank_ < 0 || rank_ >= world_)
    throw ConfigError(fmt::format("ZeRO: rank {} of a world of {}", rank_, world_));
  if (stage_ < 1 || stage_ > 3) throw ConfigError(fmt::format("ZeRO stage {}: the stages are 1, 2 and 3", stage_));
  if (low_precision && *low_precision != at::kBFloat16 && *low_precision != at::kHalf)
    throw ConfigError(
        fmt::format("ZeRO keeps fp32 masters for bf16/fp16 parameters, not {}", c10::toString(*low_precision)));
  std::vector<at::Tensor> params;
  for (const at::Tensor& p : model.parameters()) {
    if (!p.requires_grad()) continue;
    if (p.scalar_type() != at::kFloat || (!params.empty() && p.device() != params[0].device()))
      throw ConfigError("ZeRO needs an fp32 model whose trainable parameters share one device");
    element_of_.push_back(total_);
    numel_.push_back(p.numel());
    params.push_back(p);
    total_ += p.numel();
  }
  if (params.empty()) throw ConfigError("the model has no trainable parameters");
  if (stage_ < 3 && !units.empty()) throw ConfigError("ZeRO: units are stage 3's");
  if (units.empty()) {  // one unit of every parameter: stages 1 and 2, or a model without blocks
    units.emplace_back();
    for (size_t i = 0; i < params.size(); ++i) units.back().push_back(static_cast<int64_t>(i));
  }
  unit_of_.assign(params.size(), -1);
  for (size_t u = 0; u < units.size(); ++u) {
    for (int64_t i : units[u]) {
      if (i < 0 || i >= static_cast<int64_t>(params.size()) || unit_of_[i] >= 0)
        throw ConfigError(
            fmt::format("ZeRO-3: unit {} names parameter {}, which is not a trainable parameter of "
                        "its own (units hold each of the {} parameters once)",
                        u, i, params.size()));
      unit_of_[i] = static_cast<int64_t>(u);
    }
  }
  for (size_t i = 0; i < params.size(); ++i) {
    if (unit_of_[i] < 0) throw ConfigError(fmt::format("ZeRO-3: parameter {} is in no unit", i));
  }
  dtype_ = low_precision.value_or(at::kFloat);

  torch::NoGradGuard no_grad;
  const at::TensorOptions fp32 = params[0].options().requires_grad(false);
  flat_offset_.assign(params.size(), 0);
  for (const std::vector<int64_t>& list : units) {
    Unit u;
    u.params = list;
    for (int64_t i : list) u.total += numel_[i];
    u.length = (u.total + world_ - 1) / world_;
    units_.push_back(std::move(u));
  }
  // Flat order, which is ZeRO-2/3's bucket order backwards: the last unit (stage 3's root, with the
  // embeddings whose gradients come last) first, then the blocks in order, so that the buckets of
  // the last block, whose gradients come first, are reduced first.
  std::vector<size_t> order(units_.size());
  std::iota(order.begin(), order.end(), size_t{0});
  if (last_unit_first) std::rotate(order.begin(), order.end() - 1, order.end());
  for (size_t k : order) {
    Unit& u = units_[k];
    u.flat_begin = padded_;
    u.shard_begin = length_;
    padded_ += u.length * world_;
    length_ += u.length;
  }
  // The fp32 values first: the masters of a low-precision model are the exact originals.
  std::vector<at::Tensor> flat32;
  for (Unit& u : units_) {
    flat32.push_back(at::zeros({u.length * world_}, fp32));
    int64_t at = 0;
    for (int64_t i : u.params) {
      flat32.back().narrow(0, at, numel_[i]).copy_(params[i].reshape({-1}));
      flat_offset_[i] = u.flat_begin + at;
      at += numel_[i];
    }
  }
  if (low_precision) model.to(*low_precision);
  shard_param_ = at::empty({length_}, fp32);
  for (size_t k = 0; k < units_.size(); ++k) {
    Unit& u = units_[k];
    u.buffer = low_precision ? flat32[k].to(*low_precision) : flat32[k];
    shard_param_.narrow(0, u.shard_begin, u.length).copy_(flat32[k].narrow(0, rank_ * u.length, u.length));
    u.output = at::empty({0}, u.buffer.options()).set_(u.buffer.storage(), 0, {u.buffer.numel()}, {1});
    for (int64_t i : u.params)
      params[i].set_data(u.buffer.narrow(0, flat_offset_[i] - u.flat_begin, numel_[i]).view(params[i].sizes()));
  }
  if (stage_ < 3) {
    flat_params_ = units_[0].buffer;
    // Stages 1 and 2 keep one layout for the whole model; an fp32 model's shard is its own slice.
    if (!low_precision) shard_param_ = flat_params_.narrow(0, offset(), length_);  // updated in place
  }
  for (const Unit& u : units_) {
    for (int r = 0; r < world_; ++r) {
      const int64_t begin = r * u.length, end = std::min((r + 1) * u.length, u.total);
      if (begin < end) segments_.push_back(Segment{u.flat_begin + begin, u.flat_begin + end, r, u.shard_begin});
    }
  }
  std::sort(segments_.begin(), segments_.end(), [](const Segment& a, const Segment& b) { return a.begin < b.begin; });
  shard_grad_ = at::zeros({length_}, fp32);
  shard_param_.mutable_grad() = shard_grad_;
  send_ = (stage_ == 3 && !low_precision) ? shard_param_ : at::empty({length_}, fp32.dtype(dtype_));
  refresh_gather_input();
}

void ZeroShard::set_stage(int stage) {
  if (stage_ == 3 || stage < 1 || stage > 2)
    throw ConfigError(fmt::format("ZeRO stage {} → {}: only stages 1 and 2 share a layout", stage_, stage));
  stage_ = stage;
}

const at::Tensor& ZeroShard::gather_input() {
  refresh_gather_input();
  return send_;
}

void ZeroShard::refresh_gather_input() {
  if (send_.is_same(shard_param_)) return;
  torch::NoGradGuard no_grad;
  send_.copy_(shard_param_);
}

std::vector<ZeroShard::OwnedRange> ZeroShard::owned_ranges() const {
  std::vector<OwnedRange> out;
  for (const Unit& u : units_) {
    const int64_t own_begin = rank_ * u.length, own_end = own_begin + u.length;  // in the unit
    int64_t at = 0;
    for (int64_t i : u.params) {
      const int64_t from = std::max(at, own_begin), to = std::min(at + numel_[i], own_end);
      if (from < to)
        out.push_back(OwnedRange{element_of_[i] + (from - at), u.shard_begin + (from - own_begin), to - from});
      at += numel_[i];
    }
  }
  return out;
}

int64_t ZeroShard::resident_parameter_bytes() const {
  if (stage_ < 3) return static_cast<int64_t>(flat_params_.nbytes());
  return length_ * static_cast<int64_t>(c10::elementSize(dtype_));
}

int64_t ZeroShard::unit_bytes(int64_t u) const {
  return units_[u].length * world_ * static_cast<int64_t>(c10::elementSize(dtype_));
}

void ZeroShard::allocate_unit(int64_t u) {
  Unit& unit = units_[u];
  if (unit.allocated) return;
  c10::StorageImpl* storage = unit.buffer.storage().unsafeGetStorageImpl();
  const size_t bytes = static_cast<size_t>(unit_bytes(u));
  storage->set_data_ptr_noswap(storage->allocator()->allocate(bytes));
  storage->set_nbytes(bytes);
  unit.allocated = true;
}

void ZeroShard::free_unit(int64_t u) {
  Unit& unit = units_[u];
  if (!unit.allocated || stage_ < 3) return;
  c10::StorageImpl* storage = unit.buffer.storage().unsafeGetStorageImpl();
  storage->set_data_ptr_noswap(at::DataPtr(nullptr, unit.buffer.device()));
  storage->set_nbytes(0);
  unit.allocated = false;
}

at::Tensor ZeroShard::unit_input(int64_t u) const { return send_.narrow(0, units_[u].shard_begin, units_[u].length); }

void ZeroShard::take_shard_from_units() {
  if (low_precision()) throw std::logic_error("take_shard_from_units: a bf16/fp16 model's shard is its masters");
  torch::NoGradGuard no_grad;
  for (const Unit& u : units_) {
    if (!u.allocated) throw std::logic_error("take_shard_from_units: a unit is not gathered");
    shard_param_.narrow(0, u.shard_begin, u.length).copy_(u.buffer.narrow(0, rank_ * u.length, u.length));
  }
}

}  // namespace gradacc
