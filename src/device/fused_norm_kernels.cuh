// The fused residual add + LayerNorm/RMSNorm kernels' device code (fused_norm_kernels.h has the
// contract), and the choice of kernel instance and grid, apart from how a kernel is launched:
// fused_norm_kernels.cu launches them on a GPU; src/device/fused_norm_kernels_test.cc runs this
// same code on the CPU under an emulation of CUDA's execution model (src/testing/cuda_emulation.h),
// which defines the CUDA keywords and built-ins below before including this file.
//
// Why fused: in eager PyTorch under bf16 autocast, `h = x + a; z = layer_norm(h)` and the cast of z
// for the next GEMM are three passes over the rows (add, norm, cast), and their backward four (cast,
// norm backward, the add of the two gradients of h, the cast for a). Here each direction is one
// pass that reads every value once from memory (the row's later passes hit the cache).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstddef>

#include "device/fused_norm_kernels.h"

namespace gradacc::kernels::detail {

#ifdef __CUDACC__
// The block's dynamic shared memory, as floats.
__device__ __forceinline__ float* shared_floats() {
  extern __shared__ float shared[];
  return shared;
}
#endif

constexpr int kWarps = 8;  // rows per block
constexpr int kThreads = kWarps * 32;
constexpr int64_t kMaxBackwardBlocks = 512;          // partial rows of the weight gradients
constexpr int64_t kBackwardSharedBytes = 48 * 1024;  // see backward_warps()

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

template <class T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

template <class TX, class TB, class TW, class TO>
__global__ void __launch_bounds__(kThreads) norm_forward_kernel(NormForwardArgs a) {
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (row >= a.layout.rows) return;  // whole warps leave together: the row depends on the warp only
  const int64_t n = a.layout.cols, base = row * n;
  const TX* x = static_cast<const TX*>(a.x) + base;
  const TB* branch = a.branch != nullptr ? static_cast<const TB*>(a.branch) + base : nullptr;
  TX* sum = a.sum != nullptr ? static_cast<TX*>(a.sum) + base : nullptr;
  const TW* weight = static_cast<const TW*>(a.weight);
  const TW* bias = static_cast<const TW*>(a.bias);

  // 1. h, rounded to x's type as the eager add stores it, and the row's total.
  float total = 0.f;
  for (int64_t c = lane; c < n; c += 32) {
    float h = to_float(x[c]);
    if (branch != nullptr) {
      const TX stored = from_float<TX>(h + to_float(branch[c]));
      sum[c] = stored;
      h = to_float(stored);
    }
    total += h;
  }
  const TX* h = sum != nullptr ? sum : x;  // each lane reads back only what it wrote itself
  const float mean = a.layout.rms ? 0.f : warp_sum(total) / static_cast<float>(n);
  // 2. The variance about the mean (two passes: no cancellation), or the mean square.
  float square = 0.f;
  for (int64_t c = lane; c < n; c += 32) {
    const float d = to_float(h[c]) - mean;
    square += d * d;
  }
  const float rstd = rsqrtf(warp_sum(square) / static_cast<float>(n) + a.eps);
  // 3. The normalized row, scaled and shifted.
  TO* out = static_cast<TO*>(a.out) + base;
  for (int64_t c = lane; c < n; c += 32) {
    float y = (to_float(h[c]) - mean) * rstd * to_float(weight[c]);
    if (bias != nullptr) y += to_float(bias[c]);
    out[c] = from_float<TO>(y);
  }
  if (lane == 0) {
    if (a.mean != nullptr) a.mean[row] = mean;
    a.rstd[row] = rstd;
  }
}

// The backward: a block of warps (backward_warps(cols) of them) strides over the rows, one warp a
// row. Each warp adds its rows' shares of the weight and bias gradients into a slice of shared
// memory of its own, [2, cols], each lane only to its own columns: no atomics, no two writers of
// one place. At the end the block adds its warps' slices in warp order. So every sum has one
// order, fixed by the shape alone, and the gradients come out bit for bit the same on every run.
template <class TX, class TB, class TW, class TO>
__global__ void __launch_bounds__(kThreads) norm_backward_kernel(NormBackwardArgs a) {
  const int64_t n = a.layout.cols;
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const int warp = static_cast<int>(threadIdx.x >> 5), warps = static_cast<int>(blockDim.x >> 5);
  float* weight_sum = shared_floats() + 2 * n * warp;  // this warp's slice
  float* bias_sum = weight_sum + n;
  for (int64_t c = lane; c < n; c += 32) weight_sum[c] = bias_sum[c] = 0.f;  // the lane's own columns

  const TW* weight = static_cast<const TW*>(a.weight);
  const bool has_bias = a.bias_partial != nullptr;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * warps + warp; row < a.layout.rows;
       row += static_cast<int64_t>(gridDim.x) * warps) {
    const int64_t base = row * n;
    const TO* grad_out = static_cast<const TO*>(a.grad_out) + base;
    const TX* h = static_cast<const TX*>(a.h) + base;
    const float mean = a.layout.rms ? 0.f : a.mean[row];
    const float rstd = a.rstd[row];
    float g_xhat = 0.f, g_total = 0.f;
    for (int64_t c = lane; c < n; c += 32) {
      const float xhat = (to_float(h[c]) - mean) * rstd;
      const float go = to_float(grad_out[c]);
      const float g = go * to_float(weight[c]);
      g_xhat += g * xhat;
      g_total += g;
      weight_sum[c] += go * xhat;
      if (has_bias) bias_sum[c] += go;
    }
    const float c1 = warp_sum(g_xhat) / static_cast<float>(n);
    const float c2 = a.layout.rms ? 0.f : warp_sum(g_total) / static_cast<float>(n);
    const TX* grad_sum = a.grad_sum != nullptr ? static_cast<const TX*>(a.grad_sum) + base : nullptr;
    TX* grad_x = static_cast<TX*>(a.grad_x) + base;
    TB* grad_branch = a.grad_branch != nullptr ? static_cast<TB*>(a.grad_branch) + base : nullptr;
    for (int64_t c = lane; c < n; c += 32) {
      const float xhat = (to_float(h[c]) - mean) * rstd;
      const float g = to_float(grad_out[c]) * to_float(weight[c]);
      float d = rstd * (g - c2 - xhat * c1);
      if (grad_sum != nullptr) d += to_float(grad_sum[c]);
      grad_x[c] = from_float<TX>(d);
      if (grad_branch != nullptr) grad_branch[c] = from_float<TB>(d);
    }
  }
  __syncthreads();
  const float* slices = shared_floats();
  for (int64_t c = threadIdx.x; c < n; c += blockDim.x) {
    float w = 0.f, b = 0.f;
    for (int k = 0; k < warps; ++k) {
      w += slices[2 * n * k + c];
      b += slices[2 * n * k + n + c];
    }
    a.weight_partial[blockIdx.x * n + c] = w;
    if (has_bias) a.bias_partial[blockIdx.x * n + c] = b;
  }
}

