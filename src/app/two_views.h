// TwoViews: an image dataset seen as pairs of augmented views, for `--objective contrastive`.
//
// gather(indices) returns inputs [B, 2, C, H, W]: two views of each image, each shifted by up to
// `shift` pixels in each direction (zero padding) and given Gaussian noise of `noise` standard
// deviations. Targets are the class labels (the linear probe reads them; the loss does not).
//
// A view's randomness comes from a generator seeded by (seed, example index, epoch, view), never
// from LibTorch's global generator and never from how often the example was gathered. So an
// example's views are the same whichever rank and micro-batch it falls into (data parallel equals
// one process), in a resumed run and in every run of `gradacc verify`, and new each epoch.
// gather(indices) gives epoch 0's views.
//
// Thread safety: immutable; gather() may be called concurrently.
#pragma once

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
  Batch gather(const std::vector<int64_t>& indices) const override { return gather_in_epoch(indices, 0); }
  Batch gather_in_epoch(const std::vector<int64_t>& indices, int64_t epoch) const override;
  int64_t num_classes() const override { return images_->num_classes(); }

 private:
  std::shared_ptr<const TensorDataset> images_;
  uint64_t seed_;
  int64_t shift_;
  double noise_;
};

}  // namespace gradacc
