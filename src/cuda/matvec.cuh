// Block- and warp-level building blocks of every matrix-vector stage: staging the input vector
// (optionally RMS-normalised) into shared memory, and y = W x for each weight format with
// kRowsPerWarp rows per warp, 16-byte weight loads, f32 accumulation, and an epilogue functor
// that consumes the rows (residual add, silu*up, rope + KV append, plain store).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda/device_types.cuh"

namespace pdvm::cuda {

constexpr int kThreads = 512;  // 16 warps: staging x costs one read of x per block, so fewer,
                               // larger blocks read less L2 (264 blocks x 80 KB for Phi-4 down)
constexpr int kWarps = kThreads / 32;
constexpr int kRowsPerWarp = 4;  // each x value loaded from shared memory serves 4 rows, and a
                                 // lane has 4 (x2 unrolled: 8) independent 16-byte loads in flight

// Shared-memory layout of a staged vector: 4 floats of padding after every 32, so the lanes of a
// warp reading 16-byte pieces at strides of 16, 32, 64 or 128 bytes hit distinct banks.
__host__ __device__ constexpr int xs_index(int i) { return i + ((i >> 5) << 2); }
__host__ __device__ constexpr int xs_floats(int n) { return n + (n >> 5) * 4 + 4; }

__device__ __forceinline__ float4 ld_x4(const float* xs, int col) {
  return *reinterpret_cast<const float4*>(xs + xs_index(col));
}

// Weights are immutable for the backend's life: read through the non-coherent path and do not
// keep them in L1 (each byte is used once per token).
__device__ __forceinline__ int4 ld_weight16(const uint8_t* p) {
  int4 v;
  asm("ld.global.nc.L1::no_allocate.v4.s32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}

// Sum over the block; every thread gets the result. `red` is kWarps+1 floats of shared memory.
__device__ __forceinline__ float block_sum(float v, float* red) {
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // red may still be read from a previous call
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float t = 0.0f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) t += red[w];
  return t;
}

// xs <- src (n floats, n % 4 == 0), times rsqrt(mean(src^2) + eps) * norm[i] when norm is given.
// src was written by other blocks in an earlier phase, so it is read with plain (coherent) loads.
// Reads: n*4 B (twice when normalising; the second pass hits L1/L2).
__device__ inline void stage_vector(float* xs, const float* src, int n, const float* norm,
                                    float eps, float* red) {
  float scale = 1.0f;
  if (norm != nullptr) {
    float ss = 0.0f;
    for (int i = threadIdx.x * 4; i < n; i += kThreads * 4) {
      const float4 v = *reinterpret_cast<const float4*>(src + i);
      ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    scale = rsqrtf(block_sum(ss, red) / float(n) + eps);
  } else {
    __syncthreads();  // xs may still be read by the previous stage's warps
  }
  for (int i = threadIdx.x * 4; i < n; i += kThreads * 4) {
    float4 v = *reinterpret_cast<const float4*>(src + i);
    if (norm != nullptr) {
      const float4 g = *reinterpret_cast<const float4*>(norm + i);
      v.x *= scale * g.x; v.y *= scale * g.y; v.z *= scale * g.z; v.w *= scale * g.w;
    }
    *reinterpret_cast<float4*>(xs + xs_index(i)) = v;
  }
  __syncthreads();
}

// ---- per-format pieces: scale of chunk c of row r, and the dot of one 16-byte chunk ----------
// A chunk is the 16 bytes one lane loads: 16 q8 weights, 32 q4 weights, 8 f16/bf16, 4 f32.

// float(byte b of u) for a byte holding 0..255, by building the float 2^23 + byte (PRMT + FADD at
// full rate, instead of the quarter-rate I2F conversion that would cap the q8/q4 matvecs).
__device__ __forceinline__ float byte_as_float(unsigned u, int b, float bias) {
  return __int_as_float(int(__byte_perm(u, 0x4B000000u, 0x7440u | unsigned(b)))) - bias;
}

struct FmtQ8 {
  __device__ static float2 scale(const DevMatrix& m, int r, int c) {
    const __half* s = static_cast<const __half*>(m.scales) + size_t(r) * (m.cols >> 5) + (c >> 1);
    return make_float2(__half2float(__ldg(s)), 0.0f);
  }
  __device__ static void accumulate(const int4 (&w)[kRowsPerWarp], const float2 (&sc)[kRowsPerWarp],
                                    const float* xs, int c, float (&acc)[kRowsPerWarp]) {
    float xv[16];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float4 v = ld_x4(xs, c * 16 + 4 * k);
      xv[4 * k] = v.x; xv[4 * k + 1] = v.y; xv[4 * k + 2] = v.z; xv[4 * k + 3] = v.w;
    }
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const unsigned words[4] = {unsigned(w[i].x), unsigned(w[i].y), unsigned(w[i].z),
                                 unsigned(w[i].w)};
      float d = 0.0f;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const unsigned u = words[k] ^ 0x80808080u;  // int8 -> uint8 + 128
#pragma unroll
        for (int b = 0; b < 4; ++b) d += byte_as_float(u, b, 8388736.0f) * xv[4 * k + b];
      }
      acc[i] += sc[i].x * d;
    }
  }
};

