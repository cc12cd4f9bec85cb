// Host launchers of the CUDA backend's kernels (kernel/launcher split: kernels.cu holds both;
// this header is for other .cu files). Each launcher checks the launch and returns a Status.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/device_types.cuh"
#include "pdvm/status.h"

namespace pdvm::cuda {

struct LaunchConfig {
  int grid_ops = 0;    // blocks of the per-op matvec/attention kernels (resident blocks)
  int grid_layer = 0;  // blocks of the cooperative layer kernel (must all be resident)
  int grid_token = 0;  // blocks of the cooperative token kernel (<= kMaxGrid)
  size_t smem_bytes = 0;
  cudaStream_t stream = nullptr;
  FmtSet token_fmts = kAllFmts;  // the token kernel's layer table's formats (layer_fmts, or'ed)
  bool dense_instances = true;   // the fused kernels' dense instances (kernels.cu) where they serve
};

// Sets the dynamic shared-memory limit of every kernel to smem_bytes and sizes the grids from
// cudaOccupancyMaxActiveBlocksPerMultiprocessor.
Status configure_kernels(size_t smem_bytes, int sm_count, LaunchConfig* cfg);

// step[0] = token (if token >= 0), step[1] = pos (if pos >= 0): stream-ordered, no host buffer.
Status launch_set_step(const StepState& s, int token, int pos, cudaStream_t stream);
Status launch_embed(const StepState& s, const DevMatrix& tok_embd, cudaStream_t stream);
Status launch_layer_ops(const StepState& s, const DevLayer& L, int layer, const LaunchConfig& cfg);
Status launch_layer_fused(const StepState& s, const DevLayer& L, int layer, const LaunchConfig& cfg);
// Token mode's layer table lives in constant memory (one per process): upload_token_layers writes
// it (after a device synchronize, since another backend's kernel may be reading it); the caller
// re-uploads whenever another backend uploaded last. At most kMaxTokenLayers layers.
constexpr int kMaxTokenLayers = 256;  // 256 x 216 B = 55 KB of the 64 KB constant bank
Status upload_token_layers(const DevLayer* layers, int n_layers, cudaStream_t stream);
// The whole step (embed .. argmax) in one cooperative launch over the uploaded layer table.
Status launch_token_fused(const StepState& s, int n_layers, const DevMatrix& embd,
                          const float* out_norm, const DevMatrix& out, int token, int pos,
                          const LaunchConfig& cfg);
Status launch_head(const StepState& s, const float* out_norm, const DevMatrix& out,
                   const LaunchConfig& cfg);
Status launch_argmax(const StepState& s, cudaStream_t stream);
Status launch_fill_kv_random(const StepState& s, int n_layers, int n_positions, uint64_t seed,
                             cudaStream_t stream);
constexpr int kOpsLaunchesPerLayer = 6;

}  // namespace pdvm::cuda
