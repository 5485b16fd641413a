// The fused norm kernels' arguments made from tensors, with the tensors the kernels write
// allocated beside the inputs: what every launcher of device/fused_norm_kernels.h needs, the CUDA
// backend (cuda_fused_norm.cc) and the kernels' emulated test alike. Internal: not installed.
//
// Neither function launches anything or asks which device the tensors are on, only that they
// share one. Thread safety: none needed (no state).
#pragma once

#include <optional>

#include <ATen/core/Tensor.h>

#include "device/fused_norm.h"
#include "device/fused_norm_kernels.h"

namespace gradacc::fused_norm {

struct ForwardCall {
  Forward outputs;  // allocated, written by the kernel
  kernels::NormForwardArgs args;
};
// std::nullopt when no kernel fits by shape, layout or device (fused_norm.h's forward() lists
// when); the combination of types is the launcher's to refuse (it knows its instances).
std::optional<ForwardCall> prepare_forward(const at::Tensor& x, const at::Tensor& branch, const at::Tensor& weight,
                                           const at::Tensor& bias, at::ScalarType out_dtype, double eps, bool rms);

struct BackwardCall {
  Backward outputs;  // grad_x, grad_branch allocated; grad_weight, grad_bias set by finish()
  at::Tensor weight_partial, bias_partial;
  at::Tensor grad_out, grad_sum;  // the gradients as the kernel reads them (contiguous), kept alive
  kernels::NormBackwardArgs args;
  // After the kernel: the partial rows added, in fp32, then stored in the weight's type.
  Backward finish(at::ScalarType weight_type);
};
// `blocks`: the partial rows the backward kernel writes for these rows (norm_backward_blocks(rows, cols)).
// Throws std::runtime_error when the gradients' types are not the forward outputs'.
BackwardCall prepare_backward(const at::Tensor& grad_out, const at::Tensor& grad_sum, const at::Tensor& h,
                              const at::Tensor& mean, const at::Tensor& rstd, const at::Tensor& weight, bool has_branch,
                              at::ScalarType branch_dtype, bool has_bias, bool rms, int64_t blocks);

}  // namespace gradacc::fused_norm
