// The fused residual add + LayerNorm/RMSNorm kernels launched on a GPU (the device code and the
// choice of instance and grid are in fused_norm_kernels.cuh).
#include <cuda_runtime.h>

#include "device/fused_norm_kernels.cuh"

namespace gradacc::kernels {
namespace {

// Launches `kernel` on `stream`: what detail::launch_forward and launch_backward call.
struct OnStream {
  cudaStream_t stream;
  template <class Args>
  void operator()(void (*kernel)(Args), unsigned blocks, int threads, size_t shared, const Args& args) const {
    kernel<<<blocks, threads, shared, stream>>>(args);
  }
};

}  // namespace

bool norm_supported(DType x, DType branch, DType weight, DType out) {
  return detail::with_types(x, branch, weight, out, [](auto) {});
}

int64_t norm_backward_blocks(int64_t rows, int64_t cols) { return detail::backward_blocks(rows, cols); }

int norm_forward(const NormForwardArgs& args, void* stream) {
  if (args.layout.rows == 0) return 0;
  const bool ok = detail::launch_forward(args, OnStream{static_cast<cudaStream_t>(stream)});
  return ok ? static_cast<int>(cudaGetLastError()) : -1;
}

int norm_backward(const NormBackwardArgs& args, void* stream) {
  if (args.layout.rows == 0) return 0;
  const bool ok = detail::launch_backward(args, OnStream{static_cast<cudaStream_t>(stream)});
  return ok ? static_cast<int>(cudaGetLastError()) : -1;
}

const char* error_text(int code) {
  return code == -1 ? "no kernel for these types" : cudaGetErrorString(static_cast<cudaError_t>(code));
}

}  // namespace gradacc::kernels
