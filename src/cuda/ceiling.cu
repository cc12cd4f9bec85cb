// measure_read_ceiling: the device-memory ceilings the decode benchmark reports against, measured
// on the same device in the same run: cudaMemcpy device-to-device (read + write bytes) and a
// read-only reduction kernel with 16-byte loads (the access pattern of the matvecs), the best of
// four load depths and grid shapes. n_bytes 0: 2 GiB (a 512 MiB buffer read 2% slower on an
// H100: a kernel's fixed start and tail weigh more in 0.17 ms), less where free memory is short.
#include <cuda_runtime.h>

#include <algorithm>
#include <iterator>
#include <vector>

#include "cuda/check.cuh"
#include "cuda/cuda_backend.h"

namespace pdvm::cuda {
namespace {

// Reads n16 16-byte words once, kU loads in flight per thread; one partial sum per block (so the
// loads cannot be elided).
template <int kU>
__global__ void read_reduce_kernel(const int4* __restrict__ src, size_t n16, unsigned* out) {
  unsigned acc = 0;
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x;
  for (; i + (kU - 1) * stride < n16; i += kU * stride) {
    int4 v[kU];
#pragma unroll
    for (int u = 0; u < kU; ++u) v[u] = __ldg(src + i + u * stride);
#pragma unroll
    for (int u = 0; u < kU; ++u) acc += unsigned(v[u].x ^ v[u].y ^ v[u].z ^ v[u].w);
  }
  for (; i < n16; i += stride) { const int4 a = __ldg(src + i); acc += unsigned(a.x ^ a.y ^ a.z ^ a.w); }
  for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
  if ((threadIdx.x & 31) == 0) atomicAdd(out + blockIdx.x, acc);
}

__global__ void fill_kernel(unsigned* p, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    p[i] = unsigned(i * 2654435761u);
}

// The read kernel in four shapes (loads in flight per thread, blocks per SM, threads): the
// ceiling is the best median, so that it does not rest on one access pattern suiting this device.
// On an H100 (2026-12-07, bench/results/round15/ceiling-probe.txt) the shapes read 2.96-3.04 TB/s
// on 512 MiB and 3.06-3.10 TB/s on 2 GiB.
struct ReadShape {
  void (*kernel)(const int4*, size_t, unsigned*);
  int blocks_per_sm, threads;
};
constexpr ReadShape kReadShapes[] = {{read_reduce_kernel<4>, 8, 512},
                                     {read_reduce_kernel<4>, 4, 512},
                                     {read_reduce_kernel<8>, 4, 512},
                                     {read_reduce_kernel<16>, 4, 256}};
constexpr int kReadShapeCount = int(std::size(kReadShapes));

}  // namespace

Result<ReadCeiling> measure_read_ceiling(int device, size_t n_bytes) {
  PDVM_CUDA_TRY(cudaSetDevice(device));
  cudaDeviceProp prop{};
  PDVM_CUDA_TRY(cudaGetDeviceProperties(&prop, device));
  if (n_bytes == 0) {
    size_t free_b = 0, total_b = 0;
    PDVM_CUDA_TRY(cudaMemGetInfo(&free_b, &total_b));
    n_bytes = std::max(std::min(size_t(2) << 30, free_b / 3), size_t(64) << 20);
  }
  n_bytes = n_bytes / 4096 * 4096;
  void* a = nullptr;
  void* b = nullptr;
  unsigned* out = nullptr;
  ReadCeiling r;
  r.n_bytes = n_bytes;
  int blocks = 0;  // one partial sum per block of the largest grid
  for (const ReadShape& sh : kReadShapes)
    blocks = std::max(blocks, prop.multiProcessorCount * sh.blocks_per_sm);
  auto cleanup = [&] { cudaFree(a); cudaFree(b); cudaFree(out); };
  auto run = [&]() -> Status {
    PDVM_CUDA_TRY(cudaMalloc(&a, n_bytes));
    PDVM_CUDA_TRY(cudaMalloc(&b, n_bytes));
    PDVM_CUDA_TRY(cudaMalloc(&out, size_t(blocks) * 4));
    fill_kernel<<<1024, 256>>>(static_cast<unsigned*>(a), n_bytes / 4);
    PDVM_CUDA_TRY(cudaGetLastError());
    cudaEvent_t e0, e1;
    PDVM_CUDA_TRY(cudaEventCreate(&e0));
    PDVM_CUDA_TRY(cudaEventCreate(&e1));
    std::vector<float> copy_ms, read_ms[kReadShapeCount];
    for (int it = 0; it < 12; ++it) {  // 2 warm-up + 10 timed, median
      float ms = 0;
      PDVM_CUDA_TRY(cudaEventRecord(e0));
      PDVM_CUDA_TRY(cudaMemcpyAsync(b, a, n_bytes, cudaMemcpyDeviceToDevice));
      PDVM_CUDA_TRY(cudaEventRecord(e1));
      PDVM_CUDA_TRY(cudaEventSynchronize(e1));
      PDVM_CUDA_TRY(cudaEventElapsedTime(&ms, e0, e1));
      if (it >= 2) copy_ms.push_back(ms);
      for (int k = 0; k < kReadShapeCount; ++k) {
        const ReadShape& sh = kReadShapes[k];
        PDVM_CUDA_TRY(cudaEventRecord(e0));
        sh.kernel<<<prop.multiProcessorCount * sh.blocks_per_sm, sh.threads>>>(
            static_cast<const int4*>(a), n_bytes / 16, out);
        PDVM_CUDA_TRY(cudaGetLastError());
        PDVM_CUDA_TRY(cudaEventRecord(e1));
        PDVM_CUDA_TRY(cudaEventSynchronize(e1));
        PDVM_CUDA_TRY(cudaEventElapsedTime(&ms, e0, e1));
        if (it >= 2) read_ms[k].push_back(ms);
      }
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    std::sort(copy_ms.begin(), copy_ms.end());
    r.memcpy_gbps = 2.0 * double(n_bytes) / (copy_ms[copy_ms.size() / 2] * 1e-3) / 1e9;
    for (std::vector<float>& v : read_ms) {
      std::sort(v.begin(), v.end());
      r.read_gbps = std::max(r.read_gbps, double(n_bytes) / (v[v.size() / 2] * 1e-3) / 1e9);
    }
    return Status::ok();
  };
  const Status st = run();
  cleanup();
  PDVM_TRY(st);
  return r;
}

}  // namespace pdvm::cuda
