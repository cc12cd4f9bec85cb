// The grid-wide barrier of the persistent (cooperative) kernels.
#pragma once

#include <cuda/atomic>

#include <cstdint>

namespace pdvm::cuda {

constexpr uint64_t kBarrierTimeoutNs = 5'000'000'000ull;  // 5 s: a layer takes < 1 ms

__device__ __forceinline__ uint64_t globaltimer_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t));
  return t;
}

// grid_barrier: every block of a cooperative launch waits here until all have arrived; what any
// thread wrote before the barrier is visible to every thread after it.
// `bar` is two words of device memory, {arrive count, generation}, zero-initialised once; the
// count is back to 0 whenever no block is inside a barrier, so launches can reuse it.
// Memory ordering, step by step:
//  1. __syncthreads(): all of the block's writes of this phase happen-before thread 0's next step
//     (CTA-scope barrier; the gpu-scope release below is cumulative over them).
//  2. thread 0 reads the generation *before* arriving (relaxed is enough: the release RMW in 3
//     cannot be reordered before an earlier load of the same thread, and the generation cannot
//     advance until this block has arrived, so the value read is the current one).
//  3. fetch_add(acq_rel, gpu scope) on the count: release publishes this block's writes; acquire
//     (for the last arriver) makes every other block's released writes visible to it.
//  4. the last arriver resets the count (relaxed: ordered before the release store of 5) and
//     5. bumps the generation with a release store; the others spin on an acquire load of the
//     generation, which synchronises-with that store and transitively with every arrival.
//  6. __syncthreads(): the block's other threads are ordered after thread 0's acquire.
// Requires all blocks co-resident (cudaLaunchCooperativeKernel checks the grid size).
__device__ __forceinline__ void grid_barrier(unsigned* bar) {
  __syncthreads();
  if (threadIdx.x == 0) {
    ::cuda::atomic_ref<unsigned, ::cuda::thread_scope_device> count(bar[0]);
    ::cuda::atomic_ref<unsigned, ::cuda::thread_scope_device> gen(bar[1]);
    const unsigned g = gen.load(::cuda::memory_order_relaxed);
    if (count.fetch_add(1u, ::cuda::memory_order_acq_rel) == gridDim.x - 1) {
      count.store(0u, ::cuda::memory_order_relaxed);
      gen.store(g + 1u, ::cuda::memory_order_release);
    } else {
      // A barrier that never opens is a bug (a block that skipped it, a grid that is not
      // co-resident): trap after kBarrierTimeoutNs so the launch fails with an error the host
      // reports, instead of hanging the device.
      const uint64_t t0 = globaltimer_ns();
      while (gen.load(::cuda::memory_order_acquire) == g) {
        if (globaltimer_ns() - t0 > kBarrierTimeoutNs) __trap();
      }
    }
  }
  __syncthreads();
}

}  // namespace pdvm::cuda
