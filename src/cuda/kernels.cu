// The CUDA backend's kernels: thin wrappers around the stages of stages.cuh (one per op), the fused
// layer kernel (every stage, grid barriers between), embedding, LM head, argmax, KV fill, and their
// launchers. Launchers check every launch; kernels trust shapes validated at construction.
#include "cuda/kernels.cuh"

#include <cstdlib>

#include "cuda/check.cuh"
#include "cuda/grid_barrier.cuh"
#include "cuda/stage_timer.h"
#include "cuda/stages.cuh"

namespace pdvm::cuda {
namespace {

__device__ __forceinline__ float* dyn_smem() {
  extern __shared__ float4 pdvm_smem4[];
  return reinterpret_cast<float*>(pdvm_smem4);
}

__global__ void set_step_kernel(int* step, int token, int pos) {
  if (token >= 0) step[0] = token;
  if (pos >= 0) step[1] = pos;
}

// x <- tok_embd[token]. Reads d_model weights; not a hot path.
__global__ void embed_kernel(StepState s, DevMatrix embd) {
  const int token = s.step[0];
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < s.d_model; i += gridDim.x * blockDim.x)
    s.x[i] = dequant_one(embd, token, i);
}

// The matvec kernels and the fused ones come in instances per FmtSet (device_types.cuh): the
// launchers pick kernel_fmts(formats the layer or model uses), and the fused kernels' launchers a
// dense instance where one serves them (kDenseInstances).
template <FmtSet kF>
__global__ void __launch_bounds__(kThreads) qkv_kernel(StepState s, DevLayer L, int layer) {
  __shared__ float red[kWarps + 1];
  qkv_stage<false, kF>(s, L, layer, s.step[1], dyn_smem(), red);
}
__global__ void __launch_bounds__(kThreads) attention_kernel(StepState s, int layer) {
  attention_stage(s, layer, s.step[1], dyn_smem());
}
__global__ void __launch_bounds__(kThreads) merge_kernel(StepState s) {
  merge_stage(s, s.step[1], dyn_smem());  // returns at once when the step has a single chunk
}
template <FmtSet kF>
__global__ void __launch_bounds__(kThreads) wo_kernel(StepState s, DevLayer L) {
  __shared__ float red[kWarps + 1];
  wo_stage<false, kF>(s, L, dyn_smem(), red);
}
template <FmtSet kF>
__global__ void __launch_bounds__(kThreads) ffn_up_kernel(StepState s, DevLayer L) {
  __shared__ float red[kWarps + 1];
  ffn_up_stage<false, kF>(s, L, dyn_smem(), red);
}
template <FmtSet kF>
__global__ void __launch_bounds__(kThreads) down_kernel(StepState s, DevLayer L) {
  __shared__ float red[kWarps + 1];
  down_stage<false, kF>(s, L, dyn_smem(), red);
}
__global__ void __launch_bounds__(kThreads) head_kernel(StepState s, const float* out_norm,
                                                        DevMatrix out) {
  __shared__ float red[kWarps + 1];
  head_stage<false>(s, out_norm, out, dyn_smem(), red);
}

// Stage timer marks (layer and token mode; PDVM_CUDA_STAGE_TIMER builds only, see stage_timer.h):
// thread 0 of each block, after the block has finished (done) or the barrier has opened (open).
// In layer mode a launch's start stands for the previous layer's "down open" mark, so the
// barrier after down is the gap between two layers' launches.
#ifdef PDVM_CUDA_STAGE_TIMER
#define PDVM_MARK(layer, mark)                                                                \
  do {                                                                                        \
    if (threadIdx.x == 0)                                                                     \
      s.stage_t[(size_t(layer) * kStageMarks + (mark)) * gridDim.x + blockIdx.x] = globaltimer_ns(); \
  } while (0)
#define PDVM_MARK_DONE(layer, mark) \
  do {                              \
    __syncthreads();                \
    PDVM_MARK(layer, mark);         \
  } while (0)
#else
#define PDVM_MARK(layer, mark) do {} while (0)
#define PDVM_MARK_DONE(layer, mark) do {} while (0)
#endif

// The stage timer's "done" mark of matvec stage k of {qkv, wo, ffn_up, down} ("open" is one more).
// Unused where PDVM_MARK is empty (builds without the stage timer).
[[maybe_unused]] __device__ constexpr int matvec_done_mark(int k) {
  return k == 0 ? kMarkQkvDone : kMarkWoDone + 2 * (k - 1);
}
static_assert(kMarkQkvOpen == kMarkQkvDone + 1 && kMarkWoOpen == kMarkWoDone + 1 &&
                  kMarkUpDone == kMarkWoDone + 2 && kMarkDownDone == kMarkWoDone + 4 &&
                  kMarkDownOpen == kMarkDownDone + 1,
              "matvec_done_mark: the marks' order");

// The attention stage and, with more than one chunk, the merge, each followed by its barrier.
__device__ __forceinline__ void attention_and_merge(const StepState& s, int l, int pos, float* smem,
                                                    GridBarrier& bar) {
  attention_stage(s, l, pos, smem);
  PDVM_MARK_DONE(l, kMarkAttnDone);
  bar.sync();  // every chunk's partial state (with one chunk: attn) is written
  PDVM_MARK(l, kMarkAttnOpen);
  if (attn_plan(s, pos).n_chunks > 1) {  // uniform over the grid: the barrier count stays equal
    merge_stage(s, pos, smem);
    PDVM_MARK_DONE(l, kMarkMergeDone);
    bar.sync();  // attn (all heads) is complete
    PDVM_MARK(l, kMarkMergeOpen);
  }
}

// layer_kernel: a whole layer in one cooperative launch (4 or 5 grid barriers: merge runs only when
// the step's positions span several chunks). Each barrier's reason:
template <FmtSet kF>
__global__ void __launch_bounds__(kThreads) layer_kernel(StepState s, DevLayer L, int layer) {
  __shared__ float red[kWarps + 1];
  GridBarrier bar(s.barrier);
  float* smem = dyn_smem();
  const int pos = s.step[1];
  if (layer > 0) PDVM_MARK(layer - 1, kMarkDownOpen);
  if constexpr (kF == kBitmapFmts) {  // one call site for the four matvec stages, as token_kernel
#pragma unroll 1
    for (int k = 0; k < 4; ++k) {
      if (k == 1) attention_and_merge(s, layer, pos, smem, bar);
      layer_matvec_stage<kF, true>(s, L, layer, pos, k, smem, red);
      PDVM_MARK_DONE(layer, matvec_done_mark(k));
      if (k == 3) break;  // the kernel's end orders this layer's x before the next launch
      bar.sync();
      PDVM_MARK(layer, matvec_done_mark(k) + 1);
    }
    return;
  }
  qkv_stage<true, kF>(s, L, layer, pos, smem, red);
  PDVM_MARK_DONE(layer, kMarkQkvDone);
  bar.sync();  // K,V of pos are in the cache and q is complete
  PDVM_MARK(layer, kMarkQkvOpen);
  attention_and_merge(s, layer, pos, smem, bar);
  wo_stage<true, kF>(s, L, smem, red);
  PDVM_MARK_DONE(layer, kMarkWoDone);
  bar.sync();  // x has the attention residual (the FFN norm needs all of x)
  PDVM_MARK(layer, kMarkWoOpen);
  ffn_up_stage<true, kF>(s, L, smem, red);
  PDVM_MARK_DONE(layer, kMarkUpDone);
  bar.sync();  // act is complete
  PDVM_MARK(layer, kMarkUpOpen);
  down_stage<true, kF>(s, L, smem, red);
  PDVM_MARK_DONE(layer, kMarkDownDone);
  // the kernel's end orders this layer's x before the next launch
}

// The token kernel's layer table, in constant memory: a stage reads its matrix's fields (pointers,
// sizes, format) through uniform constant-cache loads, as layer_kernel reads its kernel parameter.
// (From global memory, a device-side DevLayer array made token mode 0.1-0.8 ms per token slower
// than layer mode on Phi-4: each stage started with a chain of dependent global loads, and the
// kernel spilled. H100, 2026-11-24.) One table per process: the owning backend re-uploads it when
// another backend wrote it last (see upload_token_layers).
__constant__ DevLayer c_layers[kMaxTokenLayers];


// (v, i) beats (bv, bi): larger value, lowest index on ties (deterministic, like argmax_kernel).
__device__ __forceinline__ void argmax_merge(float& bv, int& bi, float v, int i) {
  if (v > bv || (v == bv && i < bi)) { bv = v; bi = i; }
}

// The block's argmax over candidates k = k0 + threadIdx.x, stepping by `stride`, below n; get(k)
// gives (value, vocabulary index). Thread 0 ends with the block's best (lowest index on ties).
template <class Get>
__device__ inline void block_argmax(int k0, int n, int stride, const Get& get, float* red_v,
                                    int* red_i, float& out_v, int& out_i) {
  float bv = -INFINITY;
  int bi = 0x7fffffff;
  for (int k = k0 + threadIdx.x; k < n; k += stride) {
    const float2 vi = get(k);
    argmax_merge(bv, bi, vi.x, __float_as_int(vi.y));
  }
  for (int off = 16; off > 0; off >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, bv, off);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, off);
    argmax_merge(bv, bi, ov, oi);
  }
  __syncthreads();  // red_v/red_i may be in use by an earlier call
  if ((threadIdx.x & 31) == 0) { red_v[threadIdx.x >> 5] = bv; red_i[threadIdx.x >> 5] = bi; }
  __syncthreads();
  if (threadIdx.x == 0)
    for (int w = 1; w < kWarps; ++w) argmax_merge(bv, bi, red_v[w], red_i[w]);
  out_v = bv;
  out_i = bi;
}

