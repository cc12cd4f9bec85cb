// The fused kernels' dense matvec (Round 16): each lane streams its weight chunks through a
// private ring of shared-memory slots that cp.async fills, instead of loading them into registers.
// Two things follow:
//  - the loads in flight hold no registers, so a lane keeps up to kRingMaxDepth steps (4 rows x
//    16 B each) in flight where the register loop kept two, and only while it waited;
//  - a stage's first steps can be requested before the grid barrier that opens it
//    (ring_prefetch), so they arrive while the block waits at the barrier and stages its input,
//    the stretch where each block's share of the memory system was idle (notes-cuda.md, Rounds 5,
//    13 and 15: 4-7 us per stage over its bytes' floor).
// A lane's items in a stage are (row group g, step j): chunk lane + 32 j of the group's
// kRowsPerWarp rows, the groups as matvec_stage_fmt deals them (warp-major). Item t goes to slot
// t % depth; each item is one cp.async group (empty past the lane's last item), so with `depth`
// groups issued ahead, cp.async.wait_group(depth - 1) means the oldest has landed. Slots are the
// lane's own: no barrier, no other thread reads them. The sums are the register loop's, in the
// same order: results are bit-identical to matvec_rows_warp's.
// Included by matvec.cuh, after the primitives it uses (as sparse_matvec.cuh).
#pragma once

namespace pdvm::cuda {

constexpr int kRingMaxDepth = 4;
// Shared memory one slot takes over the block: per lane, kRowsPerWarp chunks and scale words.
constexpr int kRingSlotBytes = kThreads * kRowsPerWarp * (16 + 4);

// PDVM_CUDA_RING_PREFETCH (kernels.cu): which cross-barrier prefetches run, bit per target stage:
// 1 wo (issued after qkv: in flight during the attention), 2 gate/up, 4 down, 8 the next layer's
// qkv or the LM head (token mode; the embedding's for layer 0).
constexpr int kPrefetchWo = 1, kPrefetchUp = 2, kPrefetchDown = 4, kPrefetchQkv = 8;
static __device__ int g_ring_prefetch = kPrefetchWo | kPrefetchUp | kPrefetchDown | kPrefetchQkv;

__device__ __forceinline__ unsigned smem_addr(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_addr(dst)), "l"(src)
               : "memory");
}
__device__ __forceinline__ void cp_async4(void* dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(smem_addr(dst)), "l"(src)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
// Waits until at most depth - 1 of this thread's groups are pending (depth is warp-uniform).
__device__ __forceinline__ void cp_async_wait_ring(int depth) {
  switch (depth) {
    case 1: asm volatile("cp.async.wait_group 0;" ::: "memory"); break;
    case 2: asm volatile("cp.async.wait_group 1;" ::: "memory"); break;
    case 3: asm volatile("cp.async.wait_group 2;" ::: "memory"); break;
    default: asm volatile("cp.async.wait_group 3;" ::: "memory"); break;
  }
}

// This lane's slots: the ring is at byte `offset` of the block's dynamic shared memory (after the
// staged input and the attention scratch, so a prefetch may land while those are in use); warp w
// owns depth x 2.5 KB, chunks [slot][row][lane] (a warp reads 512 contiguous bytes per row), then
// scale words [slot][row][lane].
struct WeightRing {
  uint8_t* w;
  uint8_t* s;
  int depth;
  __device__ WeightRing(float* smem, const StepState& st) : depth(st.ring_depth) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    uint8_t* base = reinterpret_cast<uint8_t*>(smem) + st.ring_offset +
                    warp * depth * (kRingSlotBytes / kWarps);
    w = base + lane * 16;
    s = base + depth * kRowsPerWarp * 512 + lane * 4;
  }
  __device__ uint8_t* chunk(int slot, int row) const { return w + (slot * kRowsPerWarp + row) * 512; }
  __device__ uint8_t* word(int slot, int row) const { return s + (slot * kRowsPerWarp + row) * 128; }
};

// A lane's walk over its items of one matrix.
struct RingWalk {
  int g, j;  // row group, step
  int n_groups, n_steps, n_chunks, stride;
  __device__ RingWalk(const DevMatrix& m)
      : g((threadIdx.x >> 5) * gridDim.x + blockIdx.x),
        j(0),
        n_groups((m.rows + kRowsPerWarp - 1) / kRowsPerWarp),
        n_steps(((m.row_bytes >> 4) + 31) >> 5),
        n_chunks(m.row_bytes >> 4),
        stride(gridDim.x * kWarps) {}
  __device__ void advance() {
    if (++j == n_steps) { j = 0; g += stride; }
  }
};

