// add_norm (add_norm.h): the autograd around the fused kernels, and the ATen composition.
#include "model/add_norm.h"

#include <ATen/autocast_mode.h>
#include <ATen/ops/layer_norm.h>
#include <ATen/ops/rms_norm.h>
#include <torch/csrc/autograd/custom_function.h>

#include "device/fused_norm.h"

namespace gradacc {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

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

class FusedAddNorm : public torch::autograd::Function<FusedAddNorm> {
 public:
  // Returns {normed} without a branch, {sum, normed} with one.
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& branch,
                               const at::Tensor& weight, const at::Tensor& bias, fused_norm::Forward f, bool rms) {
    const bool has_branch = branch.defined();
    ctx->saved_data["has_branch"] = has_branch;
    ctx->saved_data["has_bias"] = bias.defined();
    ctx->saved_data["rms"] = rms;
    ctx->saved_data["branch_type"] = static_cast<int64_t>(has_branch ? branch.scalar_type() : x.scalar_type());
    ctx->save_for_backward({has_branch ? f.sum : x, f.mean, f.rstd, weight});
    if (!has_branch) return {f.out};
    return {f.sum, f.out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const bool has_branch = ctx->saved_data["has_branch"].toBool();
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const auto branch_type = static_cast<at::ScalarType>(ctx->saved_data["branch_type"].toInt());
    const at::Tensor& grad_sum = has_branch ? grads[0] : at::Tensor();
    const at::Tensor& grad_normed = has_branch ? grads[1] : grads[0];
    fused_norm::Backward b = fused_norm::backward(grad_normed, grad_sum, saved[0], saved[1], saved[2], saved[3],
                                                  has_branch, branch_type, has_bias, ctx->saved_data["rms"].toBool());
    // One gradient per forward argument: x, branch, weight, bias, the kernel's outputs, rms.
    return {b.grad_x, b.grad_branch, b.grad_weight, has_bias ? b.grad_bias : at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

bool fused_norm_kernels_built() { return fused_norm::kernels_built(); }

AddNormResult add_norm(const at::Tensor& x, const at::Tensor& branch, const at::Tensor& weight, const at::Tensor& bias,
                       const AddNormOptions& o) {
  if (!o.fused || !x.is_cuda()) return composed(x, branch, weight, bias, o);
  const at::Tensor rms_bias = o.rms ? at::Tensor() : bias;
  // The kernel runs first, so that a case it does not cover falls back before autograd records
  // anything; the Function then only records the graph and keeps what the backward needs.
  std::optional<fused_norm::Forward> f = fused_norm::forward(x, branch, weight, rms_bias, output_type(x), o.eps, o.rms);
  if (!f) return composed(x, branch, weight, bias, o);
  const variable_list out = FusedAddNorm::apply(x, branch, weight, rms_bias, *f, o.rms);
  if (!branch.defined()) return {x, out[0]};
  return {out[0], out[1]};
}

}  // namespace gradacc
