// TwoViews: an image dataset seen as pairs of augmented views, for `--objective contrastive`.
//
// gather(indices) returns inputs [B, 2, C, H, W]: two views of each image, each shifted by up to
// `shift` pixels in each direction (zero padding) and given Gaussian noise of `noise` standard
// deviations. Targets are the class labels (the linear probe reads them; the loss does not).
//
// A view's randomness comes from a generator seeded by (seed, example index, the example's visit
// count, view), never from LibTorch's global generator. So an example's views are the same whichever
// rank and micro-batch it falls into (data parallel equals one process), and differ from epoch to
// epoch (each gather of an example is its next visit; a training run gathers each example once
// per epoch).
//
// Thread safety: gather() may be called concurrently (the visit counts are atomic).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "gradacc/dataset.h"

namespace gradacc {

class TwoViews : public Dataset {
 public:
  // `images`: [N, C, H, W] float. Throws ConfigError for other shapes, a negative shift or noise.
  TwoViews(std::shared_ptr<const TensorDataset> images, uint64_t seed, int64_t shift = 3, double noise = 0.1);
  int64_t size() const override { return images_->size(); }
  Batch gather(const std::vector<int64_t>& indices) const override;
  int64_t num_classes() const override { return images_->num_classes(); }

 private:
  std::shared_ptr<const TensorDataset> images_;
  uint64_t seed_;
  int64_t shift_;
  double noise_;
  std::unique_ptr<std::atomic<int64_t>[]> visits_;
};

}  // namespace gradacc
