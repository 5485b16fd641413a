// The autograd function of add_norm's fused path (add_norm.h), over the kernels' implementation
// `Kernels`, a type with two static functions of device/fused_norm.h's signatures:
//   std::optional<fused_norm::Forward> forward(x, branch, weight, bias, out_dtype, eps, rms);
//   fused_norm::Backward backward(grad_out, grad_sum, h, mean, rstd, weight, has_branch,
//                                 branch_dtype, has_bias, rms);
// add_norm.cc instantiates it with the device backend's (device/fused_norm.h);
// src/device/fused_norm_kernels_test.cc with the kernels' source under CUDA emulation on the CPU,
// so that this autograd wiring runs in CI too. Internal: not installed.
#pragma once

#include <optional>

#include <torch/csrc/autograd/custom_function.h>

#include "device/fused_norm.h"
#include "model/add_norm.h"

namespace gradacc {

template <class Kernels>
class FusedAddNorm : public torch::autograd::Function<FusedAddNorm<Kernels>> {
 public:
  // Records the graph of a forward the kernel has already run (`f`): {normed} without a branch,
  // {sum, normed} with one. The branch and the bias are optionals, not undefined tensors: autograd's
  // custom functions take an absent optional for "no input" and refuse an undefined tensor.
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                                                const std::optional<at::Tensor>& branch, const at::Tensor& weight,
                                                const std::optional<at::Tensor>& bias, fused_norm::Forward f,
                                                bool rms) {
    const bool has_branch = branch.has_value();
    ctx->saved_data["has_branch"] = has_branch;
    ctx->saved_data["has_bias"] = bias.has_value();
    ctx->saved_data["rms"] = rms;
    ctx->saved_data["branch_type"] = static_cast<int64_t>(has_branch ? branch->scalar_type() : x.scalar_type());
    ctx->save_for_backward({has_branch ? f.sum : x, f.mean, f.rstd, weight});
    if (!has_branch) return {f.out};
    return {f.sum, f.out};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const bool has_branch = ctx->saved_data["has_branch"].toBool();
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const auto branch_type = static_cast<at::ScalarType>(ctx->saved_data["branch_type"].toInt());
    const at::Tensor grad_sum = has_branch ? grads[0] : at::Tensor();
    const at::Tensor& grad_normed = has_branch ? grads[1] : grads[0];
    fused_norm::Backward b = Kernels::backward(grad_normed, grad_sum, saved[0], saved[1], saved[2], saved[3],
                                               has_branch, branch_type, has_bias, ctx->saved_data["rms"].toBool());
    // One gradient per forward argument: x, branch, weight, bias, the kernel's outputs, rms.
    return {b.grad_x, b.grad_branch, b.grad_weight, has_bias ? b.grad_bias : at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// The fused path of add_norm with `Kernels`, the normalized rows in `out_dtype`; std::nullopt when
// no kernel fits, before autograd has recorded anything (the caller then composes ATen's ops).
// bias must be undefined for RMSNorm.
template <class Kernels>
std::optional<AddNormResult> fused_add_norm(const at::Tensor& x, const at::Tensor& branch, const at::Tensor& weight,
                                            const at::Tensor& bias, at::ScalarType out_dtype, double eps, bool rms) {
  std::optional<fused_norm::Forward> f = Kernels::forward(x, branch, weight, bias, out_dtype, eps, rms);
  if (!f) return std::nullopt;
  const auto present = [](const at::Tensor& t) { return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt; };
  const torch::autograd::variable_list out =
      FusedAddNorm<Kernels>::apply(x, present(branch), weight, present(bias), *f, rms);
  if (!branch.defined()) return AddNormResult{x, out[0]};
  return AddNormResult{out[0], out[1]};
}

}  // namespace gradacc
