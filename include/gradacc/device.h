// Devices: which ones this build can run on, the tensor memory it holds on each, and a counter of
// host syncs for checking the hot loop.
//
// The library's object files are the same in the CPU and the CUDA build (GRADACC_CUDA); one
// backend file (src/device/cpu_backend.cc or cuda_backend.cc) answers what differs. A CPU build
// never needs a GPU, a driver or a CUDA toolkit; a CUDA build runs on a machine without a GPU and
// refuses `cuda` there with one line.
//
// Thread safety: the functions may be called from any thread. HostSyncCounter changes process-wide
// CUDA debug state: one at a time, on the thread that runs the training loop.
#pragma once

#include <cstdint>
#include <string>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

namespace gradacc {

// True when this binary links LibTorch's CUDA libraries (a GRADACC_CUDA=ON build).
bool cuda_linked();
// True when it does and a CUDA device with a working driver is present now.
bool cuda_available();

// "cpu", "cuda" or "cuda:N" → a device this process can use. Throws ConfigError with one
// line naming what is missing: a CPU-only build, no usable device or driver, an index past the
// devices present, or a name that is not a device.
at::Device resolve_device(const std::string& name);

// CUDA fp32 matrix products and convolutions: exact IEEE fp32 (false; gradacc's default, so fp32
// runs match the CPU within float rounding) or TF32 tensor cores (true: faster, about 1e-3
// relative). Process-wide (LibTorch's global context). LibTorch's own default turns TF32 on for
// convolutions only.
void set_cuda_tf32(bool allow);

// Tensor memory on one device, in bytes: what live tensors hold now, and the most they held since
// the last reset_memory_peak(). What is counted:
//   CPU  — every allocation through c10's CPU allocator once install_cpu_memory_counter() has run
//          (tensors made before it are not counted);
//   CUDA — the caching allocator's allocated bytes (not the cache it reserves from the driver).
// Code, allocator slack and the rest of the process's RSS are never counted (docs/memory.md).
struct MemoryReading {
  int64_t current_bytes = 0;
  int64_t peak_bytes = 0;
};
MemoryReading memory_reading(const at::Device& device);
void reset_memory_peak(const at::Device& device);

// Wraps c10's CPU allocator in a counting one (live and peak bytes); idempotent. Costs two atomic
// updates per allocation and one per free.
void install_cpu_memory_counter();

// Host memory for training (glibc only; elsewhere nothing): keeps the memory that freed tensors
// leave in the process, for the next micro-batch to reuse, instead of handing it back to the kernel
// and faulting it in again page by page. glibc serves allocations above its mmap threshold (at
// most 32 MiB, adjusted as it goes) with fresh pages and trims the heap's free top, so every
// micro-batch's activations were faulted in anew: a gpt step with micro-batches of 64 sequences took
// about 230,000 page faults (docs/benchmarks.md). This sets the mmap threshold to 256 MiB and the
// trim threshold to 1 GiB, unless the environment sets either (GLIBC_TUNABLES, MALLOC_*_). Resident
// memory then stays near its peak; tensor memory (memory_reading, the memory budget) is unchanged.
// Process-wide: the gradacc CLI calls it first thing; a program of its own may. Returns whether it
// set anything.
bool keep_freed_host_memory();

// The default random generator of `device`: the CPU's, or that GPU's. Its state, and setting it
// back, under the generator's lock (activation checkpointing, memory probes, window replay).
at::Generator default_generator(const at::Device& device);
at::Tensor generator_state(const at::Device& device);
void set_generator_state(const at::Device& device, const at::Tensor& state);

// A ceiling on the tensor memory of the CPU counter (0: none): an allocation that would take the
// live bytes past it throws c10::OutOfMemoryError, as a CUDA device does when it runs out. The
// memory budget's enforcement on the CPU (docs/memory.md). Installs the counter.
void set_cpu_memory_limit(int64_t bytes);
int64_t cpu_memory_limit();

// While alive, counts the host syncs that CUDA operations issue (a device→host copy, .item(),
// a stream synchronize, a blocking copy), through LibTorch's CUDA sync-debug mode. In a CPU build,
// or on a machine without CUDA, supported() is false and count() stays 0.
class HostSyncCounter {
 public:
  HostSyncCounter();
  ~HostSyncCounter();
  HostSyncCounter(const HostSyncCounter&) = delete;
  HostSyncCounter& operator=(const HostSyncCounter&) = delete;
  bool supported() const { return supported_; }
  int64_t count() const;

 private:
  bool supported_ = false;
  void* state_ = nullptr;  // the backend's
};

}  // namespace gradacc
