// Decode attention over the KV cache, flash-decoding style: the positions [start, pos] are cut
// into chunks; one warp computes, for one KV head and one chunk, the softmax state (max m, sum l,
// unnormalised acc) of the query heads of its GQA group in a single pass (online softmax), on
// tensor cores for head size 128 (attend_chunk_mma), else on CUDA cores (attend_chunk_warp: K
// and V of a batch of positions loaded together); one block per query head then merges the
// chunks. No score matrix ever reaches device memory.
//
// The chunk size is chosen per step (attn_plan) so that n_kv_heads x n_chunks is about the number
// of warps of the grid: at depth 1024 on Phi-4 a fixed 64-position chunk gave 170 warps of work to
// a 2112-warp grid, each walking 16 dependent load batches, and the stage was latency-bound
// (~1.2 ms per token of 8 for 0.075 ms of bytes; docs/notes-cuda.md).
#pragma once

#include <cuda_fp16.h>

#include "cuda/device_types.cuh"
#include "cuda/matvec.cuh"

namespace pdvm::cuda {

// Query heads of a GQA group handled per pass over a chunk's K and V (Phi-4, Llama-3: 4 per KV
// head; SmolLM2: 3). Larger groups take several passes (items), re-reading the chunk from L2,
// and attn_plan counts them when it sizes the chunks. 2, not 4: with 4 the attention set
// token_kernel's 128-register peak and its code speed moved with unrelated changes elsewhere in
// the kernel (q4_0 at depth 4096 +0.08 ms from a change to the int8-row matvec); with 2 the
// kernel peaks at 125 and Phi-4 token mode is 0.02-0.04 ms faster at depth 0 / 1024 and 0.04
// (q4_0) / 0.12 (q8_0) ms at 4096 (H100, 2026-11-25, docs/notes-cuda.md Round 7).
constexpr int kMaxGroup = 2;
constexpr int kMaxChunk = 64;  // largest positions per chunk a caller may ask for (CudaOptions)
constexpr int kKvSteps = 2;    // K and V load steps per batch: 4 x 16 B per lane (3 and 4 spill)

__device__ __forceinline__ int attn_start(const StepState& s, int pos) {
  return s.window > 0 ? max(0, pos - s.window + 1) : 0;
}

// How a step's positions [t0, t0 + n) are cut: n_chunks chunks of `chunk` positions (the last
// may be shorter). Every block computes the same plan (it depends on pos and the grid size only),
// so the attention and merge stages agree and the token kernel's barriers stay uniform.
// An item is (chunk, kv head, g_step query heads of its group): with fewer (chunk, kv head)
// pairs than the grid has warps, the group is split so that more warps share the work. An item is
// a serial chain in one warp (~9 us for a whole group of 4 at depth 0 on Phi-4, H100, measured
// with knock-out variants: docs/notes-cuda.md), and each query head split off costs only an L2
// re-read of the chunk's K and V.
struct AttnPlan {
  int t0, n, chunk, n_chunks, g_step, n_sub_items;
};
__device__ __forceinline__ AttnPlan attn_plan(const StepState& s, int pos) {
  AttnPlan p;
  p.t0 = attn_start(s, pos);
  p.n = pos + 1 - p.t0;
  // one item per warp, counting the passes a group larger than kMaxGroup takes
  // the tensor-core path takes a whole group per pass (attend_chunk_mma)
  const int max_group = s.v_pairs ? s.n_heads / s.n_kv_heads : kMaxGroup;
  const int passes = (s.n_heads / s.n_kv_heads + max_group - 1) / max_group;
  const int target = max(1, int(gridDim.x) * kWarps / (s.n_kv_heads * passes));
  int chunk = min(s.attn_chunk, max(s.attn_min_chunk, (p.n + target - 1) / target));
  chunk = max(chunk, (p.n + s.n_chunks_max - 1) / s.n_chunks_max);  // capacity of s.part
  if (s.v_pairs) chunk = (chunk + 15) & ~15;  // tensor cores: whole 16-position tiles
  p.chunk = chunk;
  p.n_chunks = (p.n + chunk - 1) / chunk;
  const int group = s.n_heads / s.n_kv_heads, pairs = s.n_kv_heads * p.n_chunks;
  p.g_step = min(group, max_group);
  for (int g = 1; g < p.g_step && !s.v_pairs; g *= 2)
    if (pairs * ((group + g - 1) / g) <= int(gridDim.x) * kWarps) { p.g_step = g; break; }
  p.n_sub_items = (group + p.g_step - 1) / p.g_step;
  return p;
}

__device__ __forceinline__ void half8_to_float(int4 raw, float (&f)[8]) {
  const unsigned words[4] = {unsigned(raw.x), unsigned(raw.y), unsigned(raw.z), unsigned(raw.w)};
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    __half2 h;
    memcpy(&h, &words[k], 4);
    const float2 v = __half22float2(h);
    f[2 * k] = v.x;
    f[2 * k + 1] = v.y;
  }
}