template <bool kHasMin>  // false: Q4_0, w = d*(q-8); true: Q4_1, w = d*q + m
struct FmtQ4 {
  __device__ static float2 scale(const DevMatrix& m, int r, int c) {
    if constexpr (kHasMin) {
      const __half2* s = static_cast<const __half2*>(m.scales) + size_t(r) * (m.cols >> 5) + c;
      return __half22float2(__ldg(s));
    } else {
      const __half* s = static_cast<const __half*>(m.scales) + size_t(r) * (m.cols >> 5) + c;
      return make_float2(__half2float(__ldg(s)), 0.0f);
    }
  }
  __device__ static void accumulate(const int4 (&w)[kRowsPerWarp], const float2 (&sc)[kRowsPerWarp],
                                    const float* xs, int c, float (&acc)[kRowsPerWarp]) {
    float xv[32];
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const float4 v = ld_x4(xs, c * 32 + 4 * k);
      xv[4 * k] = v.x; xv[4 * k + 1] = v.y; xv[4 * k + 2] = v.z; xv[4 * k + 3] = v.w;
    }
    float sum_x = 0.0f;
    if constexpr (kHasMin) {
#pragma unroll
      for (int j = 0; j < 32; ++j) sum_x += xv[j];
    }
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const unsigned words[4] = {unsigned(w[i].x), unsigned(w[i].y), unsigned(w[i].z),
                                 unsigned(w[i].w)};
      constexpr float kBias = kHasMin ? 8388608.0f : 8388616.0f;  // 2^23 (+8 for Q4_0's offset)
      float d = 0.0f;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const unsigned lo = words[k] & 0x0F0F0F0Fu, hi = (words[k] >> 4) & 0x0F0F0F0Fu;
#pragma unroll
        for (int b = 0; b < 4; ++b) {
          d += byte_as_float(lo, b, kBias) * xv[4 * k + b];
          d += byte_as_float(hi, b, kBias) * xv[16 + 4 * k + b];
        }
      }
      acc[i] += sc[i].x * d + sc[i].y * sum_x;
    }
  }
};

