// What the device backend (cpu_backend.cc or cuda_backend.cc, one per build) provides to the rest
// of src/device. Internal: not installed.
#pragma once

#include <chrono>
#include <cstdint>

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include "gradacc/device.h"

namespace gradacc::backend {

bool cuda_linked();
int cuda_device_count();  // 0 when not linked, or no usable device and driver
MemoryReading cuda_memory(int device_index);
void cuda_reset_peak(int device_index);
// Starts counting host syncs; returns the backend's state, or nullptr when unsupported.
void* start_sync_count();
int64_t sync_count(void* state);
void stop_sync_count(void* state);
// A c10d ProcessGroupNCCL of `world_size` ranks over `store`, on GPU `device_index` (made the
// current device: one GPU per local rank). Throws ConfigError in a build without CUDA or
// without NCCL's header.
c10::intrusive_ptr<c10d::Backend> make_nccl_group(const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                                  int world_size, std::chrono::milliseconds timeout, int device_index);

}  // namespace gradacc::backend
