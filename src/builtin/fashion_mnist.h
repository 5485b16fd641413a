// Fashion-MNIST from Debian's dataset-fashion-mnist package (IDX, gzip).
//
// Preprocessing (documented in docs/models.md): pixels p in 0..255 become (p/255 − 0.2860)/0.3530,
// the training set's mean and standard deviation; images are [N, 1, 28, 28] float32, labels int64.
#pragma once

#include <memory>
#include <string>

#include "gradacc/dataset.h"

namespace gradacc {

inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
inline constexpr double kFashionMnistMean = 0.2860;
inline constexpr double kFashionMnistStd = 0.3530;

enum class Split { kTrain, kTest };

// Loads one split from `dir`; throws DataError naming the file on any defect, including an image
// count that differs from the label count.
std::shared_ptr<TensorDataset> load_fashion_mnist(const std::string& dir, Split split);

}  // namespace gradacc
