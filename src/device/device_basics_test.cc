// Device plumbing that needs no model: the CPU memory counter, device names, and where
// std::filesystem comes from in the linked binary.
#include <dlfcn.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>

#include <ATen/ops/empty.h>
#include <gtest/gtest.h>

#include "gradacc/device.h"
#include "testing/test_util.h"

namespace gradacc {
namespace {

using testing::temp_path;

// The CPU counter sees a tensor come and go.
TEST(CpuMemoryCounter, CountsLiveAndPeakBytes) {
  install_cpu_memory_counter();
  const MemoryReading before = memory_reading(at::kCPU);
  reset_memory_peak(at::kCPU);
  {
    const at::Tensor t = at::empty({1 << 20}, at::kFloat);  // 4 MiB
    EXPECT_EQ(memory_reading(at::kCPU).current_bytes - before.current_bytes, 4 << 20);
  }
  const MemoryReading after = memory_reading(at::kCPU);
  EXPECT_EQ(after.current_bytes, before.current_bytes);
  EXPECT_GE(after.peak_bytes - before.current_bytes, 4 << 20);
}

// std::filesystem must never come from libtorch.so, whose partial copy of it crashed remove_all
// in the CUDA build (CMakeLists.txt), and remove_all must work on a real tree. Where the C++
// runtime's own copy wins depends on the toolchain: Debian's GCC 12 binds it to libstdc++; a
// GCC 13 in /opt/gcc on the GPU machine bound it to libtorch_cpu's complete copy (docs/gpu.md).
TEST(Link, StdFilesystemIsNotLibtorchShimsAndWorks) {
  using RemoveAll = std::uintmax_t (*)(const std::filesystem::path&);
  void* fn = reinterpret_cast<void*>(static_cast<RemoveAll>(&std::filesystem::remove_all));
  Dl_info info{};
  ASSERT_NE(::dladdr(fn, &info), 0);
  const std::string lib = std::filesystem::path(info.dli_fname).filename().string();
  std::cout << "std::filesystem::remove_all comes from " << info.dli_fname << "\n";
  EXPECT_NE(lib, "libtorch.so") << "remove_all comes from " << info.dli_fname;
  const std::filesystem::path root = temp_path("fs_tree");
  std::filesystem::create_directories(root / "a" / "b");
  std::ofstream(root / "a" / "b" / "f") << "x";
  EXPECT_EQ(std::filesystem::remove_all(root), 4u);
  EXPECT_FALSE(std::filesystem::exists(root));
}

TEST(Devices, NamesAreCheckedWithOneLine) {
  EXPECT_EQ(resolve_device("cpu"), at::Device(at::kCPU));
  EXPECT_THROW(resolve_device("gpu"), std::invalid_argument);
  EXPECT_THROW(resolve_device("cuda:x"), std::invalid_argument);
  if (!cuda_available()) {
    try {
      resolve_device("cuda");
      FAIL() << "cuda resolved without a device";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(cuda_linked() ? "no usable CUDA device" : "needs a CUDA build"),
                std::string::npos)
          << e.what();
    }
  }
}

}  // namespace
}  // namespace gradacc
