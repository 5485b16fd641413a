// Checkpoints: everything needed to continue a run exactly where it stopped, taken at window
// boundaries only (the accumulation buffer is empty there, so it is never saved).
//
// One safetensors file per checkpoint, DIR/ckpt-step-00000120.safetensors, readable by any
// safetensors tool. It holds
//   tensors   model.<name>          every parameter and buffer of the model
//             optim.<i>.<field>     the optimizer's state (see optimizer_state())
//             rng.cpu               LibTorch's default CPU generator
//             rng.cuda              the run's CUDA generator (CUDA runs only)
//   metadata  gradacc_checkpoint    format version ("1")
//             state.<name>          other components' tensors (fp32 master weights)
//   metadata  step, updates         windows completed, updates applied (fewer when fp16 overflow
//                                   skipped some; the LR schedule is a function of updates)
//             epoch, window, offset the data position (LoopPosition; the order is seeded)
//             run.<field>           the run's identity: model, plan, optimizer, data size, seed...
//             state.<name>          other components' state (e.g. a loss scaler), verbatim
// The file is written atomically (temporary file, fsync, rename, directory fsync) and carries a
// CRC-32 over header and data (see safetensors.h), so a torn or corrupted checkpoint is detected
// and never loaded.
//
// Thread safety: none; one training loop saves and loads its own checkpoints.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include "checkpoint/optimizer_shards.h"
#include "gradacc/safetensors.h"
#include "gradacc/step_report.h"

#include "gradacc/errors.h"

namespace gradacc {

// The scalar part of a checkpoint.
struct CheckpointState {
  int64_t step = 0;       // windows completed (the log's step)
  int64_t updates = 0;    // optimizer updates applied
  LoopPosition position;  // the next window
  StringMap extra;        // other components' state (the loss scaler), saved as metadata "state.<name>"
  TensorMap tensors;      // other components' tensors (master weights), saved as "state.<name>"
};

// "ckpt-step-00000120.safetensors"
std::string checkpoint_file_name(int64_t step);

// The metadata field `key` of the checkpoint (or shard) file `path` as a count ≥ 0. Throws
// CheckpointError naming the file when it is missing or not a count.
int64_t metadata_count(const StringMap& meta, const std::string& key, const std::string& path);

// CRC-32 of a tensor's bytes (on the CPU, contiguous), continuing from `crc` (0: a fresh one).
uint32_t tensor_crc32(const at::Tensor& t, uint32_t crc = 0);

// CRC-32 over every parameter and buffer of `module`, in registration order (names, shapes and
// bytes), as 8 hex digits: what data-parallel ranks compare at start, and what ties ZeRO shards
// to their main checkpoint file (every rank holds the same weights after the all-gather).
std::string weights_fingerprint(const torch::nn::Module& module);

// A main checkpoint whose optimizer state was saved in shards (optimizer_shards.h).
struct ShardedSave {
  int64_t world = 1;        // shard files beside it
  std::string weights_crc;  // what ties the shards to it, repeated in every shard
  // ZeRO-3: the trainable parameters are in the shards too ("state.params"); the main file holds
  // only the buffers and the frozen parameters, and records "zero.params" = "sharded". No rank
  // gathers the whole model to save it.
  bool params = false;
};

// Writes a checkpoint into `dir` (created if missing), then deletes all but the newest `keep`
// checkpoints there (with their shard files). Returns the new file's path. With `sharded`, the
// optimizer state and `state.tensors` are in shard files written before (save_shard), and the main
// file records them instead of holding them. Throws CheckpointError or FormatError; a failed write
// leaves no file under a checkpoint name.
std::string save_checkpoint(const std::string& dir, const CheckpointState& state, const torch::nn::Module& model,
                            torch::optim::Optimizer& optimizer, const StringMap& identity, int64_t keep,
                            const at::Device& device = at::kCPU, const ShardedSave* sharded = nullptr);

// The step in a checkpoint file's name (ckpt-step-00000120.safetensors → 120), -1 for other names.
int64_t checkpoint_step(const std::string& path);
// The newest checkpoint in `dir` by step (temporary files are ignored), if any.
std::optional<std::string> latest_checkpoint(const std::string& dir);

// `path` is a checkpoint file, or a directory meaning its newest checkpoint. Throws CheckpointError
// when there is none.
std::string resolve_checkpoint(const std::string& path);

// What a run's `resume` option names: "" (a fresh run) stays "", "auto" is the newest checkpoint
// in `dir` when there is one and otherwise "" (so one command line serves every attempt of a
// restarted job), anything else is resolve_checkpoint(resume).
std::string resolve_resume(const std::string& resume, const std::string& dir);

// Verifies a checkpoint (checksum, format, identity, every tensor's name and shape) and only then
// loads it into `model`, `optimizer`, each of `targets` (from "state.<name>") and the CPU
// generator. Throws CheckpointError with one line naming the file and the first problem; nothing
// is changed then. The returned state's `tensors` is empty (they went into `targets`).
//
// The optimizer state is resharded as needed: a checkpoint saved in shards (by any world size) or
// whole loads into a ZeRO run whose shard is `zero` (its optimizer over one flat tensor, and
// targets["master_weights"] its slice of the masters), or into a plain run (`zero` null). Only
// elementwise optimizers' state converts between the two.
CheckpointState load_checkpoint(const std::string& path, torch::nn::Module& model, torch::optim::Optimizer& optimizer,
                                const StringMap& identity, const TensorMap& targets = {},
                                const at::Device& device = at::kCPU, const ShardSlot* zero = nullptr);

}  // namespace gradacc
