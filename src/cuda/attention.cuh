// Decode attention over the KV cache, flash-decoding style: the positions [start, pos] are cut
// into chunks of attn_chunk; one warp computes, for one KV head and one chunk, the partial
// softmax state (max m, sum l, unnormalised acc) of every query head of its GQA group; a second
// stage merges the chunks of each query head. No score matrix ever reaches device memory.
#pragma once

#include <cuda_fp16.h>

#include "cuda/device_types.cuh"
#include "cuda/matvec.cuh"

namespace pdvm::cuda {

// Query heads of a GQA group handled per pass over a chunk's K and V (Phi-4, Llama-3: 4 per KV
// head; SmolLM2: 3). Larger groups take several passes, re-reading the chunk from L2. 4 keeps q
// and acc (2 x 4 x 8 floats per lane) in registers under the 128-register cap of 512 threads.
constexpr int kMaxGroup = 4;
constexpr int kMaxChunk = 64;  // positions per chunk: bounds the per-warp score scratch
constexpr int kAttnSmemFloats = kWarps * kMaxGroup * kMaxChunk;  // 16 KB per block

__device__ __forceinline__ int attn_start(const StepState& s, int pos) {
  return s.window > 0 ? max(0, pos - s.window + 1) : 0;
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

// attend_chunk_warp: partial attention of query heads [g0, g0+G) (G <= kMaxGroup) of the group
// of `kv_head` over chunk `chunk`.
// Lanes: head_dim/8 lanes cover one position (8 dims, one 16-byte load each); the warp's 32 lanes
// take 32/(head_dim/8) positions at a time, 4 steps of loads in flight.
// Reads: 2 * n * head_dim * 2 B of K and V (n positions), G*head_dim*4 B of q. Writes G*(head_dim+2)*4 B.
// `sc` is this warp's [kMaxGroup][kMaxChunk] shared scratch.
__device__ inline void attend_chunk_warp(const StepState& s, int layer, int kv_head, int chunk,
                                         int pos, float* sc, int g0, int G) {
  const int lane = threadIdx.x & 31;
  const int hd = s.head_dim, first_head = kv_head * (s.n_heads / s.n_kv_heads) + g0;
  const int lp = hd >> 3, n_sub = 32 / lp, sub = lane / lp, sl = lane % lp;
  const int t0 = max(chunk * s.attn_chunk, attn_start(s, pos));
  const int n = min(chunk * s.attn_chunk + s.attn_chunk, pos + 1) - t0;
  const __half* kbase = s.k_cache + kv_offset(s, layer, kv_head, t0) + sl * 8;
  const __half* vbase = s.v_cache + kv_offset(s, layer, kv_head, t0) + sl * 8;

  float qv[kMaxGroup][8];
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    if (g < G) {
      const float* q = s.q + (first_head + g) * hd + sl * 8;  // written by the qkv stage: plain loads
      const float4 a = *reinterpret_cast<const float4*>(q);
      const float4 b = *reinterpret_cast<const float4*>(q + 4);
      qv[g][0] = a.x; qv[g][1] = a.y; qv[g][2] = a.z; qv[g][3] = a.w;
      qv[g][4] = b.x; qv[g][5] = b.y; qv[g][6] = b.z; qv[g][7] = b.w;
    }
  }

  // 1. scores s = q.k * scale into sc[g][t]. The loop bound is warp-uniform (base, not t): the
  // shuffles inside need every lane, also when the chunk has fewer positions than subgroups.
  for (int base = 0; base < n; base += 4 * n_sub) {
    const int t = base + sub;
    int4 kr[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int tt = min(t + u * n_sub, n - 1);
      kr[u] = *reinterpret_cast<const int4*>(kbase + size_t(tt) * hd);
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int tt = t + u * n_sub;
      float k8[8];
      half8_to_float(kr[u], k8);
#pragma unroll
      for (int g = 0; g < kMaxGroup; ++g) {
        if (g < G) {
          float d = 0.0f;
#pragma unroll
          for (int i = 0; i < 8; ++i) d += qv[g][i] * k8[i];
          for (int off = lp >> 1; off > 0; off >>= 1) d += __shfl_xor_sync(0xffffffffu, d, off);
          if (sl == 0 && tt < n) sc[g * kMaxChunk + tt] = d * s.attn_scale;
        }
      }
    }
  }
  __syncwarp();

  // 2. per head: m = max, p = exp(s - m) in place, l = sum p
  float m[kMaxGroup], l[kMaxGroup];
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    m[g] = 0.0f;
    l[g] = 0.0f;
    if (g < G) {
      float mx = -INFINITY;
      for (int t = lane; t < n; t += 32) mx = fmaxf(mx, sc[g * kMaxChunk + t]);
      mx = warp_max(mx);
      float sum = 0.0f;
      for (int t = lane; t < n; t += 32) {
        const float p = __expf(sc[g * kMaxChunk + t] - mx);
        sc[g * kMaxChunk + t] = p;
        sum += p;
      }
      m[g] = mx;
      l[g] = warp_sum(sum);
    }
  }
  __syncwarp();

