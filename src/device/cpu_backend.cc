// The CPU build's device backend: no CUDA libraries are linked, so there is nothing to ask (and no
// fused kernels: no_fused_norm.cc).
#include "device/backend.h"

#include <stdexcept>
#include "gradacc/errors.h"

namespace gradacc::backend {

bool cuda_linked() { return false; }
int cuda_device_count() { return 0; }
MemoryReading cuda_memory(int) { return {}; }
void cuda_reset_peak(int) {}
void* start_sync_count() { return nullptr; }
int64_t sync_count(void*) { return 0; }
void stop_sync_count(void*) {}
c10::intrusive_ptr<c10d::Backend> make_nccl_group(const c10::intrusive_ptr<c10d::Store>&, int, int,
                                                  std::chrono::milliseconds, int) {
  throw ConfigError("NCCL needs a CUDA build (cmake -DGRADACC_CUDA=ON; docs/gpu.md)");
}

}  // namespace gradacc::backend
