// LibTorch's own map-style datasets as a gradacc::Dataset, so code written for torch::data
// trains through the Trainer unchanged.
//
//   struct MyData : torch::data::datasets::Dataset<MyData> {
//     torch::data::Example<> get(size_t i) override;
//     std::optional<size_t> size() const override;
//   };
//   auto data = gradacc::from_torch_dataset(MyData{...});
//
// gather() calls get(i) for each index and stacks the examples' data and targets along a new first
// dimension. Item counts, which normalization divides by, are counted on the host while gathering:
// by default one item per target element that is not kIgnoreIndex (so integer class targets of
// shape [] count one per example, token targets of shape [T] count their real tokens), or one per
// example for floating-point targets (regression). Pass `count_items` to count differently.
//
// Thread safety: as the wrapped dataset's get(), which gather() calls from the training thread.
#pragma once

#include <functional>
#include <memory>
#include <stdexcept>
#include <utility>
#include <vector>

#include <ATen/ops/stack.h>
#include <torch/data/datasets/base.h>
#include <torch/data/example.h>

#include "gradacc/dataset.h"
#include "gradacc/errors.h"

namespace gradacc {

// The default item count of a micro-batch's stacked targets (see above).
inline int64_t count_items(const at::Tensor& targets) {
  if (targets.dim() == 0 || targets.size(0) == 0) return 0;
  if (at::isFloatingType(targets.scalar_type())) return targets.size(0);
  return targets.ne(kIgnoreIndex).sum().template item<int64_t>();  // a CPU tensor: no device sync
}

template <typename D>
class TorchDataset : public Dataset {
 public:
  using ItemCounter = std::function<int64_t(const at::Tensor& targets)>;

  explicit TorchDataset(D dataset, int64_t num_classes = 0, ItemCounter counter = count_items)
      : dataset_(std::move(dataset)), num_classes_(num_classes), counter_(std::move(counter)) {
    const auto n = dataset_.size();
    if (!n) throw ConfigError("a torch::data dataset of unknown size cannot be sampled by windows");
    size_ = static_cast<int64_t>(*n);
  }

  int64_t size() const override { return size_; }
  int64_t num_classes() const override { return num_classes_; }

  Batch gather(const std::vector<int64_t>& indices) const override {
    std::vector<at::Tensor> data, targets;
    data.reserve(indices.size());
    targets.reserve(indices.size());
    for (int64_t i : indices) {
      if (i < 0 || i >= size_) throw std::out_of_range("dataset index out of range");
      auto example = dataset_.get(static_cast<size_t>(i));
      data.push_back(std::move(example.data));
      targets.push_back(std::move(example.target));
    }
    Batch b{at::stack(data), at::stack(targets), static_cast<int64_t>(indices.size()), 0};
    b.items = counter_(b.targets);
    return b;
  }

 private:
  mutable D dataset_;  // LibTorch's get() is not const
  int64_t size_ = 0;
  int64_t num_classes_;
  ItemCounter counter_;
};

template <typename D>
std::shared_ptr<TorchDataset<D>> from_torch_dataset(D dataset, int64_t num_classes = 0,
                                                    typename TorchDataset<D>::ItemCounter counter = count_items) {
  return std::make_shared<TorchDataset<D>>(std::move(dataset), num_classes, std::move(counter));
}

}  // namespace gradacc
