// The CUDA build's device backend: device count, the caching allocator's statistics, and the
// sync-debug hook. This file and cuda_fused_norm.cc (the fused kernels' tensor side) are the only
// ones that include c10/cuda headers.
#include <atomic>
#include <string>

#include <c10/core/CachingDeviceAllocator.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/util/Exception.h>

#include "device/backend.h"

#include <stdexcept>

// ProcessGroupNCCL's header compiles only with USE_C10D_NCCL and NCCL's own header, which the
// wheel's nvidia-nccl package carries (CMake defines GRADACC_HAVE_NCCL when it found nccl.h); its
// code is in libtorch_cuda.
#ifdef GRADACC_HAVE_NCCL
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#include "gradacc/errors.h"
#endif

namespace gradacc::backend {
namespace {

constexpr auto kAggregate = static_cast<size_t>(c10::CachingDeviceAllocator::StatType::AGGREGATE);

// Counts the warnings LibTorch's sync-debug mode raises ("called a synchronizing CUDA operation")
// and passes every other warning on. Warnings from autograd's device threads are replayed on the
// thread that called backward(), so one handler on the training thread sees them all.
class SyncCountingHandler : public c10::WarningHandler {
 public:
  explicit SyncCountingHandler(c10::WarningHandler* previous) : previous_(previous) {}
  void process(const c10::Warning& warning) override {
    if (warning.msg().find("synchronizing CUDA operation") != std::string::npos) {
      count.fetch_add(1, std::memory_order_relaxed);
    } else if (previous_ != nullptr) {
      previous_->process(warning);
    }
  }
  std::atomic<int64_t> count{0};
  c10::WarningHandler* previous_;
  c10::cuda::SyncDebugMode previous_mode = c10::cuda::SyncDebugMode::L_DISABLED;
};

}  // namespace

bool cuda_linked() { return true; }

int cuda_device_count() {
  // device_count() is 0 (never an error) when there is no driver or device.
  return static_cast<int>(c10::cuda::device_count());
}

MemoryReading cuda_memory(int device_index) {
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device_index));
  const auto& bytes = stats.allocated_bytes[kAggregate];
  return {bytes.current, bytes.peak};
}

void cuda_reset_peak(int device_index) {
  c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(device_index));
}

void* start_sync_count() {
  if (cuda_device_count() == 0) return nullptr;
  auto* handler = new SyncCountingHandler(c10::WarningUtils::get_warning_handler());
  handler->previous_mode = c10::cuda::warning_state().get_sync_debug_mode();
  c10::WarningUtils::set_warning_handler(handler);
  c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_WARN);
  return handler;
}

int64_t sync_count(void* state) {
  return state ? static_cast<SyncCountingHandler*>(state)->count.load(std::memory_order_relaxed) : 0;
}

void stop_sync_count(void* state) {
  if (state == nullptr) return;
  auto* handler = static_cast<SyncCountingHandler*>(state);
  c10::cuda::warning_state().set_sync_debug_mode(handler->previous_mode);
  c10::WarningUtils::set_warning_handler(handler->previous_);
  delete handler;
}

c10::intrusive_ptr<c10d::Backend> make_nccl_group(const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                                  int world_size, std::chrono::milliseconds timeout, int device_index) {
#ifdef GRADACC_HAVE_NCCL
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(device_index));
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world_size, options);
#else
  (void)store, (void)rank, (void)world_size, (void)timeout, (void)device_index;
  throw ConfigError("this CUDA build found no nccl.h (the wheel's nvidia-nccl package): no NCCL");
#endif
}

}  // namespace gradacc::backend
