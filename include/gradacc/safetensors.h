// safetensors files: the weight format Python's `safetensors` and PyTorch users read directly.
//
// Layout: u64 little-endian header length, a JSON header {name: {dtype, shape, data_offsets}},
// optional "__metadata__" of string pairs, then the raw little-endian tensor bytes.
//
// Writes are atomic: a temporary file beside the target is written, flushed, fsync'ed and renamed,
// so a crash never leaves a half-written file under the target name. Reads validate the header
// (JSON, dtypes, shapes against byte ranges, ranges inside the file, no overlaps) and throw
// FormatError — one line naming the file and the defect — instead of loading garbage.
//
// Integrity: gradacc adds a CRC-32 of the header and all tensor bytes to the metadata
// ("gradacc_crc32"); a file that carries one is verified on every read, so a corrupted checkpoint
// or weights file is never loaded. Files from other writers have none: they read as unverified
// (ReadInfo::verified), which checkpoints refuse and --init reports. Weights loaded into a module
// must be finite and of a matching kind of dtype (floating into floating, the same integer type
// into an integer buffer): nothing is converted silently.
//
// Inputs must be regular files (a FIFO or a device would block or never end).
#pragma once

#include <map>
#include <stdexcept>
#include <string>

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include "gradacc/errors.h"

namespace gradacc {

using TensorMap = std::map<std::string, at::Tensor>;
using StringMap = std::map<std::string, std::string>;

inline constexpr const char* kChecksumKey = "gradacc_crc32";

void save_safetensors(const std::string& path, const TensorMap& tensors, const StringMap& metadata = {});
struct ReadInfo {
  bool verified = false;  // the file carried a gradacc checksum, and it matched
};
// Loads every tensor (on the CPU). `metadata`, when given, receives the "__metadata__" pairs
// (without the checksum); `info`, whether the checksum was there to verify.
TensorMap load_safetensors(const std::string& path, StringMap* metadata = nullptr, ReadInfo* info = nullptr);

// A module's parameters and buffers under their registered names ("conv1.weight", ...).
TensorMap module_state(const torch::nn::Module& module);
void save_module(const std::string& path, const torch::nn::Module& module, const StringMap& metadata = {});
// Copies a file's tensors into the module. Every parameter and buffer must be present with the
// same shape and a matching kind of dtype, finite, and the file may hold nothing else; otherwise
// FormatError names the first mismatch and the module is unchanged. Returns how the file read.
ReadInfo load_module(const std::string& path, torch::nn::Module& module);
// The same for tensors already read (`source` names them in errors): check_module_state only
// checks; load_module_state checks, then copies.
void check_module_state(const TensorMap& tensors, const torch::nn::Module& module, const std::string& source);
void load_module_state(const TensorMap& tensors, torch::nn::Module& module, const std::string& source);

}  // namespace gradacc
