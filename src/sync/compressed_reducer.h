// CompressedReducer: gradient sums across ranks with 16 bits per value on the wire (DeepSpeed's
// communication_data_type bf16/fp16: half the bytes of an fp32 reduction), summed in fp32.
//
// A reduction in bf16 or fp16 itself (NCCL's, Gloo's) rounds every partial sum to 16 bits, an
// error that grows with the ranks. Here only what travels is 16-bit:
//   1. each rank cuts its fp32 buffer into R chunks, scales each by a power of two that puts its
//      largest magnitude near 2^14 (exact; fp16 cannot overflow, tiny chunks keep their digits),
//      rounds it to the wire type once, appends the exponent, and sends chunk j to rank j (one
//      all-to-all);
//   2. rank j undoes each sender's scale and sums the R chunks in fp32: its chunk of the sum;
//   3. that chunk is scaled and rounded once more, and every rank receives every chunk (a second
//      all-to-all of the same size, which is an all-gather), undoing the scales into fp32.
// Each value is rounded twice in all (its own contribution, and the sum), whatever the number of
// ranks: relative error at most about 2^-8 (bf16) or 2^-11 (fp16) of the chunk's largest value
// per rounding. reduce_scatter stops after step 2 (its shard is the fp32 sum of the rounded
// contributions), and a reduce to one rank gathers the rounded contributions and sums them there.
// Every rank ends with the same values (only the owner of a chunk sums it). Inf and NaN travel as
// they are, so fp16 loss scaling still sees an overflow.
//
// Exact sums (the window's loss and counts) go through sum_exact, in fp32/fp64 as given.
// Parameters are not gradients: the all-gathers of ZeRO pass through uncompressed.
//
// Owns nothing but the buffers of the sums in flight; `communicator` must outlive it.
// Thread safety: none (the Communicator's).
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "sync/communicator.h"

namespace gradacc {

class CompressedReducer : public GradientReducer {
 public:
  // `wire`: at::kBFloat16 or at::kHalf.
  CompressedReducer(Communicator& communicator, at::ScalarType wire);

  int world_size() const override { return communicator_.world_size(); }
  int rank() const override { return communicator_.rank(); }
  void sum_across_ranks(const at::Tensor& flat) override;
  void start_sum(const at::Tensor& flat) override;
  void wait_pending() override;
  void reduce_scatter(const at::Tensor& flat, const at::Tensor& shard) override;
  void all_gather(const at::Tensor& shard, const at::Tensor& flat) override;
  void start_reduce(const at::Tensor& flat, int root) override;
  int64_t start_all_gather(const at::Tensor& shard, const at::Tensor& flat) override;
  void wait_gather(int64_t ticket) override;
  void sum_exact(const at::Tensor& flat) override;
  bool rounds_on_wire() const override { return true; }
  // The communicator's, plus one call and (values × 2) bytes per sum: the bytes of the buffer
  // reduced, as an fp32 reduction counts 4 per value.
  int64_t calls() const override;
  int64_t bytes() const override;

 private:
  struct Sum {
    at::Tensor flat;        // fp32, where the result goes
    at::Tensor send, recv;  // wire type, [R, chunk + 1]
    int64_t ticket = 0;
    int root = -1;  // a reduce: only this rank gets the sum (recv: [R, numel + 1])
  };
  Sum start(const at::Tensor& flat, int64_t chunk);

  Communicator& communicator_;
  at::ScalarType wire_;
  std::vector<Sum> sums_;  // started, not yet waited
  int64_t calls_ = 0, bytes_ = 0;
};

}  // namespace gradacc
