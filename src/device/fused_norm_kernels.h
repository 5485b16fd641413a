// The CUDA kernels of the fused residual add + normalization (device/fused_norm.h is their tensor
// interface). Plain C++ on raw device pointers, so that nvcc never compiles a LibTorch header.
// Compiled only in a CUDA build whose machine has nvcc (CMake: GRADACC_CUDA_KERNELS).
//
// One warp normalizes one row of `cols` values, in fp32 whatever the storage types:
//   forward   h = x + branch (rounded to x's type, as an eager add would), written to `sum`;
//             out = (h − mean)·rstd·weight + bias (LayerNorm) or h·rstd·weight (RMSNorm);
//             mean and rstd per row, for the backward.
//   backward  dh = rstd·(g − mean(g) − x̂·mean(g·x̂)) + grad_sum, g = grad_out·weight, x̂ the
//             normalized h (RMSNorm: no mean(g) term); written to grad_x and grad_branch in their
//             own types; the weight's and bias's gradients as per-block partial sums
//             [blocks, cols], which the caller adds up. Every sum has an order fixed by the shape
//             (no atomics): the same bits on every run.
// Thread safety: the launches are asynchronous on `stream`; nothing here holds state.
#pragma once

#include <cstdint>

namespace gradacc::kernels {

enum class DType : int { kFloat32, kBFloat16, kFloat16 };

// Rows wider than this fall back to ATen (the backward keeps two fp32 rows per warp in shared
// memory, at least one warp per block: 32 KiB at this width, within the 48 KiB any device grants).
inline constexpr int64_t kMaxNormCols = 4096;
// More rows than this fall back too: the forward's grid (one block per 8 rows) must stay within
// CUDA's 2^31 − 1 blocks.
inline constexpr int64_t kMaxNormRows = int64_t{1} << 33;

// The rows, the norm and the storage types: what a forward and its backward share, and what
// picks the kernel instance.
struct NormLayout {
  int64_t rows = 0, cols = 0;
  bool rms = false;
  DType x_dtype = DType::kFloat32, branch_dtype = DType::kFloat32, weight_dtype = DType::kFloat32,
        out_dtype = DType::kFloat32;
};

struct NormForwardArgs {
  const void* x = nullptr;       // [rows, cols], x_dtype
  const void* branch = nullptr;  // [rows, cols], branch_dtype; null: normalize x itself
  const void* weight = nullptr;  // [cols], weight_dtype
  const void* bias = nullptr;    // [cols], weight_dtype; null for RMSNorm or no bias
  void* sum = nullptr;           // [rows, cols], x_dtype: x + branch; null exactly when branch is
  void* out = nullptr;           // [rows, cols], out_dtype
  float* mean = nullptr;         // [rows]; unused (may be null) for RMSNorm
  float* rstd = nullptr;         // [rows]
  float eps = 1e-5f;
  NormLayout layout;
};

struct NormBackwardArgs {
  const void* grad_out = nullptr;   // [rows, cols], out_dtype
  const void* grad_sum = nullptr;   // [rows, cols], x_dtype: h's gradient from its other uses; may be null
  const void* h = nullptr;          // [rows, cols], x_dtype: what was normalized (sum, or x)
  const float* mean = nullptr;      // [rows]; unused for RMSNorm
  const float* rstd = nullptr;      // [rows]
  const void* weight = nullptr;     // [cols], weight_dtype
  void* grad_x = nullptr;           // [rows, cols], x_dtype
  void* grad_branch = nullptr;      // [rows, cols], branch_dtype; may be null
  float* weight_partial = nullptr;  // [norm_backward_blocks(rows, cols), cols]
  float* bias_partial = nullptr;    // same; null when there is no bias
  NormLayout layout;
};

// Whether a kernel exists for these types: (fp32, fp32, fp32, fp32), autocast's (fp32 x, bf16 or
// fp16 branch, fp32 weight, the branch's type out), and all-bf16 or all-fp16.
bool norm_supported(DType x, DType branch, DType weight, DType out);
// The number of partial rows the backward writes for `rows` rows `cols` wide.
int64_t norm_backward_blocks(int64_t rows, int64_t cols);
// Launch on `stream` (a cudaStream_t); return the launch's cudaError_t (0: success), or -1 when the
// types have no kernel.
int norm_forward(const NormForwardArgs& args, void* stream);
int norm_backward(const NormBackwardArgs& args, void* stream);
// The CUDA runtime's text for an error code from the two above.
const char* error_text(int code);

}  // namespace gradacc::kernels
