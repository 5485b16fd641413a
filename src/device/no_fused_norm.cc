// device/fused_norm.h in a build without gradacc's CUDA kernels: the CPU build, and a CUDA build
// configured without nvcc. No kernel ever fits, so add_norm composes ATen's ops.
#include <stdexcept>

#include "device/fused_norm.h"

namespace gradacc::fused_norm {

bool kernels_built() { return false; }

std::optional<Forward> forward(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                               at::ScalarType, double, bool) {
  return std::nullopt;
}

Backward backward(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                  const at::Tensor&, bool, at::ScalarType, bool, bool) {
  throw std::logic_error("fused_norm::backward in a build without kernels: forward() never returned a value");
}

}  // namespace gradacc::fused_norm
