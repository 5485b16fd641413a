// device/fused_norm.h in a CUDA build: tensors to the kernels of fused_norm_kernels.cu, on the
// current stream. Without nvcc at configure time (GRADACC_HAVE_CUDA_KERNELS undefined) the build
// has no kernels, and every call answers that no kernel fits.
#include "device/fused_norm.h"

#include <stdexcept>
#include <string>

#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/sum.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#ifdef GRADACC_HAVE_CUDA_KERNELS
#include "device/fused_norm_kernels.h"
#endif

namespace gradacc::fused_norm {

#ifdef GRADACC_HAVE_CUDA_KERNELS
namespace {

std::optional<kernels::DType> kernel_type(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return kernels::DType::kFloat32;
    case at::kBFloat16: return kernels::DType::kBFloat16;
    case at::kHalf: return kernels::DType::kFloat16;
    default: return std::nullopt;
  }
}

void check(int code, const char* what) {
  if (code != 0) throw std::runtime_error(std::string(what) + " failed: " + kernels::error_text(code));
}

void* stream_of(const at::Tensor& t) { return c10::cuda::getCurrentCUDAStream(t.device().index()).stream(); }

}  // namespace

bool kernels_built() { return true; }

std::optional<Forward> forward(const at::Tensor& x, const at::Tensor& branch, const at::Tensor& weight,
                               const at::Tensor& bias, at::ScalarType out_dtype, double eps, bool rms) {
  const bool has_branch = branch.defined(), has_bias = bias.defined();
  if (!x.is_cuda() || x.dim() < 1 || x.numel() == 0 || !weight.is_cuda()) return std::nullopt;
  const int64_t cols = x.size(-1), rows = x.numel() / cols;
  if (cols > kernels::kMaxNormCols || weight.numel() != cols || !x.is_contiguous() || !weight.is_contiguous())
    return std::nullopt;
  if (has_branch &&
      (!branch.is_cuda() || branch.device() != x.device() || branch.sizes() != x.sizes() || !branch.is_contiguous()))
    return std::nullopt;
  if (has_bias && (bias.scalar_type() != weight.scalar_type() || bias.numel() != cols || !bias.is_contiguous() ||
                   bias.device() != x.device()))
    return std::nullopt;
  if (weight.device() != x.device()) return std::nullopt;
  const auto tx = kernel_type(x.scalar_type()), tw = kernel_type(weight.scalar_type()), to = kernel_type(out_dtype);
  const auto tb = has_branch ? kernel_type(branch.scalar_type()) : to;  // without a branch its type is moot
  if (!tx || !tw || !to || !tb || !kernels::norm_supported(*tx, *tb, *tw, *to)) return std::nullopt;

  const c10::cuda::CUDAGuard guard(x.device());
  const auto f32 = x.options().dtype(at::kFloat);
  Forward f;
  if (has_branch) f.sum = at::empty_like(x);
  f.out = at::empty(x.sizes(), x.options().dtype(out_dtype));
  if (!rms) f.mean = at::empty({rows}, f32);
  f.rstd = at::empty({rows}, f32);
  kernels::NormForwardArgs a;
  a.x = x.data_ptr();
  a.branch = has_branch ? branch.data_ptr() : nullptr;
  a.weight = weight.data_ptr();
  a.bias = has_bias ? bias.data_ptr() : nullptr;
  a.sum = has_branch ? f.sum.data_ptr() : nullptr;
  a.out = f.out.data_ptr();
  a.mean = rms ? nullptr : f.mean.data_ptr<float>();
  a.rstd = f.rstd.data_ptr<float>();
  a.rows = rows;
  a.cols = cols;
  a.eps = static_cast<float>(eps);
  a.rms = rms;
  a.x_dtype = *tx;
  a.branch_dtype = *tb;
  a.weight_dtype = *tw;
  a.out_dtype = *to;
  check(kernels::norm_forward(a, stream_of(x)), "the fused norm's forward kernel");
  return f;
}

Backward backward(const at::Tensor& grad_out, const at::Tensor& grad_sum, const at::Tensor& h, const at::Tensor& mean,
                  const at::Tensor& rstd, const at::Tensor& weight, bool has_branch, at::ScalarType branch_dtype,
                  bool has_bias, bool rms) {
  const c10::cuda::CUDAGuard guard(h.device());
  const int64_t cols = h.size(-1), rows = h.numel() / cols;
  const at::Tensor go = grad_out.contiguous(), gs = grad_sum.defined() ? grad_sum.contiguous() : grad_sum;
  const auto tx = kernel_type(h.scalar_type()), tw = kernel_type(weight.scalar_type()),
             to = kernel_type(go.scalar_type());
  const auto tb = has_branch ? kernel_type(branch_dtype) : to;
  if (!tx || !tw || !to || !tb || !kernels::norm_supported(*tx, *tb, *tw, *to) ||
      (gs.defined() && gs.scalar_type() != h.scalar_type()))
    throw std::runtime_error("the fused norm's backward got gradients of other types than its forward's outputs");
  Backward b;
  b.grad_x = at::empty_like(h);
  if (has_branch) b.grad_branch = at::empty(h.sizes(), h.options().dtype(branch_dtype));
  const int64_t blocks = kernels::norm_backward_blocks(rows);
  const at::Tensor weight_partial = at::empty({blocks, cols}, h.options().dtype(at::kFloat));
  const at::Tensor bias_partial = has_bias ? at::empty({blocks, cols}, h.options().dtype(at::kFloat)) : at::Tensor();
  kernels::NormBackwardArgs a;
  a.grad_out = go.data_ptr();
  a.grad_sum = gs.defined() ? gs.data_ptr() : nullptr;
  a.h = h.data_ptr();
  a.mean = rms ? nullptr : mean.data_ptr<float>();
  a.rstd = rstd.data_ptr<float>();
  a.weight = weight.data_ptr();
  a.grad_x = b.grad_x.data_ptr();
  a.grad_branch = has_branch ? b.grad_branch.data_ptr() : nullptr;
  a.weight_partial = weight_partial.data_ptr<float>();
  a.bias_partial = has_bias ? bias_partial.data_ptr<float>() : nullptr;
  a.rows = rows;
  a.cols = cols;
  a.rms = rms;
  a.x_dtype = *tx;
  a.branch_dtype = *tb;
  a.weight_dtype = *tw;
  a.out_dtype = *to;
  check(kernels::norm_backward(a, stream_of(h)), "the fused norm's backward kernel");
  // The partial rows in fp32, added once, then stored in the parameters' own type.
  b.grad_weight = weight_partial.sum(0).to(weight.scalar_type());
  if (has_bias) b.grad_bias = bias_partial.sum(0).to(weight.scalar_type());
  return b;
}

#else  // a CUDA build without nvcc: no kernels

bool kernels_built() { return false; }
std::optional<Forward> forward(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                               at::ScalarType, double, bool) {
  return std::nullopt;
}
Backward backward(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                  const at::Tensor&, bool, at::ScalarType, bool, bool) {
  throw std::logic_error("fused_norm::backward without kernels: forward() never returned a value");
}

#endif

}  // namespace gradacc::fused_norm
