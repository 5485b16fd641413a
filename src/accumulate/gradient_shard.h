// GradientShard: ZeRO stage 2's gradient path — no rank holds the whole gradient sum, only its
// shard of it (ZeroShard::shard_grad(), L fp32 elements), plus at most a few bucket buffers.
//
// During every micro-batch's backward, each parameter's gradient arrives in its .grad (autograd
// allocates it; .grad is empty before the backward) and a post-accumulate-grad hook
//   - adds it, in fp32, into the staging buffer of its bucket, and empties .grad again (freed);
//   - starts, strictly in bucket order, the reduction of every bucket whose parameters have all
//     arrived: a c10d reduce to the rank that owns the bucket's elements.
// Buckets are cut over the flat parameters (ZeroShard's layout) in reverse order, as gradients
// come, at most `bucket_bytes` of fp32 and 1/8 of a shard each, never across a segment (one owner's
// part of the flat elements; at stage 3, of one unit), so each has one owner
// and the reduces together are a reduce-scatter of the micro-batch's gradient. Two staging buffers
// serve all buckets: before a third is needed, the reductions in flight are waited for and the
// owner adds its received sums into shard_grad() — the accumulation happens on the shard. A bucket
// still in flight from the last micro-batch is waited for before it fills again. (Gradients that
// arrive out of bucket order make the pool grow: a bucket filling ahead of its turn holds a buffer;
// the pool is trimmed back to two at the window boundary.)
//
// shard_grad() thus holds Σ over the window's micro-batches and ranks of the owned slice of S·s·∇L,
// exactly what ZeRO-1's boundary reduce-scatter delivers; the Accumulator's boundary (one small
// all-reduce of counts and shard norms, one factor, the shard's update, one all-gather) is the same.
//
// Unsharded accumulation (set_accumulate_unsharded; FSDP's no_sync): the hooks add every
// micro-batch's gradient into one fp32 buffer of the whole flat layout instead, and that buffer is
// reduced once, bucket by bucket, to the owners: during the window's last backward as buckets
// complete (overlap_next_backward), else at end_window(). 4·P more bytes held, 1/M of the traffic
// for a window of M micro-batches.
//
// Every rank issues the same reduces in the same order: a micro-batch that gives some parameters
// no gradient still reduces their buckets (zeros), and a rank with no examples for a micro-batch
// calls empty_micro_batch(), which reduces every bucket. Thread safety: none (the hooks run on the
// backward's thread, inside accumulate()). Lifetime: removes its hooks when destroyed.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include <ATen/core/Tensor.h>

#include "sync/gradient_reducer.h"
#include "sync/zero_shard.h"

namespace gradacc {

class GradientShard {
 public:
  // `params` are the model's trainable parameters in ZeroShard's order; `zero` and `reducer`
  // outlive this object. Without a reducer (the memory planner's probes, before the group exists)
  // each bucket adds this rank's own gradient into its shard: the same memory, no communication.
  // Throws ConfigError for bucket_bytes < 1 or a reducer of another world.
  GradientShard(std::vector<at::Tensor> params, ZeroShard& zero, GradientReducer* reducer, int64_t bucket_bytes);
  ~GradientShard();
  GradientShard(const GradientShard&) = delete;
  GradientShard& operator=(const GradientShard&) = delete;

  // The group the buckets are reduced over, once it exists (null: none, as in the planner's probes).
  // Between windows only. Throws ConfigError for a reducer of another world.
  void set_reducer(GradientReducer* reducer);

  // Between windows: sum the window's gradient unsharded and reduce it once at end_window() (true;
  // the staging buffers give way to one fp32 buffer of zero.padded() elements), or reduce every
  // micro-batch (false, the default).
  void set_accumulate_unsharded(bool on);
  bool accumulates_unsharded() const { return unsharded_.defined(); }