// token_kernel: a whole decode step in one cooperative launch: embedding, every layer's six stages,
// the final norm + LM head, and greedy argmax. Barriers (each one's reason):
//  - after the embedding: qkv's RMSNorm reads all of x;
//  - the five of layer_kernel inside a layer;
//  - after down: the next layer's (or the head's) RMSNorm reads all of x;
//  - after the head: the argmax reads every logit;
//  - after the per-block argmax candidates: block 0 reduces them.
// The layers are c_layers[0, n_layers); token and pos come as arguments (no set_step launch: one
// launch per token). kF holds the layers' formats; the head takes any format.
template <FmtSet kF>
__global__ void __launch_bounds__(kThreads) token_kernel(StepState s, int n_layers, DevMatrix embd,
                                                         const float* out_norm, DevMatrix out,
                                                         int token, int pos) {
  __shared__ float red[kWarps + 1];
  __shared__ float red_v[kWarps];
  __shared__ int red_i[kWarps];
  GridBarrier bar(s.barrier);
  float* smem = dyn_smem();
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < s.d_model; i += gridDim.x * blockDim.x)
    s.x[i] = dequant_one(embd, token, i);
  bar.sync();
  for (int l = 0; l < n_layers; ++l) {
    const DevLayer& L = c_layers[l];
    // the sparse instances run the layer's matvec stages through one call site: bitmap_i8 all
    // four (with qkv: -0.42 ms per Phi-4 token at depth 1024, H100), MdCSR wo, ffn_up and down
    // (with qkv its kernel spilled 16 B and was 0.02-0.04 ms slower)
    constexpr bool kQkvInLoop = kF == kBitmapFmts;
    if constexpr (!kQkvInLoop) {
      qkv_stage<true, kF>(s, L, l, pos, smem, red);
      PDVM_MARK_DONE(l, kMarkQkvDone);
      bar.sync();
      PDVM_MARK(l, kMarkQkvOpen);
      attention_and_merge(s, l, pos, smem, bar);
    }
    if constexpr (kF != kMdCsrFmts && kF != kBitmapFmts) {  // the dense instances: inlined stages
      wo_stage<true, kF>(s, L, smem, red);
      PDVM_MARK_DONE(l, kMarkWoDone);
      bar.sync();
      PDVM_MARK(l, kMarkWoOpen);
      ffn_up_stage<true, kF>(s, L, smem, red);
      PDVM_MARK_DONE(l, kMarkUpDone);
      bar.sync();
      PDVM_MARK(l, kMarkUpOpen);
      down_stage<true, kF>(s, L, smem, red);
      PDVM_MARK_DONE(l, kMarkDownDone);
      bar.sync();
      PDVM_MARK(l, kMarkDownOpen);
    } else {
#pragma unroll 1
      for (int k = kQkvInLoop ? 0 : 1; k < 4; ++k) {
        if (kQkvInLoop && k == 1) attention_and_merge(s, l, pos, smem, bar);
        layer_matvec_stage<kF, kQkvInLoop>(s, L, l, pos, k, smem, red);
        PDVM_MARK_DONE(l, matvec_done_mark(k));
        bar.sync();
        PDVM_MARK(l, matvec_done_mark(k) + 1);
      }
    }
  }
  head_stage(s, out_norm, out, smem, red);
  bar.sync();
  float bv;
  int bi;
  const float* logits = s.logits;
  block_argmax(blockIdx.x * kThreads, s.vocab, gridDim.x * kThreads,
               [logits](int k) { return make_float2(logits[k], __int_as_float(k)); }, red_v, red_i,
               bv, bi);
  if (threadIdx.x == 0) { s.amax_v[blockIdx.x] = bv; s.amax_i[blockIdx.x] = bi; }
  bar.sync();
  if (blockIdx.x == 0) {
    const float* cv = s.amax_v;
    const int* ci = s.amax_i;
    block_argmax(0, gridDim.x, kThreads,
                 [cv, ci](int k) { return make_float2(cv[k], __int_as_float(ci[k])); }, red_v,
                 red_i, bv, bi);
    if (threadIdx.x == 0) s.argmax[0] = bi == 0x7fffffff ? 0 : bi;
  }
}