// Issues the walk's current item into `slot` (nothing past the lane's last item) and commits it.
template <class F>
__device__ __forceinline__ void ring_issue(const DevMatrix& m, const WeightRing& ring, int slot,
                                           const RingWalk& at) {
  const int c = (threadIdx.x & 31) + 32 * at.j;
  if (at.g < at.n_groups && c < at.n_chunks) {
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const int r = min(at.g * kRowsPerWarp + i, m.rows - 1);
      cp_async16(ring.chunk(slot, i), m.w + size_t(r) * m.row_bytes + size_t(c) * 16);
      if constexpr (F::kScaleWord) cp_async4(ring.word(slot, i), F::scale_word(m, r, c));
    }
  }
  cp_async_commit();
}

// The first `depth` items of m into slots 0..depth-1 (what matvec_stage_ring expects when told
// `prefetched`).
template <class F>
__device__ __forceinline__ void ring_issue_first(const DevMatrix& m, const WeightRing& ring) {
  RingWalk at(m);
  for (int k = 0; k < ring.depth; ++k) {
    ring_issue<F>(m, ring, k, at);
    at.advance();
  }
}

// y = W x over the staged x, as matvec_stage_fmt with matvec_rows_warp, weights through the ring.
// Reads: each weight and scale byte once from HBM (the scale words: 4 B per chunk and row, 2 B of
// which are q4_0's / q8_0's own scale; the other half is the neighbour chunk's, an L1 hit), x from
// shared memory; FLOPs as matvec_rows_warp.
template <class F, class Epi>
__device__ void matvec_stage_ring(const DevMatrix& m, const float* smem, const Epi& epi,
                                  const WeightRing& ring, bool prefetched) {
  const StagedX xs(smem, m.cols);
  const int lane = threadIdx.x & 31;
  RingWalk ahead(m);
  const int first = ahead.g;
  for (int k = 0; k < ring.depth; ++k) {
    if (!prefetched) ring_issue<F>(m, ring, k, ahead);
    ahead.advance();
  }
  int slot = 0;
  for (int g = first; g < ahead.n_groups; g += ahead.stride) {
    const int row0 = g * kRowsPerWarp;
    const auto pre = epi.preload(row0);
    int rr[kRowsPerWarp];
    float acc[kRowsPerWarp];
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      rr[i] = min(row0 + i, m.rows - 1);
      acc[i] = 0.0f;
    }
    float row_scale[kRowsPerWarp];
    if constexpr (F::kRowScale) {
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i)
        row_scale[i] = __ldg(static_cast<const float*>(m.scales) + rr[i]);
    }
    for (int j = 0; j < ahead.n_steps; ++j) {
      cp_async_wait_ring(ring.depth);
      const int c = lane + 32 * j;
      int4 w[kRowsPerWarp];
      float2 sc[kRowsPerWarp];
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) w[i] = *reinterpret_cast<const int4*>(ring.chunk(slot, i));
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) {
        if constexpr (F::kScaleWord) {
          sc[i] = F::scale_of(*reinterpret_cast<const uint32_t*>(ring.word(slot, i)), m, rr[i], c);
        } else {
          sc[i] = F::scale(m, rr[i], c);
        }
      }
      if (c < ahead.n_chunks) F::accumulate(w, sc, xs, c, acc);
      // the slot is refilled after its values were used (the asm's memory clobber keeps the reads
      // above it; the accumulate's use of them orders the hardware's)
      ring_issue<F>(m, ring, slot, ahead);
      ahead.advance();
      slot = slot + 1 == ring.depth ? 0 : slot + 1;
    }
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) acc[i] = warp_sum(acc[i]);
    if constexpr (F::kRowScale) {
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) acc[i] *= row_scale[i];
    }
    epi(row0, acc, pre);
  }
}

// Cross-barrier prefetch: the first items of the next stage's matrix m, issued once this lane is
// done with the current stage. Returns whether it issued (a dense format this instance holds);
// the stage must then be told `prefetched`.
template <FmtSet kFmts>
__device__ __forceinline__ bool ring_prefetch(const DevMatrix& m, const WeightRing& ring) {
#define PDVM_RING_CASE(FMT, F)                                       \
  case FMT:                                                          \
    if constexpr ((kFmts & fmt_bit(FMT)) != 0) {                     \
      ring_issue_first<F>(m, ring);                                  \
      return true;                                                   \
    }                                                                \
    break
  switch (m.fmt) {
    PDVM_RING_CASE(Fmt::kQ8_0, FmtQ8);
    PDVM_RING_CASE(Fmt::kQ4_0, FmtQ4<false>);
    PDVM_RING_CASE(Fmt::kQ4_1, FmtQ4<true>);
    PDVM_RING_CASE(Fmt::kI8Row, FmtI8Row);
    PDVM_RING_CASE(Fmt::kQ8_16, FmtQ8_16);
    PDVM_RING_CASE(Fmt::kBF16, FmtDense<Fmt::kBF16>);
    PDVM_RING_CASE(Fmt::kF16, FmtDense<Fmt::kF16>);
    PDVM_RING_CASE(Fmt::kF32, FmtDense<Fmt::kF32>);
    default: break;
  }
#undef PDVM_RING_CASE
  return false;
}

}  // namespace pdvm::cuda