// The storage types of one kernel instance.
template <class X, class Branch, class Weight, class Out>
struct Types {
  using x = X;
  using branch = Branch;
  using weight = Weight;
  using out = Out;
};

// Calls f(Types<...>{}) for a supported combination of storage types; false for any other.
template <class F>
bool with_types(DType x, DType branch, DType weight, DType out, F&& f) {
  using bf16 = __nv_bfloat16;
  using f16 = __half;
  const auto is = [&](DType x_, DType b_, DType w_, DType o_) {
    return x == x_ && branch == b_ && weight == w_ && out == o_;
  };
  constexpr DType F32 = DType::kFloat32, BF16 = DType::kBFloat16, F16 = DType::kFloat16;
  if (is(F32, F32, F32, F32)) {
    f(Types<float, float, float, float>{});
  } else if (is(F32, BF16, F32, BF16)) {  // bf16 autocast over fp32 parameters
    f(Types<float, bf16, float, bf16>{});
  } else if (is(F32, F16, F32, F16)) {  // fp16 autocast
    f(Types<float, f16, float, f16>{});
  } else if (is(BF16, BF16, BF16, BF16)) {  // bf16 parameters
    f(Types<bf16, bf16, bf16, bf16>{});
  } else if (is(F16, F16, F16, F16)) {
    f(Types<f16, f16, f16, f16>{});
  } else {
    return false;
  }
  return true;
}

// The grid of each kernel for `rows` rows.
inline unsigned forward_blocks(int64_t rows) { return static_cast<unsigned>((rows + kWarps - 1) / kWarps); }
// The backward's warps per block: as many [2, cols] fp32 slices as fit in 48 KiB of shared memory
// (what every CUDA device grants a block without opting in), at most kWarps: 8 up to 768 columns,
// 1 at kMaxNormCols.
inline int backward_warps(int64_t cols) {
  const int64_t fit = kBackwardSharedBytes / (2 * cols * static_cast<int64_t>(sizeof(float)));
  return static_cast<int>(fit < 1 ? 1 : (fit > kWarps ? kWarps : fit));
}
inline unsigned backward_blocks(int64_t rows, int64_t cols) {
  const int64_t warps = backward_warps(cols), blocks = (rows + warps - 1) / warps;
  return static_cast<unsigned>(blocks < kMaxBackwardBlocks ? (blocks > 0 ? blocks : 1) : kMaxBackwardBlocks);
}

// launch(kernel, blocks, threads, shared bytes, args) for the forward and backward kernel of the
// arguments' types; false when they have none.
template <class Launch>
bool launch_forward(const NormForwardArgs& args, Launch&& launch) {
  const NormLayout& l = args.layout;
  return with_types(l.x_dtype, l.branch_dtype, l.weight_dtype, l.out_dtype, [&](auto t) {
    using T = decltype(t);
    launch(norm_forward_kernel<typename T::x, typename T::branch, typename T::weight, typename T::out>,
           forward_blocks(l.rows), kThreads, size_t{0}, args);
  });
}

template <class Launch>
bool launch_backward(const NormBackwardArgs& args, Launch&& launch) {
  const NormLayout& l = args.layout;
  const int warps = backward_warps(l.cols);  // each with a [2, cols] fp32 slice of shared memory
  return with_types(l.x_dtype, l.branch_dtype, l.weight_dtype, l.out_dtype, [&](auto t) {
    using T = decltype(t);
    launch(norm_backward_kernel<typename T::x, typename T::branch, typename T::weight, typename T::out>,
           backward_blocks(l.rows, l.cols), 32 * warps, 2 * static_cast<size_t>(l.cols) * sizeof(float) * warps, args);
  });
}

}  // namespace gradacc::kernels::detail
