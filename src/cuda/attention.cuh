// Decode attention over the KV cache, flash-decoding style: the positions [start, pos] are cut
// into chunks; one warp computes, for one KV head and one chunk, the softmax state (max m, sum l,
// unnormalised acc) of every query head of its GQA group in a single pass (online softmax: K and
// V of a batch of positions are loaded together); one block per query head then merges the
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
  const int passes = (s.n_heads / s.n_kv_heads + kMaxGroup - 1) / kMaxGroup;
  const int target = max(1, int(gridDim.x) * kWarps / (s.n_kv_heads * passes));
  int chunk = min(s.attn_chunk, max(s.attn_min_chunk, (p.n + target - 1) / target));
  chunk = max(chunk, (p.n + s.n_chunks_max - 1) / s.n_chunks_max);  // capacity of s.part
  p.chunk = chunk;
  p.n_chunks = (p.n + chunk - 1) / chunk;
  const int group = s.n_heads / s.n_kv_heads, pairs = s.n_kv_heads * p.n_chunks;
  p.g_step = min(group, kMaxGroup);
  for (int g = 1; g < p.g_step; g *= 2)
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

// Shared memory the attention stage needs: a [kMaxGroup][head_dim] query scratch per warp.
__host__ __device__ constexpr int attention_smem_bytes(int head_dim) {
  return kWarps * kMaxGroup * head_dim * 4;
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
