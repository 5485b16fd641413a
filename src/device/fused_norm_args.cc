#include "device/fused_norm_args.h"

#include <stdexcept>

#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/sum.h>

namespace gradacc::fused_norm {
namespace {

std::optional<kernels::DType> kernel_type(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return kernels::DType::kFloat32;
    case at::kBFloat16: return kernels::DType::kBFloat16;
    case at::kHalf: return kernels::DType::kFloat16;
    default: return std::nullopt;
  }
}

// A contiguous tensor of `numel` values on `device`, or an undefined one where allowed.
bool fits(const at::Tensor& t, const at::Device& device, int64_t numel) {
  return t.device() == device && t.numel() == numel && t.is_contiguous();
}

// The layout of `h`'s rows with these storage types (the branch's: none, or its type); std::nullopt
// when a type has no kernel counterpart.
std::optional<kernels::NormLayout> layout_of(const at::Tensor& h, std::optional<at::ScalarType> branch_type,
                                             at::ScalarType weight_type, at::ScalarType out_type, bool rms) {
  const auto tx = kernel_type(h.scalar_type()), tw = kernel_type(weight_type), to = kernel_type(out_type);
  const auto tb = branch_type ? kernel_type(*branch_type) : to;  // without a branch its type is moot
  if (!tx || !tw || !to || !tb) return std::nullopt;
  const int64_t cols = h.size(-1);
  return kernels::NormLayout{h.numel() / cols, cols, rms, *tx, *tb, *tw, *to};
}

}  // namespace

std::optional<ForwardCall> prepare_forward(const at::Tensor& x, const at::Tensor& branch, const at::Tensor& weight,
                                           const at::Tensor& bias, at::ScalarType out_dtype, double eps, bool rms) {
  const bool has_branch = branch.defined(), has_bias = bias.defined();
  if (!x.defined() || x.dim() < 1 || x.numel() == 0 || !x.is_contiguous() || !weight.defined()) return std::nullopt;
  const int64_t cols = x.size(-1);
  if (cols > kernels::kMaxNormCols || !fits(weight, x.device(), cols)) return std::nullopt;
  if (has_branch && (branch.sizes() != x.sizes() || !fits(branch, x.device(), x.numel()))) return std::nullopt;
  if (has_bias && (bias.scalar_type() != weight.scalar_type() || !fits(bias, x.device(), cols))) return std::nullopt;
  const auto layout = layout_of(x, has_branch ? std::optional(branch.scalar_type()) : std::nullopt,
                                weight.scalar_type(), out_dtype, rms);
  if (!layout || layout->rows > kernels::kMaxNormRows) return std::nullopt;

  ForwardCall call;
  Forward& f = call.outputs;
  const auto f32 = x.options().dtype(at::kFloat);
  if (has_branch) f.sum = at::empty_like(x);
  f.out = at::empty(x.sizes(), x.options().dtype(out_dtype));
  if (!rms) f.mean = at::empty({layout->rows}, f32);
  f.rstd = at::empty({layout->rows}, f32);
  kernels::NormForwardArgs& a = call.args;
  a.x = x.data_ptr();
  a.branch = has_branch ? branch.data_ptr() : nullptr;
  a.weight = weight.data_ptr();
  a.bias = has_bias ? bias.data_ptr() : nullptr;
  a.sum = has_branch ? f.sum.data_ptr() : nullptr;
  a.out = f.out.data_ptr();
  a.mean = rms ? nullptr : f.mean.data_ptr<float>();
  a.rstd = f.rstd.data_ptr<float>();
  a.eps = static_cast<float>(eps);
  a.layout = *layout;
  return call;
}

BackwardCall prepare_backward(const at::Tensor& grad_out, const at::Tensor& grad_sum, const at::Tensor& h,
                              const at::Tensor& mean, const at::Tensor& rstd, const at::Tensor& weight, bool has_branch,
                              at::ScalarType branch_dtype, bool has_bias, bool rms, int64_t blocks) {
  const int64_t cols = h.size(-1);
  BackwardCall call;
  // Gradients may arrive in any layout: the kernel reads rows.
  call.grad_out = grad_out.contiguous();
  if (grad_sum.defined()) call.grad_sum = grad_sum.contiguous();
  const at::Tensor &go = call.grad_out, &gs = call.grad_sum;
  const auto layout = layout_of(h, has_branch ? std::optional(branch_dtype) : std::nullopt, weight.scalar_type(),
                                go.scalar_type(), rms);
  if (!layout || (gs.defined() && gs.scalar_type() != h.scalar_type()))
    throw std::runtime_error("the fused norm's backward got gradients of other types than its forward's outputs");
  Backward& b = call.outputs;
  b.grad_x = at::empty_like(h);
  if (has_branch) b.grad_branch = at::empty(h.sizes(), h.options().dtype(branch_dtype));
  call.weight_partial = at::empty({blocks, cols}, h.options().dtype(at::kFloat));
  if (has_bias) call.bias_partial = at::empty({blocks, cols}, h.options().dtype(at::kFloat));
  kernels::NormBackwardArgs& a = call.args;
  a.grad_out = go.data_ptr();
  a.grad_sum = gs.defined() ? gs.data_ptr() : nullptr;
  a.h = h.data_ptr();
  a.mean = rms ? nullptr : mean.data_ptr<float>();
  a.rstd = rstd.data_ptr<float>();
  a.weight = weight.data_ptr();
  a.grad_x = b.grad_x.data_ptr();
  a.grad_branch = has_branch ? b.grad_branch.data_ptr() : nullptr;
  a.weight_partial = call.weight_partial.data_ptr<float>();
  a.bias_partial = has_bias ? call.bias_partial.data_ptr<float>() : nullptr;
  a.layout = *layout;
  return call;
}

Backward BackwardCall::finish(at::ScalarType weight_type) {
  outputs.grad_weight = weight_partial.sum(0).to(weight_type);
  if (bias_partial.defined()) outputs.grad_bias = bias_partial.sum(0).to(weight_type);
  return outputs;
}

}  // namespace gradacc::fused_norm
