// add_norm: a residual add followed by LayerNorm or RMSNorm over the last dimension,
//   sum = x + branch,  normed = norm(sum)·weight (+ bias),
// as one fused CUDA kernel per direction where this build has it (device/fused_norm.h), and as
// ATen's ops otherwise: on the CPU, in a build without the kernels, for types without a kernel, or
// when the caller asks for the plain ops (`fused` false, the gpt's --fused-kernels off).
//
// The fused path gives what the ATen composition gives, up to the order of the row sums: the same
// sum (rounded to x's type), a norm computed in fp32, and, under CUDA autocast with fp32 x, the
// normalized rows already in autocast's type, which is what the next autocast linear would have
// cast them to (ATen's layer_norm runs in fp32 under autocast and returns fp32). Its backward adds
// the gradient that `sum` gets from its other uses, and gives the branch its gradient in its own
// type, as autograd would. src/model/add_norm_test.cc compares both paths on a GPU;
// src/device/fused_norm_kernels_test.cc runs the kernels and this autograd on the CPU, emulated.
//
// Errors: ATen's (c10::Error) for bad shapes on the ATen path; a failed kernel launch throws
// std::runtime_error. Thread safety: as ATen's ops.
#pragma once

#include <ATen/core/Tensor.h>

namespace gradacc {

struct AddNormOptions {
  double eps = 1e-5;
  bool rms = false;   // RMSNorm (no mean, no bias) instead of LayerNorm
  bool fused = true;  // use the CUDA kernel where it applies
};

struct AddNormResult {
  at::Tensor sum;     // x + branch; x itself when branch is undefined
  at::Tensor normed;  // norm(sum)·weight + bias
};

// branch and bias may be undefined (no add; no shift).
AddNormResult add_norm(const at::Tensor& x, const at::Tensor& branch, const at::Tensor& weight, const at::Tensor& bias,
                       const AddNormOptions& options);

// Whether this build can run add_norm's fused path (a CUDA build with the kernels compiled in).
bool fused_norm_kernels_built();

}  // namespace gradacc