// argmax over the logits, lowest index on ties: deterministic. One block.
constexpr int kArgmaxThreads = 1024;
__global__ void __launch_bounds__(kArgmaxThreads) argmax_kernel(StepState s) {
  __shared__ float best_v[kArgmaxThreads / 32];
  __shared__ int best_i[kArgmaxThreads / 32];
  float v = -INFINITY;
  int idx = 0x7fffffff;
  for (int i = threadIdx.x; i < s.vocab; i += kArgmaxThreads) {
    const float x = s.logits[i];
    if (x > v) { v = x; idx = i; }  // i increases, so the first maximum is kept
  }
  for (int off = 16; off > 0; off >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, off);
    const int oi = __shfl_xor_sync(0xffffffffu, idx, off);
    if (ov > v || (ov == v && oi < idx)) { v = ov; idx = oi; }
  }
  if ((threadIdx.x & 31) == 0) { best_v[threadIdx.x >> 5] = v; best_i[threadIdx.x >> 5] = idx; }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kArgmaxThreads / 32; ++w)
      if (best_v[w] > v || (best_v[w] == v && best_i[w] < idx)) { v = best_v[w]; idx = best_i[w]; }
    s.argmax[0] = idx == 0x7fffffff ? 0 : idx;
  }
}

__device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// K and V of positions [0, n_positions) of every layer and head <- uniform(-sqrt3, sqrt3) (std 1).
__global__ void fill_kv_random_kernel(StepState s, int n_layers, int n_positions, uint64_t seed) {
  const size_t per_head = size_t(n_positions) * s.head_dim;
  const size_t total = size_t(n_layers) * s.n_kv_heads * per_head;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total;
       i += size_t(gridDim.x) * blockDim.x) {
    const size_t lh = i / per_head, rem = i % per_head;
    const size_t dst = lh * size_t(s.ctx) * s.head_dim + rem;
    const uint64_t r = mix64(seed + 0x9e3779b97f4a7c15ull * (i + 1));
    const float a = (float(uint32_t(r)) * 2.3283064e-10f * 2.0f - 1.0f) * 1.7320508f;
    const float b = (float(uint32_t(r >> 32)) * 2.3283064e-10f * 2.0f - 1.0f) * 1.7320508f;
    s.k_cache[dst] = __float2half_rn(a);
    const int layer = int(lh / s.n_kv_heads), head = int(lh % s.n_kv_heads);
    s.v_cache[v_index(s, layer, head, int(rem / s.head_dim), int(rem % s.head_dim))] =
        __float2half_rn(b);
  }
}

