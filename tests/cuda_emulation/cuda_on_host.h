// Just enough of CUDA's execution model on the host to run csrc/cuda/kan_kernels.cuh unchanged: every
// thread of a block is a std::thread, __syncthreads is a std::barrier, blocks run one after another
// (shared memory refilled with garbage between them), atomicAdd is an atomic compare-exchange loop.
// Slow, and exact: what the tests compare with the CPU ops is the kernels' own indexing, tiling and
// reductions.
#pragma once

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <thread>
#include <vector>

#define __global__
#define KAN_SHARED(T, name) T *name = reinterpret_cast<T *>(cuda_on_host::shared_memory)

struct HostDim3 {
  unsigned x = 0, y = 1, z = 1;
};

inline thread_local HostDim3 threadIdx, blockIdx, blockDim, gridDim;

namespace cuda_on_host {
inline thread_local unsigned char *shared_memory = nullptr;
inline thread_local std::barrier<> *block_barrier = nullptr;
}    // namespace cuda_on_host

inline void __syncthreads() { cuda_on_host::block_barrier->arrive_and_wait(); }

template <typename T> T atomicAdd(T *address, T value)
{
  std::atomic_ref<T> a(*address);
  T old = a.load();
  while (!a.compare_exchange_weak(old, old + value)) {
  }
  return old;
}

namespace cuda_on_host {

// kernel<<<blocks, threads, shared>>>(args...): `threads` host threads run the blocks one after another
struct Launch {
  template <typename Kernel, typename... Args>
  void operator()(Kernel kernel, int64_t blocks, int threads, size_t shared, Args... args) const
  {
    if (blocks < 1 || threads < 1) throw std::invalid_argument("launch with no blocks or no threads");
    std::vector<unsigned char> memory(shared + 16);
    // kernels may not rely on shared memory's contents at a block's start: NaN-like garbage each time
    auto garbage = [&memory]() noexcept { std::fill(memory.begin(), memory.end(), 0xff); };
    garbage();
    std::barrier<> sync(threads);                                   // __syncthreads
    std::barrier<decltype(garbage)> block_end(threads, garbage);    // between blocks
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; t++)
      pool.emplace_back([&, t] {
        threadIdx.x = unsigned(t);
        blockDim.x = unsigned(threads);
        gridDim.x = unsigned(blocks);
        shared_memory = memory.data();
        block_barrier = &sync;
        for (int64_t b = 0; b < blocks; b++) {
          blockIdx.x = unsigned(b);
          kernel(args...);
          block_end.arrive_and_wait();
        }
      });
    for (auto &th : pool) th.join();
  }
};

}    // namespace cuda_on_host
