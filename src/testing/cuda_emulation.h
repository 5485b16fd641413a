// CUDA's execution model emulated on the CPU, so that a unit test runs a kernel's own source on a
// machine without a GPU (CI's): every thread of a block is a std::thread; __syncthreads() is a
// barrier of the block, a warp shuffle an exchange through the block's memory between two barriers
// of the warp; dynamic shared memory is one buffer per block; the blocks of a grid run one after
// another. Include it before the kernel's source (a .cuh), and launch with cuda_emulation::launch.
//
// What it checks: indexing, reductions, the arithmetic and the storage types, exactly as written.
// What it cannot: timing, occupancy, memory coalescing, the launch limits of a real device, and
// races that only a real GPU's scheduling would expose (every thread here runs to its next barrier
// in turn, in any order the OS picks). A warp must reach its shuffles together, as on a GPU.
//
// Thread safety: one launch at a time per process (the built-ins are thread-locals of the
// launch's own threads).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <atomic>
#include <barrier>
#include <cmath>
#include <cstddef>
#include <limits>
#include <memory>
#include <thread>
#include <vector>

#ifndef __launch_bounds__
#define __launch_bounds__(threads)
#endif

namespace gradacc::testing::cuda_emulation {

struct Dim3 {
  unsigned x = 0, y = 0, z = 0;
};

// What the threads of one block share.
struct Block {
  Block(int threads, size_t shared_bytes)
      : sync(threads),
        // NaN, not zero: a GPU's shared memory starts with whatever was there, and a kernel that
        // forgets to clear it must fail here too.
        shared((shared_bytes + sizeof(float) - 1) / sizeof(float), std::numeric_limits<float>::quiet_NaN()),
        exchange(threads) {
    for (int w = 0; w < (threads + 31) / 32; ++w)
      warps.push_back(std::make_unique<std::barrier<>>(std::min(32, threads - 32 * w)));
  }
  std::barrier<> sync;
  std::vector<float> shared;
  std::vector<float> exchange;  // one slot per thread, for the shuffles
  std::vector<std::unique_ptr<std::barrier<>>> warps;
};

inline thread_local Block* current_block = nullptr;

}  // namespace gradacc::testing::cuda_emulation

// The built-ins a kernel names, for the calling (emulated) thread.
inline thread_local gradacc::testing::cuda_emulation::Dim3 threadIdx, blockIdx, blockDim, gridDim;

inline void __syncthreads() { gradacc::testing::cuda_emulation::current_block->sync.arrive_and_wait(); }

inline float __shfl_xor_sync(unsigned /*mask: the whole warp*/, float value, int lane_mask) {
  auto* block = gradacc::testing::cuda_emulation::current_block;
  const unsigned t = threadIdx.x, warp = t / 32, partner = (t & ~31u) | ((t & 31u) ^ static_cast<unsigned>(lane_mask));
  block->exchange[t] = value;
  block->warps[warp]->arrive_and_wait();
  const float theirs = block->exchange[partner];
  block->warps[warp]->arrive_and_wait();  // nobody writes a slot again before its reader has read it
  return theirs;
}

inline float atomicAdd(float* address, float value) { return std::atomic_ref<float>(*address).fetch_add(value); }

inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }

namespace gradacc::kernels::detail {
// The block's dynamic shared memory, as on a GPU (the kernel source asks for it by this name).
inline float* shared_floats() { return testing::cuda_emulation::current_block->shared.data(); }
}  // namespace gradacc::kernels::detail

namespace gradacc::testing::cuda_emulation {

// Runs kernel(args) over `blocks` blocks of `threads` threads with `shared_bytes` of shared memory.
template <class Args>
void launch(void (*kernel)(Args), unsigned blocks, int threads, size_t shared_bytes, const Args& args) {
  for (unsigned b = 0; b < blocks; ++b) {
    Block block(threads, shared_bytes);
    std::vector<std::thread> pool;
    pool.reserve(static_cast<size_t>(threads));
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        current_block = &block;
        threadIdx = {static_cast<unsigned>(t), 0, 0};
        blockIdx = {b, 0, 0};
        blockDim = {static_cast<unsigned>(threads), 1, 1};
        gridDim = {blocks, 1, 1};
        kernel(args);
        // A thread that returns early leaves its warp's and block's barriers: the others must not
        // wait for it (CUDA's __syncthreads() after an early return is undefined; a warp that
        // returns does so together).
        block.sync.arrive_and_drop();
        block.warps[static_cast<size_t>(t) / 32]->arrive_and_drop();
      });
    }
    for (std::thread& th : pool) th.join();
  }
}

}  // namespace gradacc::testing::cuda_emulation