template <typename K>
Status set_smem(K kernel, size_t smem_bytes) {
  PDVM_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     int(smem_bytes)));
  return Status::ok();
}

template <typename K>
Result<int> resident_blocks(K kernel, size_t smem_bytes, int sm_count) {
  int per_sm = 0;
  PDVM_CUDA_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem_bytes));
  if (per_sm < 1)
    return Status(StatusCode::kDevice, "CUDA backend: a " + std::to_string(kThreads) +
                                           "-thread block with " + std::to_string(smem_bytes) +
                                           " B of shared memory does not fit on one SM");
  return per_sm * sm_count;
}

// The instances of the layer-running kernels, per FmtSet (kernel_fmts picks one).
struct Instances {
  FmtSet fmts;
  void (*qkv)(StepState, DevLayer, int);
  void (*wo)(StepState, DevLayer);
  void (*ffn_up)(StepState, DevLayer);
  void (*down)(StepState, DevLayer);
  void (*layer)(StepState, DevLayer, int);
  void (*token)(StepState, int, DevMatrix, const float*, DevMatrix, int, int);
};
template <FmtSet kF>
constexpr Instances instances_of() {
  return {kF, qkv_kernel<kF>, wo_kernel<kF>, ffn_up_kernel<kF>, down_kernel<kF>, layer_kernel<kF>,
          token_kernel<kF>};
}
constexpr Instances kInstances[] = {instances_of<kAllFmts>(), instances_of<kMdCsrFmts>(),
                                    instances_of<kBitmapFmts>()};