template <Fmt kFmt>  // kF16, kBF16, kF32
struct FmtDense {
  static constexpr int kPerChunk = kFmt == Fmt::kF32 ? 4 : 8;
  __device__ static float2 scale(const DevMatrix&, int, int) { return make_float2(1.0f, 0.0f); }
  __device__ static void accumulate(const int4 (&w)[kRowsPerWarp], const float2 (&)[kRowsPerWarp],
                                    const float* xs, int c, float (&acc)[kRowsPerWarp]) {
    float xv[kPerChunk];
#pragma unroll
    for (int k = 0; k < kPerChunk / 4; ++k) {
      const float4 v = ld_x4(xs, c * kPerChunk + 4 * k);
      xv[4 * k] = v.x; xv[4 * k + 1] = v.y; xv[4 * k + 2] = v.z; xv[4 * k + 3] = v.w;
    }
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const unsigned words[4] = {unsigned(w[i].x), unsigned(w[i].y), unsigned(w[i].z),
                                 unsigned(w[i].w)};
      float d = 0.0f;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        if constexpr (kFmt == Fmt::kF32) {
          d += __uint_as_float(words[k]) * xv[k];
        } else if constexpr (kFmt == Fmt::kBF16) {
          d += __uint_as_float(words[k] << 16) * xv[2 * k];
          d += __uint_as_float(words[k] & 0xFFFF0000u) * xv[2 * k + 1];
        } else {
          __half2 h;
          memcpy(&h, &words[k], 4);
          const float2 f = __half22float2(h);
          d += f.x * xv[2 * k] + f.y * xv[2 * k + 1];
        }
      }
      acc[i] += d;
    }
  }
};

// matvec_rows_warp: rows [row0, row0+kRowsPerWarp) of W times the staged x, summed over the
// warp; every lane gets acc. Rows past the end are clamped to the last row (results unused).
// Reads: kRowsPerWarp * (row_bytes + scale bytes) from HBM; x from shared memory.
// FLOPs: 2 per weight per row: ~2 FLOP/B for q8, 4 for q4, 1 for bf16: bandwidth-bound.
template <class F>
__device__ __forceinline__ void matvec_rows_warp(const DevMatrix& m, int row0, const float* xs,
                                                 float (&acc)[kRowsPerWarp]) {
  const int lane = threadIdx.x & 31;
  const int n_chunks = m.row_bytes >> 4;
  const uint8_t* wrow[kRowsPerWarp];
  int rr[kRowsPerWarp];
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    rr[i] = min(row0 + i, m.rows - 1);
    wrow[i] = m.w + size_t(rr[i]) * m.row_bytes;
    acc[i] = 0.0f;
  }
  for (int c = lane; c < n_chunks; c += 64) {
    const int c2 = c + 32;
    const bool has2 = c2 < n_chunks;
    const int c2l = has2 ? c2 : c;
    int4 w1[kRowsPerWarp], w2[kRowsPerWarp];
    float2 s1[kRowsPerWarp], s2[kRowsPerWarp];
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) w1[i] = ld_weight16(wrow[i] + size_t(c) * 16);
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) w2[i] = ld_weight16(wrow[i] + size_t(c2l) * 16);
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) { s1[i] = F::scale(m, rr[i], c); s2[i] = F::scale(m, rr[i], c2l); }
    F::accumulate(w1, s1, xs, c, acc);
    if (has2) F::accumulate(w2, s2, xs, c2, acc);
  }
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) acc[i] = warp_sum(acc[i]);
}

// The warps of the whole grid share the row groups; warp-major numbering spreads a matrix with
// fewer groups than warps evenly over all blocks (hence all SMs).
template <class F, class Epi>
__device__ void matvec_stage_fmt(const DevMatrix& m, const float* xs, const Epi& epi) {
  const int n_groups = (m.rows + kRowsPerWarp - 1) / kRowsPerWarp;
  const int first = (threadIdx.x >> 5) * gridDim.x + blockIdx.x;
  for (int g = first; g < n_groups; g += gridDim.x * kWarps) {
    float acc[kRowsPerWarp];
    matvec_rows_warp<F>(m, g * kRowsPerWarp, xs, acc);
    epi(g * kRowsPerWarp, acc);
  }
}

