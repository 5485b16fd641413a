// What the device backend (cpu_backend.cc or cuda_backend.cc, one per build) provides to the rest
// of src/device. Internal: not installed.
#pragma once

#include <cstdint>

#include "gradacc/device/device.h"

namespace gradacc::backend {

bool cuda_linked();
int cuda_device_count();  // 0 when not linked, or no usable device and driver
MemoryReading cuda_memory(int device_index);
void cuda_reset_peak(int device_index);
// Starts counting host syncs; returns the backend's state, or nullptr when unsupported.
void* start_sync_count();
int64_t sync_count(void* state);
void stop_sync_count(void* state);

}  // namespace gradacc::backend
