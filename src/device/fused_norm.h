// The fused residual add + LayerNorm/RMSNorm on CUDA, on tensors: the device layer's side of
// model/add_norm.h, which owns the autograd and the fallback. Internal: not installed.
//
// Implemented by src/device/cuda_fused_norm.cc in a CUDA build compiled with nvcc (the kernels
// are src/device/fused_norm_kernels.cu), and by no_fused_norm.cc otherwise, where kernels_built()
// is false and forward() always answers std::nullopt.
//
// Errors: a failed kernel launch throws std::runtime_error with the CUDA runtime's text.
// Thread safety: launches go on the calling thread's current stream of the tensors' device.
#pragma once

#include <optional>

#include <ATen/core/Tensor.h>

namespace gradacc::fused_norm {

// Whether this build carries the kernels.
bool kernels_built();

struct Forward {
  at::Tensor sum;   // x + branch, x's dtype (undefined without a branch)
  at::Tensor out;   // the normalized rows, out_dtype
  at::Tensor mean;  // [rows] fp32 (undefined for RMSNorm)
  at::Tensor rstd;  // [rows] fp32
};
// x, branch (may be undefined), weight, bias (undefined for RMSNorm): contiguous CUDA tensors of
// one device, x and branch [..., D], weight and bias [D]. std::nullopt when no kernel fits: another
// device, a dtype combination without a kernel (fused_norm_kernels.h), D above the kernels' limit,
// no rows; the caller then composes ATen ops.
std::optional<Forward> forward(const at::Tensor& x, const at::Tensor& branch, const at::Tensor& weight,
                               const at::Tensor& bias, at::ScalarType out_dtype, double eps, bool rms);

struct Backward {
  at::Tensor grad_x;       // x's dtype
  at::Tensor grad_branch;  // the branch's dtype (undefined when there was none)
  at::Tensor grad_weight;  // weight's dtype
  at::Tensor grad_bias;    // undefined when there was no bias
};
// grad_out: the gradient of `out`; grad_sum: of `sum` (may be undefined); h: what was normalized
// (sum, or x); mean, rstd: forward()'s. Only after a forward() that returned a value, on its tensors.
Backward backward(const at::Tensor& grad_out, const at::Tensor& grad_sum, const at::Tensor& h, const at::Tensor& mean,
                  const at::Tensor& rstd, const at::Tensor& weight, bool has_branch, at::ScalarType branch_dtype,
                  bool has_bias, bool rms);

}  // namespace gradacc::fused_norm
