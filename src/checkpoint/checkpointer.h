// Checkpointer: the run's checkpoint policy over the file format of checkpoint.h — where, when
// (every N steps, the last step, a stop), how many to keep, and resuming. Only the lead rank
// (rank 0) writes the main file; every rank resumes from the same file. Under ZeRO every rank
// also writes and reads its shard of the optimizer state, and under ZeRO-3 of the parameters.
//
// Thread safety: none; owned by one Trainer.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/stateful.h"
#include "checkpoint/checkpoint.h"

namespace gradacc {

// Where, how often and how many: the run's checkpoint options, resolved.
struct CheckpointPolicy {
  std::string dir;          // "" = no checkpoints
  int64_t every = 0;        // optimizer steps between checkpoints; 0: at the end (and on a stop) only
  int64_t keep = 3;         // newest kept in dir
  std::string resume_from;  // the checkpoint file to continue from ("" = a fresh run)
};

class Checkpointer {
 public:
  // Lead rank: creates the directory, checks it is writable, and locks it for this run (flock on
  // DIR/.gradacc.lock, released when the Checkpointer goes). Throws ConfigError (one line) when
  // another run holds the directory, when a fresh run would write into a directory that already
  // holds checkpoints, or when a resume starts from an older checkpoint than the newest there
  // (continuing would abandon, and later prune, the newer ones).
  Checkpointer(const CheckpointPolicy& policy, StringMap identity, bool lead, at::Device device);
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  bool enabled() const { return !policy_.dir.empty(); }
  // When the plan resumes: loads the checkpoint into `model`, `optimizer` and the tracked parts
  // (their tensors in place) and returns true; false otherwise. Throws CheckpointError (one line)
  // for a file that cannot continue this run, having changed nothing.
  bool resume(torch::nn::Module& model, torch::optim::Optimizer& optimizer) const;
  // Whether step `step` is saved: every `every` steps, at `last_step`, and when the run stops.
  bool due(int64_t step, int64_t last_step, bool stopping) const;
  // The run's parts whose state every checkpoint carries, saved by save() and restored by resume();
  // they must outlive the Checkpointer. Their keys "step", "updates" (the accumulator's) and
  // "epoch", "window", "offset" (the loop's position) are the file's header (checkpoint.h); every
  // other key and tensor is "state.<key>". A run tracks the parts that give the header.
  void track(Stateful& part) { parts_.push_back(&part); }
  // The tracked parts' tensors, by name.
  TensorMap part_tensors() const;
  // ZeRO-1: every rank saves its shard of the optimizer state (optimizer_shards.h) and resumes
  // into `slot`. `agree(ok)` is a collective every rank calls in the same order: whether every
  // rank's `ok` was true. The lead writes the main file only once every shard is on disk.
  void set_sharding(ShardSlot slot, std::function<bool(bool)> agree);
  // ZeRO-3: the parameters are saved in the shards too, `params()` giving this rank's (the slot's
  // elements, in the model's dtype), so that no rank gathers the whole model to save it; the main
  // file keeps the buffers. `sum(x)` is a collective that adds x over the ranks: it ties the
  // shards to their main file (a sum of the shards' CRCs) where the whole weights' CRC did.
  void set_parameter_shards(std::function<at::Tensor()> params, std::function<int64_t(int64_t)> sum);
  // Writes the checkpoint of the tracked parts' state now (lead rank only, and every rank's shard
  // under ZeRO), and returns its path ("" on the other ranks).
  std::string save(const torch::nn::Module& model, torch::optim::Optimizer& optimizer);
  const std::string& last_written() const { return last_; }
  const std::string& dir() const { return policy_.dir; }

 private:
  CheckpointPolicy policy_;
  StringMap identity_;
  bool lead_;
  at::Device device_;
  std::string last_;
  std::optional<ShardSlot> shard_;
  std::vector<Stateful*> parts_;
  std::function<bool(bool)> agree_;
  std::function<at::Tensor()> params_;
  std::function<int64_t(int64_t)> sum_;
  // The directory's lock: a member, so it is released also when the constructor throws.
  struct Lock {
    int fd = -1;
    ~Lock();
  } lock_;
};

}  // namespace gradacc
