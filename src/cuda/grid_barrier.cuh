// The grid-wide barrier of the persistent (cooperative) kernels.
#pragma once

#include <cstdint>

namespace pdvm::cuda {

constexpr uint64_t kBarrierTimeoutNs = 5'000'000'000ull;  // 5 s: a layer takes < 1 ms

__device__ __forceinline__ uint64_t globaltimer_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t));
  return t;
}

// GridBarrier: every block of a cooperative launch waits in sync() until all have arrived; what
// any thread wrote before it is visible to every thread after it.
//
// The state is one 64-bit arrival counter in device memory, zeroed once and never reset: each
// barrier adds gridDim.x, so it is a multiple of gridDim.x whenever no block is inside a barrier
// (between launches in particular), and barrier k of a launch is complete when it reaches base +
// (k + 1) * gridDim.x. A block arrives with a fire-and-forget `red.release` and polls the counter
// with acquire loads. The previous design (count + generation word: the last arriver learns it
// is last from its fetch_add, resets the count, then publishes a new generation) put a full
// atomic round trip and a store on the critical path of every barrier: 1.35-1.4 us each on the
// H100, 6 per layer (stage timer, docs/notes-cuda.md).
// Memory ordering: __syncthreads orders the block's writes before thread 0's red.release
// (cumulative at gpu scope); every red is an RMW, so the counter's modification order is one
// release sequence per arrival, and the acquire load that reads a value >= the target (written
// by the last arrival or a later one) synchronises with every arrival before it; the closing
// __syncthreads orders the block's other threads after thread 0's acquire.
// The launch must keep gridDim.x the same for every launch that uses one counter (configure_kernels
// gives layer_kernel and token_kernel one grid size) and all blocks co-resident
// (cudaLaunchCooperativeKernel checks).
struct GridBarrier {
  unsigned long long* count;
  unsigned long long next = 0;  // thread 0: the counter value that completes the next barrier

  __device__ explicit GridBarrier(unsigned* state) : count(reinterpret_cast<unsigned long long*>(state)) {
    if (threadIdx.x == 0) {
      // Blocks of this launch may already have arrived at barrier 0 (fewer than gridDim.x of
      // them: it cannot complete without this block), so round down to the launch's base.
      unsigned long long c;
      asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];" : "=l"(c) : "l"(count) : "memory");
      next = c - c % gridDim.x + gridDim.x;
    }
  }

  __device__ __forceinline__ void sync() {
    __syncthreads();
    if (threadIdx.x == 0) {
      asm volatile("red.release.gpu.global.add.u64 [%0], 1;" ::"l"(count) : "memory");
      const uint64_t t0 = globaltimer_ns();
      unsigned long long c;
      for (;;) {
        asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(c) : "l"(count) : "memory");
        if (c >= next) break;
        // A barrier that never opens is a bug (a block that skipped it, a grid that is not
        // co-resident): trap after kBarrierTimeoutNs so the launch fails with an error the host
        // reports, instead of hanging the device.
        if (globaltimer_ns() - t0 > kBarrierTimeoutNs) __trap();
      }
      next += gridDim.x;
    }
    __syncthreads();
  }
};

}  // namespace pdvm::cuda