  // 3. acc[g][8 dims of this lane] = sum_t p[g][t] * v[t]
  float acc[kMaxGroup][8];
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g)
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[g][i] = 0.0f;
  for (int base = 0; base < n; base += 4 * n_sub) {
    const int t = base + sub;
    int4 vr[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int tt = min(t + u * n_sub, n - 1);
      vr[u] = *reinterpret_cast<const int4*>(vbase + size_t(tt) * hd);
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int tt = t + u * n_sub;
      if (tt < n) {
        float v8[8];
        half8_to_float(vr[u], v8);
#pragma unroll
        for (int g = 0; g < kMaxGroup; ++g) {
          if (g < G) {
            const float p = sc[g * kMaxChunk + tt];
#pragma unroll
            for (int i = 0; i < 8; ++i) acc[g][i] += p * v8[i];
          }
        }
      }
    }
  }
  // lanes with the same sl hold the same dims for different positions: sum them
  for (int off = lp; off < 32; off <<= 1) {
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g)
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[g][i] += __shfl_xor_sync(0xffffffffu, acc[g][i], off);
  }
  if (sub == 0) {
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g < G) {
        float* dst = s.part + (size_t(first_head + g) * s.n_chunks_max + chunk) * (hd + 4);
        *reinterpret_cast<float4*>(dst + sl * 8) = make_float4(acc[g][0], acc[g][1], acc[g][2], acc[g][3]);
        *reinterpret_cast<float4*>(dst + sl * 8 + 4) = make_float4(acc[g][4], acc[g][5], acc[g][6], acc[g][7]);
        if (sl == 0) { dst[hd] = m[g]; dst[hd + 1] = l[g]; }
      }
    }
  }
  __syncwarp();  // sc is reused by this warp's next item
}

// merge_head_warp: attn[h] = sum_c acc_c e^(m_c - M) / sum_c l_c e^(m_c - M) over the chunks of
// head h. Reads n_chunks * (head_dim + 2) * 4 B; writes head_dim * 4 B.
__device__ inline void merge_head_warp(const StepState& s, int h, int pos) {
  const int lane = threadIdx.x & 31, hd = s.head_dim;
  const int c0 = attn_start(s, pos) / s.attn_chunk, c1 = pos / s.attn_chunk;
  const float* base = s.part + size_t(h) * s.n_chunks_max * (hd + 4);
  float mx = -INFINITY;
  for (int c = c0 + lane; c <= c1; c += 32) mx = fmaxf(mx, base[size_t(c) * (hd + 4) + hd]);
  mx = warp_max(mx);
  float l = 0.0f;
  for (int c = c0 + lane; c <= c1; c += 32) {
    const float* p = base + size_t(c) * (hd + 4);
    l += p[hd + 1] * __expf(p[hd] - mx);
  }
  l = warp_sum(l);
  const float inv_l = 1.0f / l;
  if (hd == 128) {
    // each lane owns 4 dims (one 16-byte load per chunk); 8 chunks' loads in flight per step, so
    // a 4096-position merge (64 chunks) is 8 round trips instead of 64 dependent ones
    float4 o = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (int cb = c0; cb <= c1; cb += 8) {
      float4 v[8];
      float mc[8];
#pragma unroll
      for (int u = 0; u < 8; ++u) {
        const float* p = base + size_t(min(cb + u, c1)) * (hd + 4);
        v[u] = *reinterpret_cast<const float4*>(p + lane * 4);
        mc[u] = p[hd];
      }
#pragma unroll
      for (int u = 0; u < 8; ++u) {
        if (cb + u <= c1) {
          const float w = __expf(mc[u] - mx);
          o.x += w * v[u].x; o.y += w * v[u].y; o.z += w * v[u].z; o.w += w * v[u].w;
        }
      }
    }
    *reinterpret_cast<float4*>(s.attn + h * hd + lane * 4) =
        make_float4(o.x * inv_l, o.y * inv_l, o.z * inv_l, o.w * inv_l);
    return;
  }
  for (int d = lane; d < hd; d += 32) {
    float o = 0.0f;
    for (int c = c0; c <= c1; ++c) {
      const float* p = base + size_t(c) * (hd + 4);
      o += p[d] * __expf(p[hd] - mx);
    }
    s.attn[h * hd + d] = o * inv_l;
  }
}

}  // namespace pdvm::cuda
