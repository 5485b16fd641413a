#include "gradacc/dataset.h"

#include <algorithm>
#include <numeric>

#include <ATen/ops/from_blob.h>
#include <ATen/ops/index_select.h>
#include <fmt/format.h>

#include "gradacc/errors.h"

namespace gradacc {

std::vector<int64_t> Dataset::largest_examples(int64_t n) const {
  std::vector<int64_t> out(static_cast<size_t>(std::clamp<int64_t>(n, 0, size())));
  std::iota(out.begin(), out.end(), 0);
  return out;
}

Batch Batch::to(const at::Device& device) const {
  if (inputs.device() == device) return *this;
  // To a GPU through page-locked memory: the copy is then truly asynchronous, so the host goes on
  // queueing the forward pass instead of waiting for the device (no host sync per micro-batch).
  // The host allocator keeps the pinned block until the copy has run.
  const auto move = [&](const at::Tensor& t) {
    return (device.is_cuda() && t.is_cpu() ? t.pin_memory() : t).to(device, /*non_blocking=*/true);
  };
  Batch out{move(inputs), move(targets), samples, items};
  if (positions.defined()) out.positions = move(positions);
  if (segments.defined()) out.segments = move(segments);
  return out;
}

TensorDataset::TensorDataset(at::Tensor inputs, at::Tensor labels, int64_t num_classes)
    : inputs_(std::move(inputs)), labels_(std::move(labels)), num_classes_(num_classes) {
  if (inputs_.dim() < 1 || labels_.dim() != 1 || inputs_.size(0) != labels_.size(0)) {
    throw DataError(fmt::format("inputs ({} rows) and labels ({} rows) do not pair up",
                                inputs_.dim() ? inputs_.size(0) : 0, labels_.dim() ? labels_.size(0) : 0));
  }
  if (labels_.numel() > 0) {
    const int64_t lo = labels_.min().item<int64_t>(), hi = labels_.max().item<int64_t>();
    if (lo < 0 || hi >= num_classes_) {
      throw DataError(fmt::format("labels span [{}, {}], outside the {} classes", lo, hi, num_classes_));
    }
  }
}

Batch TensorDataset::gather(const std::vector<int64_t>& indices) const {
  // from_blob wraps the index list without copying; index_select copies the rows once.
  const at::Tensor idx =
      at::from_blob(const_cast<int64_t*>(indices.data()), {static_cast<int64_t>(indices.size())}, at::kLong);
  const auto n = static_cast<int64_t>(indices.size());
  return Batch{at::index_select(inputs_, 0, idx), at::index_select(labels_, 0, idx), n, n};
}

std::shared_ptr<TensorDataset> TensorDataset::head(int64_t n) const {
  n = std::min(n, size());
  return std::make_shared<TensorDataset>(inputs_.narrow(0, 0, n), labels_.narrow(0, 0, n), num_classes_);
}

}  // namespace gradacc