// The format switch is uniform across the grid (one matrix per stage), so it costs one branch.
template <class Epi>
__device__ void matvec_stage(const DevMatrix& m, const float* xs, const Epi& epi) {
  switch (m.fmt) {
    case Fmt::kQ8_0: matvec_stage_fmt<FmtQ8>(m, xs, epi); break;
    case Fmt::kQ4_0: matvec_stage_fmt<FmtQ4<false>>(m, xs, epi); break;
    case Fmt::kQ4_1: matvec_stage_fmt<FmtQ4<true>>(m, xs, epi); break;
    case Fmt::kBF16: matvec_stage_fmt<FmtDense<Fmt::kBF16>>(m, xs, epi); break;
    case Fmt::kF16: matvec_stage_fmt<FmtDense<Fmt::kF16>>(m, xs, epi); break;
    case Fmt::kF32: matvec_stage_fmt<FmtDense<Fmt::kF32>>(m, xs, epi); break;
  }
}

// L2 prefetch of the start of the row group this warp takes first in the next matvec_stage over m
// (same numbering as matvec_stage_fmt): issued before a grid barrier, the loads run while the GPU
// waits for the slowest block and while the next stage stages its input vector, when HBM would
// idle. The first kPrefetchRowBytes of each of the group's rows (a warp reads its rows from column
// 0 on): one 128-byte line per lane, 4 KB per warp, ~8.6 MB over a 132 x 16-warp grid, about what
// HBM moves in the ~3 us such a bubble lasts, and well inside L2 (50 MB), so nothing prefetched is
// evicted before its use. Scales of those columns too. No effect on results.
constexpr int kPrefetchRowBytes = 1024;
__device__ inline void prefetch_first_group(const DevMatrix& m) {
  const int n_groups = (m.rows + kRowsPerWarp - 1) / kRowsPerWarp;
  const int g = (threadIdx.x >> 5) * gridDim.x + blockIdx.x;
  if (g >= n_groups) return;
  const int lane = threadIdx.x & 31;
  constexpr int kLinesPerRow = kPrefetchRowBytes / 128;
  static_assert(kLinesPerRow * kRowsPerWarp == 32, "one line per lane");
  const int row = min(g * kRowsPerWarp + lane / kLinesPerRow, m.rows - 1);
  const int off = (lane % kLinesPerRow) * 128;
  if (off < m.row_bytes)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(m.w + size_t(row) * m.row_bytes + off));
  if (m.scales != nullptr && lane % kLinesPerRow == 0) {
    const int per_row = m.fmt == Fmt::kQ4_1 ? (m.cols >> 5) * 4 : (m.cols >> 5) * 2;
    asm volatile("prefetch.global.L2 [%0];" ::"l"(static_cast<const uint8_t*>(m.scales) +
                                                   size_t(row) * per_row));
  }
}

// One weight, dequantized (embedding lookups; not on a hot path).
__device__ inline float dequant_one(const DevMatrix& m, int row, int col) {
  const uint8_t* r = m.w + size_t(row) * m.row_bytes;
  const size_t g = size_t(row) * (m.cols >> 5) + (col >> 5);
  switch (m.fmt) {
    case Fmt::kF32: return reinterpret_cast<const float*>(r)[col];
    case Fmt::kF16: return __half2float(reinterpret_cast<const __half*>(r)[col]);
    case Fmt::kBF16: return __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(r)[col]);
    case Fmt::kQ8_0:
      return float(reinterpret_cast<const int8_t*>(r)[col]) *
             __half2float(static_cast<const __half*>(m.scales)[g]);
    case Fmt::kQ4_0:
    case Fmt::kQ4_1: {
      const int j = col & 31;
      const uint8_t byte = r[(col >> 5) * 16 + (j & 15)];
      const float q = float(j < 16 ? (byte & 15) : (byte >> 4));
      if (m.fmt == Fmt::kQ4_0) return (q - 8.0f) * __half2float(static_cast<const __half*>(m.scales)[g]);
      const float2 dm = __half22float2(static_cast<const __half2*>(m.scales)[g]);
      return dm.x * q + dm.y;
    }
  }
  return 0.0f;
}

}  // namespace pdvm::cuda
