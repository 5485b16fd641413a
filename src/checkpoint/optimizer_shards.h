// ZeRO checkpoints: each rank's shard of the optimizer state (and of the fp32 master weights, and
// under ZeRO-3 of the parameters) saved beside the main checkpoint, and the conversions that let a
// run resume at another world size, or with ZeRO switched on or off.
//
// Files. Rank 0 writes DIR/ckpt-step-00000120.safetensors as always (model, RNG, position, run
// identity) but without optimizer state; it records the shard count ("zero.shards") and a CRC-32
// of the weights ("zero.weights"). Every rank r of W writes
// DIR/ckpt-step-00000120.shard-r-of-W.safetensors first:
//   tensors   optim.0.<field>          its slice of the flat state (exp_avg, exp_avg_sq, step, ...)
//             state.master_weights     its slice of the fp32 masters (bf16/fp16 models)
//             state.params             ZeRO-3: its parameters, in the model's dtype (the main file
//                                      then holds no trainable parameter: "zero.params")
//   metadata  gradacc_checkpoint_shard format version; step; run.<field> (the run identity);
//             zero.rank, zero.shards, zero.offset, zero.length, zero.total; zero.weights;
//             zero.ranges (ZeRO-3: "element:shard_offset:length,..." — the shard's pieces)
// with the same atomic write and checksum as every checkpoint. The main file is written only after
// every rank has written its shard, so a main file always has its shards; a shard whose step,
// count or weights CRC differs from its main file's belongs to another checkpoint and is refused.
//
// Flat state. An elementwise optimizer (SGD, Adam, AdamW) keeps per parameter tensors of the
// parameter's shape and a step count. Concatenated in parameter order they form one flat vector per
// field, over the `total` trainable elements; the step is one scalar (every parameter steps
// together). The per-parameter state of a plain run and the shard of any world size are both views
// of it: the conversions below go through it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "gradacc/safetensors.h"

namespace gradacc {

// Where one rank's shard lies in the flat parameters (zero_shard.h's layout).
struct ShardSlot {
  // `length` elements of the shard from `shard_offset` are the flat state's from `element`.
  struct Range {
    int64_t element = 0, shard_offset = 0, length = 0;
  };
  int64_t rank = 0, world = 1;
  int64_t offset = 0, length = 0;  // [offset, offset + length); may run past total (padding)
  int64_t total = 0;               // trainable elements
  // ZeRO-3 (each unit sharded on its own): the shard's pieces; shard elements in none are padding.
  // Empty: the one piece [offset, offset + length) (stages 1 and 2).
  std::vector<Range> ranges;
};

// "ckpt-step-00000120.shard-1-of-2.safetensors"
std::string shard_file_name(int64_t step, int64_t rank, int64_t world);

// Per-parameter optimizer state ("<i>.<field>", as optimizer_state() names it) of parameters with
// `numels` elements → the flat state: "<field>" → [total] for tensor fields, "step" → 0-dim.
// Throws ConfigError when a parameter's state is missing or misshapen, or the steps differ.
TensorMap flatten_optimizer_state(const TensorMap& per_param, const std::vector<int64_t>& numels);
// The flat state → per-parameter state for parameters of these shapes (views, not copies).
TensorMap split_optimizer_state(const TensorMap& flat, const std::vector<at::Tensor>& params);
// The flat state → the state of a one-tensor optimizer over [offset, offset + length): "0.<field>",
// zero past the end of the flat state (the padding). Also used for the master weights.
TensorMap slice_optimizer_state(const TensorMap& flat, int64_t offset, int64_t length);
at::Tensor slice_padded(const at::Tensor& flat, int64_t offset, int64_t length);
// The same for any slot, its ranges included.
TensorMap slice_optimizer_state(const TensorMap& flat, const ShardSlot& slot);
at::Tensor slice_padded(const at::Tensor& flat, const ShardSlot& slot);

// Writes this rank's shard file into `dir`: the optimizer's state `optim` ("0.<field>") and other
// tensors `state` ("master_weights"). Throws CheckpointError or FormatError; a failed write leaves
// no file under a shard's name.
void save_shard(const std::string& dir, int64_t step, const ShardSlot& slot, const TensorMap& optim,
                const TensorMap& state, const StringMap& identity, const std::string& weights_crc);

// Reads and checks every shard of the main checkpoint `main_path` (whose metadata is `main_meta`)
// and returns the flat state, with "master_weights" when the shards hold masters and "params"
// when they hold the parameters (ZeRO-3). Throws
// CheckpointError (one line) when a shard is missing, damaged, or from another checkpoint or run.
TensorMap read_shards(const std::string& main_path, const StringMap& main_meta);

// Removes the shard files of the checkpoint of `step` in `dir` (when it is pruned).
void remove_shards(const std::string& dir, int64_t step);

}  // namespace gradacc