const Instances& instances_for(FmtSet used) {
  const FmtSet f = kernel_fmts(used);
  for (const auto& k : kInstances)
    if (k.fmts == f) return k;
  return kInstances[0];
}

// The fused kernels' dense instances: layers whose formats are all in kCodeFmts (or all in
// kFloatFmts) run an instance without the other formats' matvecs: no spill in layer_kernel (21.6k
// instructions against 38.4k), and on Phi-4 (H100, docs/notes-cuda.md Round 14) layer mode
// 0.05-0.26 ms and token mode 0.02-0.11 ms faster per token, except q4_1's token mode (+0.07-0.10
// ms): the code-format token instance is not picked for q4_1, which keeps the all-formats one.
// Other layers, and every launch with LaunchConfig::dense_instances off, use instances_for's.
struct DenseInstance {
  FmtSet layer_serves, token_serves;  // the formats each kernel is picked for
  void (*layer)(StepState, DevLayer, int);
  void (*token)(StepState, int, DevMatrix, const float*, DevMatrix, int, int);
};
constexpr DenseInstance kDenseInstances[] = {
    {kCodeFmts, kCodeFmts & ~fmt_bit(Fmt::kQ4_1), layer_kernel<kCodeFmts>, token_kernel<kCodeFmts>},
    {kFloatFmts, kFloatFmts, layer_kernel<kFloatFmts>, token_kernel<kFloatFmts>}};
// The dense instance that serves `used` (per its `serves` member), or null.
const DenseInstance* dense_instance(const LaunchConfig& c, FmtSet used,
                                    FmtSet DenseInstance::*serves) {
  if (!c.dense_instances) return nullptr;
  for (const DenseInstance& d : kDenseInstances)
    if ((used & ~(d.*serves)) == 0) return &d;
  return nullptr;
}

}  // namespace