// attend_chunk_warp: query heads [g0, g0+G) (G <= kMaxGroup) of the group of `kv_head` over the
// n positions from t0 (chunk j of n_chunks). With n_chunks == 1 it writes the normalised output
// to s.attn, else (acc, m, l) to s.part.
// Lanes: head_dim/8 lanes cover one position (8 dims, one 16-byte load each); the warp's 32 lanes
// take n_sub = 32/(head_dim/8) positions per load step, and each lane group (sub) keeps its own
// online-softmax state, combined by shuffles at the end.
// Reads: 2 * n * head_dim * 2 B of K and V, G*head_dim*4 B of q. Writes G*(head_dim+2)*4 B.
// FLOPs: ~4 * n * head_dim * G (scores and P.V).
// `qs` is this warp's [kMaxGroup][head_dim] shared scratch for the scaled queries (in registers
// they pushed the kernels past 128 registers into spills).
__device__ inline void attend_chunk_warp(const StepState& s, int layer, int kv_head, int t0, int n,
                                         int j, int n_chunks, int g0, int G, float* qs) {
  const int lane = threadIdx.x & 31;
  const int hd = s.head_dim, first_head = kv_head * (s.n_heads / s.n_kv_heads) + g0;
  const int lp = hd >> 3, n_sub = 32 / lp, sub = lane / lp, sl = lane % lp;
  const __half* kbase = s.k_cache + kv_offset(s, layer, kv_head, t0) + sl * 8;
  const __half* vbase = s.v_cache + kv_offset(s, layer, kv_head, t0) + sl * 8;

  float m[kMaxGroup], l[kMaxGroup], acc[kMaxGroup][8];
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    m[g] = -1e30f;  // finite: exp(m - m_new) stays 0..1 also before the first valid score
    l[g] = 0.0f;
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[g][i] = 0.0f;
  }
  // K and V of the batch at base: kKvSteps positions per lane group, clamped into the chunk (the
  // clamped copies are masked out of the softmax below).
  int4 kr[kKvSteps], vr[kKvSteps];
  auto load_batch = [&](int base) {
#pragma unroll
    for (int u = 0; u < kKvSteps; ++u) {
      const int tt = min(base + sub + u * n_sub, n - 1);
      kr[u] = *reinterpret_cast<const int4*>(kbase + size_t(tt) * hd);
      vr[u] = *reinterpret_cast<const int4*>(vbase + size_t(tt) * hd);
    }
  };
  load_batch(0);  // before q is staged, so the two round trips overlap
  __syncwarp();  // qs may still be read for the warp's previous item
  for (int i = lane; i < G * hd; i += 32)  // q was written by the qkv stage: plain loads
    qs[i] = s.q[first_head * hd + i] * s.attn_scale;
  __syncwarp();

  // The loop bound is warp-uniform (base, not the lane's position): the shuffles inside need every
  // lane, also when the chunk has fewer positions than the warp covers per batch.
  for (int base = 0; base < n; base += kKvSteps * n_sub) {
    if (base > 0) load_batch(base);
    float sc[kMaxGroup][kKvSteps];
#pragma unroll
    for (int u = 0; u < kKvSteps; ++u) {
      const bool valid = base + sub + u * n_sub < n;
      float k8[8];
      half8_to_float(kr[u], k8);
#pragma unroll
      for (int g = 0; g < kMaxGroup; ++g) {
        if (g < G) {
          const float4 qa = *reinterpret_cast<const float4*>(qs + g * hd + sl * 8);
          const float4 qb = *reinterpret_cast<const float4*>(qs + g * hd + sl * 8 + 4);
          float d = qa.x * k8[0] + qa.y * k8[1] + qa.z * k8[2] + qa.w * k8[3];
          d += qb.x * k8[4] + qb.y * k8[5] + qb.z * k8[6] + qb.w * k8[7];
          for (int off = lp >> 1; off > 0; off >>= 1) d += __shfl_xor_sync(0xffffffffu, d, off);
          sc[g][u] = valid ? d : -INFINITY;
        }
      }
    }
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g < G) {
        float mn = m[g];
#pragma unroll
        for (int u = 0; u < kKvSteps; ++u) mn = fmaxf(mn, sc[g][u]);
        const float corr = __expf(m[g] - mn);
        m[g] = mn;
        l[g] *= corr;
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[g][i] *= corr;
#pragma unroll
        for (int u = 0; u < kKvSteps; ++u) {
          sc[g][u] = __expf(sc[g][u] - mn);
          l[g] += sc[g][u];
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kKvSteps; ++u) {
      float v8[8];
      half8_to_float(vr[u], v8);
#pragma unroll
      for (int g = 0; g < kMaxGroup; ++g)
        if (g < G)
#pragma unroll
          for (int i = 0; i < 8; ++i) acc[g][i] += sc[g][u] * v8[i];
    }
  }

  // lanes with the same sl hold the same dims for different positions: combine their states
  for (int off = lp; off < 32; off <<= 1) {
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g < G) {
        const float om = __shfl_xor_sync(0xffffffffu, m[g], off);
        const float ol = __shfl_xor_sync(0xffffffffu, l[g], off);
        const float mn = fmaxf(m[g], om), a = __expf(m[g] - mn), b = __expf(om - mn);
        l[g] = l[g] * a + ol * b;
#pragma unroll
        for (int i = 0; i < 8; ++i)
          acc[g][i] = acc[g][i] * a + __shfl_xor_sync(0xffffffffu, acc[g][i], off) * b;
        m[g] = mn;
      }
    }
  }
  if (sub != 0) return;
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    if (g < G) {
      const int h = first_head + g;
      float* dst;
      float k = 1.0f;
      if (n_chunks == 1) {
        dst = s.attn + h * hd;
        k = 1.0f / l[g];
      } else {
        dst = s.part + (size_t(h) * s.n_chunks_max + j) * (hd + 4);
        if (sl == 0) { dst[hd] = m[g]; dst[hd + 1] = l[g]; }
      }
      *reinterpret_cast<float4*>(dst + sl * 8) =
          make_float4(acc[g][0] * k, acc[g][1] * k, acc[g][2] * k, acc[g][3] * k);
      *reinterpret_cast<float4*>(dst + sl * 8 + 4) =
          make_float4(acc[g][4] * k, acc[g][5] * k, acc[g][6] * k, acc[g][7] * k);
    }
  }
}

