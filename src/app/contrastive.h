// `--objective contrastive`: gradacc's own contrastive job. A built-in network (its output layer
// 64 wide) embeds two augmented views of each Fashion-MNIST image (app/two_views.h); InfoNCE over
// the whole window, every other image of the window a negative, trained by gradient caching
// (gradacc/window_loss.h). Its quality is a linear probe: a linear classifier fitted on the frozen
// embeddings of training images, scored on the test split.
//
// Thread safety: none; the job's thread.
#pragma once

#include <cstdint>
#include <memory>

#include "builtin/models.h"
#include "gradacc/dataset.h"
#include "gradacc/window_loss.h"

namespace gradacc {

inline constexpr int64_t kEmbeddingDim = 64;

// The window loss over `net`'s embeddings of the two views of TwoViews batches.
WindowLoss contrastive_loss(std::shared_ptr<Network> net, double temperature);

// Test accuracy of a linear classifier (full-batch Adam on standardized embeddings) fitted on the
// embeddings of the first `fit_examples` training images, `net` frozen in eval mode.
double linear_probe_accuracy(Network& net, const TensorDataset& train, const TensorDataset& test,
                             const at::Device& device, int64_t fit_examples = 10000);

}  // namespace gradacc