Status configure_kernels(size_t smem_bytes, int sm_count, LaunchConfig* cfg) {
#ifdef PDVM_CUDA_STAGE_TIMER
  if (const char* e = std::getenv("PDVM_CUDA_KNOCKOUT"); e != nullptr) {
    const int bits = std::atoi(e);
    PDVM_CUDA_TRY(cudaMemcpyToSymbol(g_stage_knockout, &bits, sizeof bits));
  }
#endif
  // PDVM_CUDA_DENSE_ALL_FMTS=1: the all-formats fused kernels for dense layers too (A/B runs)
  if (const char* e = std::getenv("PDVM_CUDA_DENSE_ALL_FMTS"); e != nullptr)
    cfg->dense_instances = std::atoi(e) == 0;
  PDVM_TRY(set_smem(attention_kernel, smem_bytes));
  PDVM_TRY(set_smem(merge_kernel, smem_bytes));
  cfg->smem_bytes = smem_bytes;
  // the per-op kernels share one grid: the smallest resident count of the matvec kernels; the
  // fused kernels all blocks resident, in every instance
  int ops = 1 << 30, fused = kMaxGrid;
  auto fit = [&](auto kernel, int* grid) -> Status {
    PDVM_TRY(set_smem(kernel, smem_bytes));
    PDVM_ASSIGN_OR_RETURN(const int r, resident_blocks(kernel, smem_bytes, sm_count));
    *grid = std::min(*grid, r);
    return Status::ok();
  };
  PDVM_TRY(fit(head_kernel, &ops));
  for (const auto& k : kInstances) {
    PDVM_TRY(fit(k.qkv, &ops));
    PDVM_TRY(fit(k.wo, &ops));
    PDVM_TRY(fit(k.ffn_up, &ops));
    PDVM_TRY(fit(k.down, &ops));
    // one grid size for both fused kernels: they share the backend's barrier counter, which
    // counts in multiples of the grid (GridBarrier)
    PDVM_TRY(fit(k.layer, &fused));
    PDVM_TRY(fit(k.token, &fused));
  }
  for (const DenseInstance& d : kDenseInstances) {
    PDVM_TRY(fit(d.layer, &fused));
    PDVM_TRY(fit(d.token, &fused));
  }
  cfg->grid_ops = ops;
  cfg->grid_layer = cfg->grid_token = fused;
  return Status::ok();
}

Status launch_set_step(const StepState& s, int token, int pos, cudaStream_t stream) {
  set_step_kernel<<<1, 1, 0, stream>>>(s.step, token, pos);
  PDVM_CUDA_LAUNCHED("set_step_kernel");
  return Status::ok();
}

Status launch_embed(const StepState& s, const DevMatrix& tok_embd, cudaStream_t stream) {
  embed_kernel<<<(s.d_model + 255) / 256, 256, 0, stream>>>(s, tok_embd);
  PDVM_CUDA_LAUNCHED("embed_kernel");
  return Status::ok();
}

Status launch_layer_ops(const StepState& s, const DevLayer& L, int layer, const LaunchConfig& c) {
  const Instances& k = instances_for(layer_fmts(L));
  k.qkv<<<c.grid_ops, kThreads, c.smem_bytes, c.stream>>>(s, L, layer);
  PDVM_CUDA_LAUNCHED("qkv_kernel");
  attention_kernel<<<c.grid_ops, kThreads, c.smem_bytes, c.stream>>>(s, layer);
  PDVM_CUDA_LAUNCHED("attention_kernel");
  // the same grid as attention_kernel: both derive the step's chunk plan from the grid size
  merge_kernel<<<c.grid_ops, kThreads, c.smem_bytes, c.stream>>>(s);
  PDVM_CUDA_LAUNCHED("merge_kernel");
  k.wo<<<c.grid_ops, kThreads, c.smem_bytes, c.stream>>>(s, L);
  PDVM_CUDA_LAUNCHED("wo_kernel");
  k.ffn_up<<<c.grid_ops, kThreads, c.smem_bytes, c.stream>>>(s, L);
  PDVM_CUDA_LAUNCHED("ffn_up_kernel");
  k.down<<<c.grid_ops, kThreads, c.smem_bytes, c.stream>>>(s, L);
  PDVM_CUDA_LAUNCHED("down_kernel");
  return Status::ok();
}