// ---- the tensor-core path -----------------------------------------------------------------
// One warp computes a chunk for all query heads of a GQA group at once with mma.sync m16n8k16
// (f16 inputs, f32 accumulation): S = Q K^T per 16-position tile as two 8-position n-tiles (the
// group's heads are the A rows, up to 8 of 16 used), the online softmax on S's fragments, and
// O^T += V^T P^T (head_dim/16 m-tiles of V^T, P^T taken straight from S's fragments: the C layout
// of S is the B layout of P^T). The CUDA-core path spends ~27 warp instructions per position and
// query head (16 lanes per position, 4 shuffle levels per score, f16 conversions, per-lane
// softmax): at depth 4096 on Phi-4 that chain, not the bytes, set the stage's 20.5 us for 7.4 us
// of K/V bytes. Here a 16-position tile of a 4-head group is 24 mma and ~70 other instructions:
// 11.8 us at 4096, 5.3 us at 1024 (was 9.1; H100, stage timer, docs/notes-cuda.md Round 10).
// Layouts (PTX ISA, mma.m16n8k16, lane = 4 * gid + tig):
//  - QK: B = K^T, so n = position tb + gid (tile A) or tb + 8 + gid (tile B), k = dims. Any
//    permutation of the dims that Q and K share leaves Q K^T unchanged, so lane tig reads the
//    16-byte pieces 4p + tig of its K row (4 lanes cover a row: coalesced) and k-step ks uses
//    words (0, 1) or (2, 3) of piece ks/2 as b0, b1; its Q fragment (a0, a2) is the same dims of
//    query row gid, converted once to f16 (a1 = a3 = 0: rows 8-15 unused).
//  - PV: A = V^T (m = dims, k = positions): a0 = (dim r, positions 2 tig, 2 tig + 1) is one word of
//    the pair layout (v_index); with m-tile mt's row r at dim D(mt, r) = 64 (mt / 4) + 32 (r / 8) +
//    4 (r % 8) + mt % 4, one 16-byte load gives a lane the words of 4 m-tiles.
//  - C = O^T: lane holds dims D(mt, gid), D(mt, gid + 8) of heads 2 tig, 2 tig + 1.
// Reads 2 * n * head_dim * 2 B of K and V (from the tile's even start), group * head_dim * 4 B
// of q; writes group * (head_dim + 2) * 4 B. FLOPs (tensor): 2 * 16 * 16 * head_dim * 2 per tile.
// Head size 128 only (Phi-4, Llama 3 8B, Qwen 2.5 7B and up): every instance is compiled into
// every fused kernel, whose registers and speed move with its code (Rounds 7-9); others take the
// CUDA-core path.
__host__ __device__ constexpr bool attention_mma_supported(int head_dim, int group) {
  return head_dim == 128 && group >= 1 && group <= 8;
}

