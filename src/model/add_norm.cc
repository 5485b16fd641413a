// add_norm (add_norm.h): the ATen composition, or the fused path (fused_add_norm.h) on the device
// backend's kernels.
#include "model/add_norm.h"

#include <ATen/autocast_mode.h>
#include <ATen/ops/layer_norm.h>
#include <ATen/ops/rms_norm.h>

#include "device/fused_norm.h"
#include "model/fused_add_norm.h"

namespace gradacc {
namespace {

AddNormResult composed(const at::Tensor& x, const at::Tensor& branch, const at::Tensor& weight, const at::Tensor& bias,
                       const AddNormOptions& o) {
  const at::Tensor sum = branch.defined() ? x + branch : x;
  const int64_t d = sum.size(-1);
  return {sum, o.rms ? at::rms_norm(sum, {d}, weight, o.eps) : at::layer_norm(sum, {d}, weight, bias, o.eps)};
}

// The normalized rows' type on the fused path: autocast's, for fp32 input under CUDA autocast (what
// the next linear would cast them to); the input's otherwise.
at::ScalarType output_type(const at::Tensor& x) {
  if (x.scalar_type() == at::kFloat && at::autocast::is_autocast_enabled(at::kCUDA))
    return at::autocast::get_autocast_dtype(at::kCUDA);
  return x.scalar_type();
}

// The device backend's kernels (a CUDA build's, or none).
struct DeviceKernels {
  static std::optional<fused_norm::Forward> forward(const at::Tensor& x, const at::Tensor& branch,
                                                    const at::Tensor& weight, const at::Tensor& bias,
                                                    at::ScalarType out_dtype, double eps, bool rms) {
    return fused_norm::forward(x, branch, weight, bias, out_dtype, eps, rms);
  }
  static fused_norm::Backward backward(const at::Tensor& grad_out, const at::Tensor& grad_sum, const at::Tensor& h,
                                       const at::Tensor& mean, const at::Tensor& rstd, const at::Tensor& weight,
                                       bool has_branch, at::ScalarType branch_dtype, bool has_bias, bool rms) {
    return fused_norm::backward(grad_out, grad_sum, h, mean, rstd, weight, has_branch, branch_dtype, has_bias, rms);
  }
};

}  // namespace

bool fused_norm_kernels_built() { return fused_norm::kernels_built(); }

AddNormResult add_norm(const at::Tensor& x, const at::Tensor& branch, const at::Tensor& weight, const at::Tensor& bias,
                       const AddNormOptions& o) {
  if (o.fused && x.is_cuda()) {
    if (auto r =
            fused_add_norm<DeviceKernels>(x, branch, weight, o.rms ? at::Tensor() : bias, output_type(x), o.eps, o.rms))
      return *r;
  }
  return composed(x, branch, weight, bias, o);
}

}  // namespace gradacc
