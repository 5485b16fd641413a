#include "gradacc/device.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <ATen/Context.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>
#include <fmt/format.h>

#include "device/backend.h"

#include "base/parse.h"
#include "gradacc/errors.h"

namespace gradacc {

bool cuda_linked() { return backend::cuda_linked(); }
bool cuda_available() { return backend::cuda_device_count() > 0; }

at::Device resolve_device(const std::string& name) {
  if (name == "cpu") return at::kCPU;
  int index = 0;
  if (name == "cuda") {
    index = 0;
  } else if (name.starts_with("cuda:") && name.size() > 5 && name.size() <= 8 &&
             name.find_first_not_of("0123456789", 5) == std::string::npos) {
    index = std::stoi(name.substr(5));
  } else {
    throw ConfigError(fmt::format("unknown device '{}' (expected cpu, cuda or cuda:N)", shown(name)));
  }
  if (!backend::cuda_linked()) {
    throw ConfigError(
        fmt::format("device '{}' needs a CUDA build (cmake -DGRADACC_CUDA=ON; docs/gpu.md)", shown(name)));
  }
  const int count = backend::cuda_device_count();
  if (count == 0)
    throw ConfigError(fmt::format("device '{}' requested, but no usable CUDA device or driver was found", shown(name)));
  if (index >= count) {
    throw ConfigError(fmt::format("device '{}' requested, but only {} CUDA device(s) are present", shown(name), count));
  }
  return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
}

at::Generator default_generator(const at::Device& device) {
  return at::globalContext().defaultGenerator(device.is_cuda() ? device : at::Device(at::kCPU));
}

at::Tensor generator_state(const at::Device& device) {
  at::Generator g = default_generator(device);
  std::lock_guard<std::mutex> lock(g.mutex());
  return g.get_state();
}

void set_generator_state(const at::Device& device, const at::Tensor& state) {
  at::Generator g = default_generator(device);
  std::lock_guard<std::mutex> lock(g.mutex());
  g.set_state(state);
}

void set_cuda_tf32(bool allow) {
  const auto p = allow ? at::Float32Precision::TF32 : at::Float32Precision::IEEE;
  for (auto op : {at::Float32Op::MATMUL, at::Float32Op::CONV, at::Float32Op::RNN}) {
    at::globalContext().setFloat32Precision(at::Float32Backend::CUDA, op, p);
  }
}

bool keep_freed_host_memory() {
#if defined(__GLIBC__)
  for (const char* v : {"GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"}) {
    if (std::getenv(v) != nullptr) return false;  // the user's own setting wins
  }
  return mallopt(M_MMAP_THRESHOLD, 256 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
#else
  return false;
#endif
}

// ── Counting CPU allocator ────────────────────────────────────────────────────────────────────
// Each block is allocated kHeader bytes larger; its size sits in the header, so the deleter needs
// no table and the data pointer stays the context (a "simple" DataPtr, as c10's own). The header
// keeps c10's 64-byte alignment.
namespace {

constexpr size_t kHeader = 64;
std::atomic<int64_t> g_cpu_live{0}, g_cpu_peak{0}, g_cpu_limit{0};
c10::DeleterFnPtr g_inner_delete = nullptr;

void raise_peak(int64_t now) {
  int64_t peak = g_cpu_peak.load(std::memory_order_relaxed);
  while (now > peak && !g_cpu_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

void delete_counted(void* data) {
  if (data == nullptr) return;
  char* base = static_cast<char*>(data) - kHeader;
  size_t n = 0;
  std::memcpy(&n, base, sizeof n);
  g_cpu_live.fetch_sub(static_cast<int64_t>(n), std::memory_order_relaxed);
  g_inner_delete(base);
}

class CountingCpuAllocator final : public c10::Allocator {
 public:
  explicit CountingCpuAllocator(c10::Allocator* inner) : inner_(inner) {}

  c10::DataPtr allocate(size_t n) override {
    const int64_t limit = g_cpu_limit.load(std::memory_order_relaxed);
    if (limit > 0 && g_cpu_live.load(std::memory_order_relaxed) + static_cast<int64_t>(n) > limit) {
      TORCH_CHECK_WITH(OutOfMemoryError, false, "gradacc memory budget: allocating ", n, " bytes with ",
                       g_cpu_live.load(std::memory_order_relaxed), " in use would pass the budget of ", limit,
                       " bytes");
    }
    void* base = inner_->raw_allocate(n + kHeader);
    std::memcpy(base, &n, sizeof n);
    raise_peak(g_cpu_live.fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed) + static_cast<int64_t>(n));
    void* data = static_cast<char*>(base) + kHeader;
    return {data, data, &delete_counted, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &delete_counted; }
  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }

 private:
  c10::Allocator* inner_;
};

}  // namespace

void install_cpu_memory_counter() {
  static std::once_flag once;
  std::call_once(once, [] {
    c10::Allocator* inner = c10::GetCPUAllocator();
    if (inner->raw_deleter() == nullptr) return;  // not a simple allocator: leave it alone, count nothing
    g_inner_delete = inner->raw_deleter();
    static CountingCpuAllocator counting(inner);  // lives as long as the process: tensors outlive main()
    c10::SetCPUAllocator(&counting, /*priority=*/1);
  });
}

void set_cpu_memory_limit(int64_t bytes) {
  install_cpu_memory_counter();
  g_cpu_limit.store(std::max<int64_t>(bytes, 0), std::memory_order_relaxed);
}

int64_t cpu_memory_limit() { return g_cpu_limit.load(std::memory_order_relaxed); }

// Installed when the library loads, before any tensor a program makes: then the parameters of a
// model built before the Trainer are counted too (the memory budget must see them).
[[maybe_unused]] const bool g_counter_installed_at_load = (install_cpu_memory_counter(), true);

MemoryReading memory_reading(const at::Device& device) {
  if (device.is_cuda()) return backend::cuda_memory(device.has_index() ? device.index() : 0);
  return {g_cpu_live.load(std::memory_order_relaxed), g_cpu_peak.load(std::memory_order_relaxed)};
}

void reset_memory_peak(const at::Device& device) {
  if (device.is_cuda()) return backend::cuda_reset_peak(device.has_index() ? device.index() : 0);
  g_cpu_peak.store(g_cpu_live.load(std::memory_order_relaxed), std::memory_order_relaxed);
}

HostSyncCounter::HostSyncCounter() : state_(backend::start_sync_count()) { supported_ = state_ != nullptr; }
HostSyncCounter::~HostSyncCounter() { backend::stop_sync_count(state_); }
int64_t HostSyncCounter::count() const { return backend::sync_count(state_); }

}  // namespace gradacc