__device__ __forceinline__ void mma_16816(float (&d)[4], unsigned a0, unsigned a1, unsigned a2,
                                          unsigned a3, unsigned b0, unsigned b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ unsigned pack_half2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);  // lo in the low 16 bits: the lower k index
  unsigned u;
  memcpy(&u, &h, 4);
  return u;
}

__device__ __forceinline__ unsigned word_of(const int4& v, int i) {
  return unsigned(i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w);
}

// Positions [t0, t0 + n) of `kv_head`, every query head of its group; output as attend_chunk_warp
// (normalised to s.attn with one chunk, else (acc, m, l) to s.part).
template <int kHd>
__device__ inline void attend_chunk_mma(const StepState& s, int layer, int kv_head, int t0, int n,
                                        int j, int n_chunks, float* qs) {
  constexpr int kPieces = kHd / 32;  // 16-byte pieces of a K row per lane
  constexpr int kMGroups = kHd / 64;  // V^T m-tiles, in groups of 4 (one 16-byte load each)
  const int lane = threadIdx.x & 31, gid = lane >> 2, tig = lane & 3;
  const int group = s.n_heads / s.n_kv_heads, first_head = kv_head * group;
  const int lo = t0, hi = t0 + n;
  const __half* kbase = s.k_cache + kv_offset(s, layer, kv_head, 0) + tig * 8;
  const __half* vbase = s.v_cache + v_index(s, layer, kv_head, 0, 0) + gid * 8;

  // query row gid, pieces 4p + tig, as f16 pairs (0 for rows >= group), stored per k-step in
  // fragment order (lane-consecutive 8-byte words: conflict-free) to keep 4 * kPieces registers
  // free across the tile loop
  uint2* qf = reinterpret_cast<uint2*>(qs) + lane;
  __syncwarp();  // qs may still be read for the warp's previous item
  {
    const bool real = gid < group;
    const float* q = s.q + size_t(first_head + (real ? gid : 0)) * kHd + tig * 8;
    const float k = real ? s.attn_scale : 0.0f;
#pragma unroll
    for (int p = 0; p < kPieces; ++p) {
      const float4 x = *reinterpret_cast<const float4*>(q + p * 32);
      const float4 y = *reinterpret_cast<const float4*>(q + p * 32 + 4);
      qf[(2 * p) * 32] = make_uint2(pack_half2(x.x * k, x.y * k), pack_half2(x.z * k, x.w * k));
      qf[(2 * p + 1) * 32] = make_uint2(pack_half2(y.x * k, y.y * k), pack_half2(y.z * k, y.w * k));
    }
  }
  __syncwarp();

  float acc[kMGroups * 4][4];
#pragma unroll
  for (int mt = 0; mt < kMGroups * 4; ++mt) acc[mt][0] = acc[mt][1] = acc[mt][2] = acc[mt][3] = 0.0f;
  float m = -1e30f, l = 0.0f;  // row gid's state (finite m: exp(m - m_new) is 0 at the start)
  const int last_pair = (hi - 1) >> 1;
  for (int tb = lo & ~1; tb < hi; tb += 16) {
    // K rows clamped into [lo, hi): never a position no step wrote (the cache is NaN there)
    const int pa = min(max(tb + gid, lo), hi - 1), pb = min(max(tb + 8 + gid, lo), hi - 1);
    int4 ka[kPieces], kb[kPieces];
#pragma unroll
    for (int p = 0; p < kPieces; ++p) {
      ka[p] = *reinterpret_cast<const int4*>(kbase + size_t(pa) * kHd + p * 32);
      kb[p] = *reinterpret_cast<const int4*>(kbase + size_t(pb) * kHd + p * 32);
    }
    float sa[4] = {0.0f, 0.0f, 0.0f, 0.0f}, sb[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int ks = 0; ks < 2 * kPieces; ++ks) {
      const int p = ks >> 1, o = (ks & 1) * 2;
      const uint2 a = qf[ks * 32];  // (a0, a2): the dims of words o, o + 1 of piece p
      mma_16816(sa, a.x, 0u, a.y, 0u, word_of(ka[p], o), word_of(ka[p], o + 1));
      mma_16816(sb, a.x, 0u, a.y, 0u, word_of(kb[p], o), word_of(kb[p], o + 1));
    }
    // V words [m-group][row half][pair tig or tig + 4]; pairs past the last valid position are
    // clamped for the load and zeroed below (P is 0 there, but 0 * NaN is not 0)
    int4 vw[kMGroups][2][2];
#pragma unroll
    for (int pp = 0; pp < 2; ++pp) {
      const int pi = min((tb >> 1) + tig + 4 * pp, last_pair);
#pragma unroll
      for (int mg = 0; mg < kMGroups; ++mg)
#pragma unroll
        for (int rh = 0; rh < 2; ++rh)
          vw[mg][rh][pp] = *reinterpret_cast<const int4*>(vbase + (size_t(pi) * kHd + mg * 64 + rh * 32) * 2);
    }
    // online softmax over row gid's four scores here (positions tb + 2 tig + {0, 1}, + 8)
    const int q0 = tb + 2 * tig;
    const float x0 = q0 >= lo && q0 < hi ? sa[0] : -INFINITY;
    const float x1 = q0 + 1 >= lo && q0 + 1 < hi ? sa[1] : -INFINITY;
    const float x2 = q0 + 8 >= lo && q0 + 8 < hi ? sb[0] : -INFINITY;
    const float x3 = q0 + 9 >= lo && q0 + 9 < hi ? sb[1] : -INFINITY;
    float mx = fmaxf(fmaxf(x0, x1), fmaxf(x2, x3));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float mn = fmaxf(m, mx), corr = __expf(m - mn);
    const float p0 = __expf(x0 - mn), p1 = __expf(x1 - mn), p2 = __expf(x2 - mn), p3 = __expf(x3 - mn);
    l = l * corr + ((p0 + p1) + (p2 + p3));
    m = mn;
    // acc's columns are heads 2 tig and 2 tig + 1: their rows' factors
    const float c0 = __shfl_sync(0xffffffffu, corr, 8 * tig);
    const float c1 = __shfl_sync(0xffffffffu, corr, 8 * tig + 4);
#pragma unroll
    for (int mt = 0; mt < kMGroups * 4; ++mt) {
      acc[mt][0] *= c0; acc[mt][1] *= c1; acc[mt][2] *= c0; acc[mt][3] *= c1;
    }
    const unsigned b0 = pack_half2(p0, p1), b1 = pack_half2(p2, p3);
    if (tb + 16 > hi) {  // the last tile: zero V of positions >= hi
#pragma unroll
      for (int pp = 0; pp < 2; ++pp) {
        const int pos0 = tb + 2 * (tig + 4 * pp);
        const unsigned keep = pos0 >= hi ? 0u : pos0 + 1 >= hi ? 0xffffu : 0xffffffffu;
#pragma unroll
        for (int mg = 0; mg < kMGroups; ++mg)
#pragma unroll
          for (int rh = 0; rh < 2; ++rh) {
            int4& v = vw[mg][rh][pp];
            v.x &= keep; v.y &= keep; v.z &= keep; v.w &= keep;
          }
      }
    }
#pragma unroll
    for (int mg = 0; mg < kMGroups; ++mg)
#pragma unroll
      for (int mm = 0; mm < 4; ++mm)
        mma_16816(acc[mg * 4 + mm], word_of(vw[mg][0][0], mm), word_of(vw[mg][1][0], mm),
                  word_of(vw[mg][0][1], mm), word_of(vw[mg][1][1], mm), b0, b1);
  }

  l += __shfl_xor_sync(0xffffffffu, l, 1);
  l += __shfl_xor_sync(0xffffffffu, l, 2);
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    const int hh = 2 * tig + e;  // this lane's acc column e
    const float lh = __shfl_sync(0xffffffffu, l, 4 * hh), mh = __shfl_sync(0xffffffffu, m, 4 * hh);
    if (hh >= group) continue;
    const int h = first_head + hh;
    float* dst;
    float k = 1.0f;
    if (n_chunks == 1) {
      dst = s.attn + size_t(h) * kHd;
      k = 1.0f / lh;
    } else {
      dst = s.part + (size_t(h) * s.n_chunks_max + j) * (kHd + 4);
      if (gid == 0) { dst[kHd] = mh; dst[kHd + 1] = lh; }
    }
#pragma unroll
    for (int mg = 0; mg < kMGroups; ++mg)
#pragma unroll
      for (int rh = 0; rh < 2; ++rh)
        *reinterpret_cast<float4*>(dst + mg * 64 + rh * 32 + gid * 4) =
            make_float4(acc[mg * 4 + 0][2 * rh + e] * k, acc[mg * 4 + 1][2 * rh + e] * k,
                        acc[mg * 4 + 2][2 * rh + e] * k, acc[mg * 4 + 3][2 * rh + e] * k);
  }
}

