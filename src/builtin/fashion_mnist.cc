#include "builtin/fashion_mnist.h"

#include <fmt/format.h>

#include "builtin/idx.h"

namespace gradacc {

std::shared_ptr<TensorDataset> load_fashion_mnist(const std::string& dir, Split split) {
  const std::string prefix = split == Split::kTrain ? "train" : "t10k";
  const std::string images_path = fmt::format("{}/{}-images-idx3-ubyte.gz", dir, prefix);
  const std::string labels_path = fmt::format("{}/{}-labels-idx1-ubyte.gz", dir, prefix);
  const at::Tensor images = read_idx_u8(images_path, 3);
  const at::Tensor labels = read_idx_u8(labels_path, 1);
  if (images.size(1) != 28 || images.size(2) != 28) {
    throw DataError(fmt::format("{}: images are {}x{}, expected 28x28", images_path, images.size(1), images.size(2)));
  }
  if (images.size(0) != labels.size(0)) {
    throw DataError(fmt::format("{} holds {} images but {} holds {} labels", images_path, images.size(0), labels_path,
                                labels.size(0)));
  }
  if (labels.max().item<int64_t>() > 9) {
    throw DataError(fmt::format("{}: label {} outside 0..9", labels_path, labels.max().item<int64_t>()));
  }
  at::Tensor x = images.to(at::kFloat).div_(255.0).sub_(kFashionMnistMean).div_(kFashionMnistStd).unsqueeze(1);
  return std::make_shared<TensorDataset>(x.contiguous(), labels.to(at::kLong), 10);
}

}  // namespace gradacc