Status launch_layer_fused(const StepState& s, const DevLayer& L, int layer, const LaunchConfig& c) {
  StepState s_arg = s;
  DevLayer l_arg = L;
  int layer_arg = layer;
  void* args[] = {&s_arg, &l_arg, &layer_arg};
  const FmtSet used = layer_fmts(L);
  const DenseInstance* d = dense_instance(c, used, &DenseInstance::layer_serves);
  const auto kernel = reinterpret_cast<const void*>(d ? d->layer : instances_for(used).layer);
  PDVM_CUDA_TRY(cudaLaunchCooperativeKernel(kernel, dim3(c.grid_layer), dim3(kThreads), args,
                                            c.smem_bytes, c.stream));
  return Status::ok();
}

Status upload_token_layers(const DevLayer* layers, int n_layers, cudaStream_t stream) {
  if (n_layers > kMaxTokenLayers)
    return unsupported("CUDA backend: token mode holds at most " + std::to_string(kMaxTokenLayers) +
                       " layers, the model has " + std::to_string(n_layers));
  // the table may be in use by a kernel of another backend on another stream: wait for the device
  PDVM_CUDA_TRY(cudaDeviceSynchronize());
  PDVM_CUDA_TRY(cudaMemcpyToSymbolAsync(c_layers, layers, size_t(n_layers) * sizeof(DevLayer), 0,
                                        cudaMemcpyHostToDevice, stream));
  return Status::ok();
}

Status launch_token_fused(const StepState& s, int n_layers, const DevMatrix& embd,
                          const float* out_norm, const DevMatrix& out, int token, int pos,
                          const LaunchConfig& c) {
  StepState s_arg = s;
  int n_arg = n_layers, token_arg = token, pos_arg = pos;
  DevMatrix e_arg = embd, o_arg = out;
  const float* norm_arg = out_norm;
  void* args[] = {&s_arg, &n_arg, &e_arg, &norm_arg, &o_arg, &token_arg, &pos_arg};
  const DenseInstance* d = dense_instance(c, c.token_fmts, &DenseInstance::token_serves);
  const auto kernel = reinterpret_cast<const void*>(d ? d->token : instances_for(c.token_fmts).token);
  PDVM_CUDA_TRY(cudaLaunchCooperativeKernel(kernel, dim3(c.grid_token), dim3(kThreads), args,
                                            c.smem_bytes, c.stream));
  return Status::ok();
}

Status launch_head(const StepState& s, const float* out_norm, const DevMatrix& out,
                   const LaunchConfig& c) {
  head_kernel<<<c.grid_ops, kThreads, c.smem_bytes, c.stream>>>(s, out_norm, out);
  PDVM_CUDA_LAUNCHED("head_kernel");
  return Status::ok();
}

Status launch_argmax(const StepState& s, cudaStream_t stream) {
  argmax_kernel<<<1, kArgmaxThreads, 0, stream>>>(s);
  PDVM_CUDA_LAUNCHED("argmax_kernel");
  return Status::ok();
}

Status launch_fill_kv_random(const StepState& s, int n_layers, int n_positions, uint64_t seed,
                             cudaStream_t stream) {
  if (n_positions <= 0) return Status::ok();
  fill_kv_random_kernel<<<1024, 256, 0, stream>>>(s, n_layers, n_positions, seed);
  PDVM_CUDA_LAUNCHED("fill_kv_random_kernel");
  return Status::ok();
}

}  // namespace pdvm::cuda
