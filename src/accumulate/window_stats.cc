// The boundary's norm (window_stats.h), shared by the Accumulator and ZeRO-2's GradientShard.
#include <algorithm>
#include <vector>

#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/stack.h>

#include "accumulate/window_stats.h"

namespace gradacc {

namespace detail {

// ‖G‖ accumulated in float64: an fp32 sum over millions of squares comes out up to ~1e-5 low,
// and clipping would then let slightly too much through. Still one pass over the buffer.
// In chunks of 2^20 elements: the float64 cast of the whole buffer at once would hold a transient
// twice the gradient's size at every boundary (a memory budget would have to leave room for it).
at::Tensor norm64(const at::Tensor& flat) {
  constexpr int64_t kChunk = int64_t{1} << 20;
  const auto chunk_norm = [](const at::Tensor& t) {
    return at::linalg_vector_norm(t, 2, /*dim=*/c10::nullopt, /*keepdim=*/false, /*dtype=*/at::kDouble);
  };
  const int64_t n = flat.numel();
  if (n <= kChunk) return chunk_norm(flat);
  std::vector<at::Tensor> parts;
  parts.reserve(static_cast<size_t>((n + kChunk - 1) / kChunk));
  for (int64_t at = 0; at < n; at += kChunk) parts.push_back(chunk_norm(flat.narrow(0, at, std::min(kChunk, n - at))));
  return at::linalg_vector_norm(at::stack(parts), 2);
}

}  // namespace detail

}  // namespace gradacc
