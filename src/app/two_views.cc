#include "app/two_views.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/constant_pad_nd.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/stack.h>
#include <fmt/format.h>

#include "gradacc/errors.h"

namespace gradacc {

TwoViews::TwoViews(std::shared_ptr<const TensorDataset> images, uint64_t seed, int64_t shift, double noise)
    : images_(std::move(images)), seed_(seed), shift_(shift), noise_(noise) {
  if (!images_ || images_->inputs().dim() != 4)
    throw ConfigError("the contrastive objective needs images of [N, C, H, W] (Fashion-MNIST)");
  if (shift_ < 0 || !(noise_ >= 0)) throw ConfigError("two views: shift and noise must not be negative");
}

Batch TwoViews::gather_in_epoch(const std::vector<int64_t>& indices, int64_t epoch) const {
  const Batch images = images_->gather(indices);
  const int64_t h = images.inputs.size(2), w = images.inputs.size(3);
  const at::Tensor padded = at::constant_pad_nd(images.inputs, {shift_, shift_, shift_, shift_}, 0.0);
  std::vector<at::Tensor> pairs;
  for (size_t i = 0; i < indices.size(); ++i) {
    std::vector<at::Tensor> views;
    for (uint64_t v = 0; v < 2; ++v) {
      // One generator per view: a hash of the run's seed, the example, the epoch and the view.
      const uint64_t key = seed_ * 0x9E3779B97F4A7C15ull ^ static_cast<uint64_t>(indices[i]) * 0xBF58476D1CE4E5B9ull ^
                           static_cast<uint64_t>(epoch) * 0x94D049BB133111EBull ^ (v + 1);
      at::Generator g = at::make_generator<at::CPUGeneratorImpl>(key);
      const at::Tensor offset = at::randint(0, 2 * shift_ + 1, {2}, g, at::TensorOptions().dtype(at::kLong));
      const int64_t dy = offset[0].item<int64_t>(), dx = offset[1].item<int64_t>();
      at::Tensor view = padded[static_cast<int64_t>(i)].narrow(1, dy, h).narrow(2, dx, w);
      if (noise_ > 0) view = view + noise_ * at::randn(view.sizes(), g, view.options());
      views.push_back(view);
    }
    pairs.push_back(at::stack(views));
  }
  Batch b = images;
  b.inputs = at::stack(pairs);
  return b;
}

}  // namespace gradacc
