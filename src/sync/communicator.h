// Communicator: the data-parallel group of a run, on PyTorch's own distributed engine — a c10d
// TCPStore rendezvous at MASTER_ADDR:MASTER_PORT (rank 0 hosts it, or the launcher: DistEnv) and a c10d
// ProcessGroupGloo for CPU tensors, or a c10d ProcessGroupNCCL for CUDA tensors (CUDA builds: one GPU per local rank,
// LOCAL_RANK; the same rendezvous). LibTorch has no C++ DistributedDataParallel; this plus the Accumulator is gradacc's
// data-parallel layer.
//
// all-reduce: a flat buffer is cut into buckets of at most `bucket_bytes`, all launched before
// any is waited on (Gloo works on them concurrently), then waited in order. Counters record the
// calls and bytes, so the log can show one pass per optimizer step.
//
// reduce-scatter and all-gather (ZeRO-1): on NCCL one collective each. On Gloo, whose c10d
// reduce-scatter is an all-reduce of a copy of the input, the input is all-reduced in place (in
// buckets, as above) and this rank's chunk copied out: the same sums, without the copy.
//
// reduce (ZeRO-2): one c10d reduce to the bucket's owner, started like the all-reduces and waited
// with them. Asynchronous all-gather (ZeRO-3's units): one c10d all-gather each, waited for alone.
//
// Faults: every collective and store access has `timeout`. A peer that died or stalls makes the
// survivors throw one line within it, naming the ranks that stopped answering when that can be
// determined (a monitored barrier on the store), instead of hanging.
//
// Thread safety: none; one training loop per process uses it.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <c10/core/Device.h>

#include "sync/dist_env.h"
#include "sync/gradient_reducer.h"

namespace gradacc {

struct CommunicatorOptions {
  std::chrono::milliseconds timeout{std::chrono::seconds(300)};
  int64_t bucket_bytes = int64_t{25} << 20;  // as DDP's default bucket_cap_mb
  at::Device device = at::kCPU;              // cpu: Gloo; cuda: NCCL on the current GPU (CUDA builds)
  CommunicatorOptions& device_(at::Device v) {
    device = v;
    return *this;
  }
  CommunicatorOptions& timeout_(std::chrono::milliseconds v) {
    timeout = v;
    return *this;
  }
  CommunicatorOptions& bucket_bytes_(int64_t v) {
    bucket_bytes = v;
    return *this;
  }
};

class Communicator : public GradientReducer {
 public:
  // Joins the group described by `env` (blocks until all ranks arrived, up to the timeout).
  // Throws DistributedError with one line when the store cannot be reached or created.
  Communicator(const DistEnv& env, CommunicatorOptions options);
  ~Communicator() override;

  int world_size() const override { return env_.world_size; }
  int rank() const override { return env_.rank; }
  void sum_across_ranks(const at::Tensor& flat) override;
  void start_sum(const at::Tensor& flat) override;
  void wait_pending() override;
  void reduce_scatter(const at::Tensor& flat, const at::Tensor& shard) override;
  void all_gather(const at::Tensor& shard, const at::Tensor& flat) override;
  void start_reduce(const at::Tensor& flat, int root) override;
  int64_t start_all_gather(const at::Tensor& shard, const at::Tensor& flat) override;
  void wait_gather(int64_t ticket) override;

  // For CompressedReducer (sync/compressed_reducer.h), which counts what it reduces itself: an
  // asynchronous all-to-all (`send` and `recv` hold R equal chunks; chunk j of `send` lands in
  // chunk `rank` of rank j's `recv`) and gather (every rank's `in` into `out` on `root`, R × in's
  // elements in rank order; `out` is ignored elsewhere). Waited by wait_gather(ticket) or
  // wait_pending(); not counted in calls()/bytes().
  int64_t start_all_to_all(const at::Tensor& send, const at::Tensor& recv);
  int64_t start_gather(const at::Tensor& in, const at::Tensor& out, int root);

  // Whether `ok` is true on every rank (a collective: every rank calls it in the same order).
  bool all_agree(bool ok);
  // The sum of `value` over the ranks (exact below 2^53): a collective every rank calls in turn.
  int64_t all_sum(int64_t value);

  // Every rank passes a description of its run; throws on every rank when one differs from
  // rank 0's, naming the rank and the first differing line.
  void check_same_config(const std::string& description);

  // Cumulative counters of sum_across_ranks: collective calls (one per bucket) and bytes sent in.
  int64_t calls() const override { return calls_; }
  int64_t bytes() const override { return bytes_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  DistEnv env_;
  CommunicatorOptions options_;
  int64_t calls_ = 0, bytes_ = 0;
  struct Pending;
  std::unique_ptr<Pending> pending_;  // sums started by start_sum(), not yet waited for
  [[noreturn]] void fail(const std::string& what, const std::exception& e);
  bool hosts_store() const { return env_.rank == 0 && !env_.launcher_hosts_store; }
};

}  // namespace gradacc