  // The next backward also sums the squares of this rank's gradients (float64, on the device):
  // the noise scale's small batch.
  void measure_next_backward() {
    square_norm_.zero_();
    measuring_ = true;
  }
  const at::Tensor& measured_square_norm() const { return square_norm_; }

  // Unsharded accumulation: the next backward is the window's last. Each bucket's reduction of the
  // whole sum starts, in bucket order, as soon as that backward's gradients of its parameters are
  // all in, overlapping the rest of the backward (FSDP's sync on the last micro-batch); the end of
  // that micro-batch starts the others, and end_window() waits. Every rank arms the same window
  // position (ZeRO-3 runs stand-ins for a share that ran out), so the reduces match.
  void overlap_next_backward() { overlap_ = unsharded_.defined(); }

  // After a micro-batch's backward: reduces the buckets not yet started, in order.
  void end_micro_batch();
  // A micro-batch this rank has no examples for: takes part in its reduces with zeros.
  void empty_micro_batch();
  // At the boundary: waits for every reduce and adds the last sums into shard_grad().
  void end_window();
  // Forgets the open window (reduces in flight are waited for, their sums dropped).
  void discard_window();

  // Called after each parameter's gradient went into its bucket (ZeRO-3 frees a unit whose
  // parameters all arrived: parameter_gather.h). Empty: nothing.
  void set_arrival_listener(std::function<void(size_t param)> listener) { on_arrival_ = std::move(listener); }

  int64_t buckets() const { return static_cast<int64_t>(buckets_.size()); }
  // fp32 elements of the largest bucket for this layout: at most bucket_bytes, at most 1/8 of a shard.
  static int64_t bucket_elements(const ZeroShard& zero, int64_t bucket_bytes);
  // The staging buffers allocated now (two, unless gradients arrived out of order within the open
  // window; or the unsharded sum), in bytes; and the most there were at once since construction.
  int64_t staging_bytes() const;
  int64_t peak_staging_bytes() const { return peak_slots_ * slot_length_ * 4; }

 private:
  struct Bucket {
    int64_t begin = 0, end = 0;  // elements of the flat parameters
    int owner = 0;               // the rank whose shard holds them
    int64_t shard_at = 0;        // where they begin in that shard
    int64_t pieces = 0, remaining = 0;
    int slot = -1;           // its staging buffer while it fills or is in flight
    bool in_flight = false;  // started and not yet waited for (possibly from the last micro-batch)
  };
  struct Piece {  // where a slice of one parameter's gradient goes
    size_t bucket;
    int64_t from, to, length;  // offset in the parameter, offset in the bucket, elements
  };
  struct Hook;

  void parameter_ready(size_t param);
  int acquire_slot();
  void start_ready(bool all);
  void drain(bool keep_sums);
  void reset_micro_batch();
  void trim_slots();
  void reduce_unsharded();
  void start_unsharded(bool all);

  std::vector<at::Tensor> params_;
  ZeroShard& zero_;
  GradientReducer* reducer_;                // may be null
  std::vector<Bucket> buckets_;             // in the order they are reduced (reverse parameter order)
  std::vector<std::vector<Piece>> pieces_;  // per parameter
  std::vector<char> arrived_;               // per parameter, this micro-batch
  std::vector<at::Tensor> slots_;           // staging buffers, fp32, the largest bucket's length each
  std::vector<char> slot_busy_;
  std::vector<size_t> in_flight_;  // buckets started and not yet waited for
  size_t next_ = 0;                // buckets [0, next_) are started this micro-batch
  int64_t slot_length_ = 0;
  int64_t peak_slots_ = 2;
  bool measuring_ = false;
  at::Tensor square_norm_;
  at::Tensor unsharded_;  // the window's gradient, whole (unsharded accumulation); else undefined
  bool overlap_ = false;  // unsharded: this backward starts the window's reduces (the last one)
  bool started_ = false;  // unsharded: the window's reduces are all started (waited at end_window)
  std::function<void(size_t)> on_arrival_;
};

}  // namespace gradacc
