// device/fused_norm.h in a CUDA build with gradacc's kernels: the kernels of fused_norm_kernels.cu
// launched on the current stream of the tensors' device, with their arguments from
// fused_norm_args.h. (A CUDA build configured without nvcc has no_fused_norm.cc instead.)
#include "device/fused_norm.h"

#include <stdexcept>
#include <string>

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "device/fused_norm_args.h"
#include "device/fused_norm_kernels.h"

namespace gradacc::fused_norm {

namespace {

void* stream_of(const at::Tensor& t) { return c10::cuda::getCurrentCUDAStream(t.device().index()).stream(); }

}  // namespace

bool kernels_built() { return true; }

std::optional<Forward> forward(const at::Tensor& x, const at::Tensor& branch, const at::Tensor& weight,
                               const at::Tensor& bias, at::ScalarType out_dtype, double eps, bool rms) {
  if (!x.is_cuda()) return std::nullopt;
  std::optional<ForwardCall> call = prepare_forward(x, branch, weight, bias, out_dtype, eps, rms);
  if (!call) return std::nullopt;
  const c10::cuda::CUDAGuard guard(x.device());
  const int code = kernels::norm_forward(call->args, stream_of(x));
  if (code == -1) return std::nullopt;  // no kernel instance for these types: ATen's ops instead
  if (code != 0)
    throw std::runtime_error(std::string("the fused norm's forward kernel failed: ") + kernels::error_text(code));
  return std::move(call->outputs);
}

Backward backward(const at::Tensor& grad_out, const at::Tensor& grad_sum, const at::Tensor& h, const at::Tensor& mean,
                  const at::Tensor& rstd, const at::Tensor& weight, bool has_branch, at::ScalarType branch_dtype,
                  bool has_bias, bool rms) {
  const c10::cuda::CUDAGuard guard(h.device());
  const int64_t rows = h.numel() / h.size(-1);
  BackwardCall call = prepare_backward(grad_out, grad_sum, h, mean, rstd, weight, has_branch, branch_dtype, has_bias,
                                       rms, kernels::norm_backward_blocks(rows, h.size(-1)));
  const int code = kernels::norm_backward(call.args, stream_of(h));
  if (code != 0)
    throw std::runtime_error(std::string("the fused norm's backward kernel failed: ") + kernels::error_text(code));
  return call.finish(weight.scalar_type());
}

}  // namespace gradacc::fused_norm