// Shared memory per warp of the attention stage: the CUDA-core path's [kMaxGroup][head_dim]
// query scratch, or the tensor-core path's query fragments ([head_dim/16][32 lanes] x 8 B).
__host__ __device__ constexpr int attention_warp_floats(int head_dim) {
  return kMaxGroup * head_dim > 4 * head_dim ? kMaxGroup * head_dim : 4 * head_dim;
}
__host__ __device__ constexpr int attention_smem_bytes(int head_dim) {
  return kWarps * attention_warp_floats(head_dim) * 4;
}

// Shared memory merge_head_block needs: a row of head_dim floats per warp, plus the reduction.
__host__ __device__ constexpr int merge_smem_bytes(int head_dim) {
  return (kWarps * head_dim + 2 * kWarps + 8) * 4;
}

// merge_head_block (the whole block): attn[h] = sum_c acc_c e^(m_c - M) / sum_c l_c e^(m_c - M).
// Warp w takes chunks w, w + kWarps, ..., loading each one's (m, l) with its lanes' slice of acc
// (8 chunks in flight) and keeping a running (max, sum, weighted acc) of its own; the warps'
// states are combined in shared memory. One L2 round trip per 8 x kWarps chunks (a first pass for
// the maximum made it two, ~0.4 us more per layer at depth 1024). Reads n_chunks * (head_dim + 2)
// * 4 B (L2: written by the attention stage); writes head_dim * 4 B.
__device__ inline void merge_head_block(const StepState& s, int h, int n_chunks, float* smem) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, hd = s.head_dim;
  const float* base = s.part + size_t(h) * s.n_chunks_max * (hd + 4);
  float* rows = smem;                       // [kWarps][hd]
  float* red_m = smem + kWarps * hd;        // [kWarps]
  float* red_l = red_m + kWarps;            // [kWarps]

  __syncthreads();  // smem may still be read for the previous head
  for (int d4 = lane; d4 < hd / 4; d4 += 32) {  // lane 0 always runs: it holds the warp's (m, l)
    float m = -1e30f, l = 0.0f;  // finite: exp(m - mn) stays 0..1 before the first chunk
    float4 o = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (int cb = warp; cb < n_chunks; cb += kWarps * 8) {
      float4 v[8];
      float mc[8], lc[8];
#pragma unroll
      for (int u = 0; u < 8; ++u) {
        const float* p = base + size_t(min(cb + u * kWarps, n_chunks - 1)) * (hd + 4);
        v[u] = *reinterpret_cast<const float4*>(p + d4 * 4);
        mc[u] = p[hd];
        lc[u] = p[hd + 1];
      }
      float mn = m;
#pragma unroll
      for (int u = 0; u < 8; ++u)
        if (cb + u * kWarps < n_chunks) mn = fmaxf(mn, mc[u]);
      const float corr = __expf(m - mn);
      l *= corr;
      o.x *= corr; o.y *= corr; o.z *= corr; o.w *= corr;
#pragma unroll
      for (int u = 0; u < 8; ++u) {
        if (cb + u * kWarps < n_chunks) {
          const float w = __expf(mc[u] - mn);
          l += w * lc[u];
          o.x += w * v[u].x; o.y += w * v[u].y; o.z += w * v[u].z; o.w += w * v[u].w;
        }
      }
      m = mn;
    }
    *reinterpret_cast<float4*>(rows + warp * hd + d4 * 4) = o;
    if (d4 == 0) { red_m[warp] = m; red_l[warp] = l; }
  }
  __syncthreads();
  float M = red_m[0];
#pragma unroll
  for (int w = 1; w < kWarps; ++w) M = fmaxf(M, red_m[w]);
  float L = 0.0f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) L += red_l[w] * __expf(red_m[w] - M);
  const float inv_l = 1.0f / L;
  for (int d = threadIdx.x; d < hd; d += kThreads) {
    float o = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) o += rows[w * hd + d] * __expf(red_m[w] - M);
    s.attn[h * hd + d] = o * inv_l;
  }
}

}  // namespace pdvm::cuda
