// Block- and warp-level building blocks of every matrix-vector stage: staging the input vector
// (optionally RMS-normalised) into shared memory, as floats and, for the quantized formats, as
// two-term int8 codes; and y = W x for each weight format with
// kRowsPerWarp rows per warp, 16-byte weight loads, f32 accumulation, and an epilogue functor
// that consumes the rows (residual add, silu*up, rope + KV append, plain store).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "cuda/device_types.cuh"

// A/B switch (docs/notes-cuda.md, Round 20), set with -DCMAKE_CUDA_FLAGS; off, the SASS is that
// of the code without it (scripts/sass-compare.sh):
//   PDVM_NORM_AFTER=1  RMSNorm's scale applied to the finished rows (y = s W (g x)), not to the
//                      staged input: the normalised stages (qkv, ffn_up, the head) stage g x in one
//                      pass over x, not two, and their epilogues multiply by s (norm_scale)
#ifndef PDVM_NORM_AFTER
#define PDVM_NORM_AFTER 0
#endif

namespace pdvm::cuda {

constexpr bool kNormAfter = PDVM_NORM_AFTER != 0;

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

// kNormAfter: the RMSNorm scale rsqrt(mean(x^2) + eps) of the input a block staged last, from the
// `red` that stage_vector left: each warp's sum of squares over n in red[warp], eps in
// red[kWarps]. Valid until the block's next staging (which syncs before it writes red).
__device__ __forceinline__ float norm_scale(const float* red) {
  float t = red[kWarps];
#pragma unroll
  for (int w = 0; w < kWarps; ++w) t += red[w];
  return rsqrtf(t);
}
// An epilogue's handle on that `red`: the pointer with kNormAfter, else an empty member
// ([[no_unique_address]]: the epilogues keep their layout, so the default build's SASS is unchanged)
struct NoNormScale {
  __host__ __device__ constexpr NoNormScale(const float* = nullptr) {}
};
using NormRed = std::conditional_t<kNormAfter, const float*, NoNormScale>;
__device__ __forceinline__ float norm_scale(NoNormScale) { return 1.0f; }

// ---- the staged vector as int8 codes, for the quantized formats ---------------------------
// Quantized weights are multiplied with x's two-term int8 codes, x ~= sf * (256 qh + ql) with
// sf = max|x_block| / (127 * 256) per block of 32 (the CPU fast path's scheme, ~15 bits: one int8
// term alone flipped SmolLM2's greedy tokens on the CPU), so that dp4a does 4 products per
// instruction instead of PRMT + FADD + FFMA per weight (the q4 matvec was issue-bound at ~54% of
// the read ceiling). Layout, in place of the floats (a format multiplies either the floats or the
// codes, never both; until Round 16 the codes followed the floats, 125 KB for Phi-4's d_ff
// against 45 KB now): per block of 32, 64 bytes [qh 0-15][ql 0-15][qh 16-31][ql 16-31], plus 16
// bytes of padding after every 128, so lanes at 32-byte (q8: half a block each) and 64-byte (q4:
// a block each) strides hit distinct banks; then a float2 (sf, sum of the block's x) per block.
__host__ __device__ constexpr int xq_block(int b) { return 64 * b + 16 * (b >> 1); }
__host__ __device__ constexpr int xsc_offset(int n) { return (xq_block(n / 32) + 64 + 15) & ~15; }
__host__ __device__ constexpr int codes_bytes(int n) { return xsc_offset(n) + (n / 32) * 8 + 16; }
// Shared-memory bytes a staged vector of n values takes: its floats, or its codes and scales.
__host__ __device__ constexpr int staged_bytes(int n) {
  return xs_floats(n) * 4 > codes_bytes(n) ? xs_floats(n) * 4 : codes_bytes(n);
}

struct StagedX {
  const float* f;     // xs_index layout (the float formats and the sparse ones)
  const uint8_t* q;   // xq_block layout (the formats of quantized_x), over the same bytes
  const float2* sc;   // (sf, sum) per block of 32
  __device__ StagedX(const float* smem, int n)
      : f(smem),
        q(reinterpret_cast<const uint8_t*>(smem)),
        sc(reinterpret_cast<const float2*>(reinterpret_cast<const uint8_t*>(smem) + xsc_offset(n))) {}
};

__device__ __forceinline__ bool quantized_x(Fmt f) {
  return f == Fmt::kQ8_0 || f == Fmt::kQ4_0 || f == Fmt::kQ4_1 || f == Fmt::kI8Row ||
         f == Fmt::kQ8_16;
}

// Floats past the end of an unpadded staged vector that stage_vector zeroes for kBitmapI8: a
// chunk's zero padding values read x at most 64 columns past its first column (bitmap_matvec.cuh).
constexpr int kBitmapTailZeros = 64;

// xs <- src (n floats, n % 4 == 0), times rsqrt(mean(src^2) + eps) * norm[i] when norm is given;
// `padded`: at xs_index(i) (dense matvecs) or at i (sparse ones); with `codes` (n % 32 == 0) the
// int8 codes and block scales above instead of the floats; with `tail_zeros` (unpadded only)
// also xs[n, n + kBitmapTailZeros) = 0. Each thread handles 4
// consecutive values, so the 8 threads of a block of 32 are 8 adjacent lanes: its max and sum take
// 3 shuffles each, inside the same pass (a separate warp-per-block pass cost ~0.35 ms per Phi-4
// q8_0 token: 35 dependent shuffle chains per block for d_ff).
// src was written by other blocks in an earlier phase, so it is read with plain (coherent) loads.
// Reads: n*4 B (twice when normalising, the second pass from L1/L2; once with kNormAfter, which
// leaves the scale to the epilogue: norm_scale).
#ifdef PDVM_CUDA_STAGE_TIMER
// Diagnostic knock-outs (stage-timer builds only; results are wrong with any bit set): 1 = stage
// the floats instead of the int8 codes, 2 = stage nothing. Set from PDVM_CUDA_KNOCKOUT
// (kernels.cu).
static __device__ int g_stage_knockout;
#endif

__device__ inline void stage_vector(float* xs, const float* src, int n, const float* norm,
                                    float eps, float* red, bool codes, bool padded,
                                    bool tail_zeros = false) {
#ifdef PDVM_CUDA_STAGE_TIMER
  if (g_stage_knockout & 2) { __syncthreads(); return; }
  if (g_stage_knockout & 1) codes = false;
#endif
  float scale = 1.0f;
  float ss_after = 0.0f;  // kNormAfter: this thread's sum of squares of src
  if (kNormAfter) {
    __syncthreads();  // xs and red may still be read by the previous stage's warps
  } else if (norm != nullptr) {
    float ss = 0.0f;
    for (int i = threadIdx.x * 4; i < n; i += kThreads * 4) {
      const float4 v = *reinterpret_cast<const float4*>(src + i);
      ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    scale = rsqrtf(block_sum(ss, red) / float(n) + eps);
  } else {
    __syncthreads();  // xs may still be read by the previous stage's warps
  }
  uint8_t* q = reinterpret_cast<uint8_t*>(xs);
  float2* sc = reinterpret_cast<float2*>(reinterpret_cast<uint8_t*>(xs) + xsc_offset(n));
  // The loop bound is warp-uniform (the shuffles need whole warps); with n % 32 == 0 the 8 lanes
  // of a block of 32 are all in range or all out.
  for (int i0 = (threadIdx.x & ~31) * 4; i0 < n; i0 += kThreads * 4) {
    const int i = i0 + (threadIdx.x & 31) * 4;
    const bool in = i < n;
    float4 v = in ? *reinterpret_cast<const float4*>(src + i) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (norm != nullptr && in) {
      const float4 g = *reinterpret_cast<const float4*>(norm + i);
      if (kNormAfter) {
        ss_after += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
        v.x *= g.x; v.y *= g.y; v.z *= g.z; v.w *= g.w;
      } else {
        v.x *= scale * g.x; v.y *= scale * g.y; v.z *= scale * g.z; v.w *= scale * g.w;
      }
    }
    if (in && !codes) *reinterpret_cast<float4*>(xs + (padded ? xs_index(i) : i)) = v;
    if (codes) {
      float amax = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
      float sum = (v.x + v.y) + (v.z + v.w);
#pragma unroll
      for (int off = 1; off < 8; off <<= 1) {
        amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
        sum += __shfl_xor_sync(0xffffffffu, sum, off);
      }
      const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
      const float vals[4] = {v.x, v.y, v.z, v.w};
      unsigned hi = 0, lo = 0;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const float t = vals[k] * inv;
        const int qh = __float2int_rn(t);
        const int ql = max(-127, min(127, __float2int_rn((t - float(qh)) * 256.0f)));
        hi |= unsigned(qh & 0xFF) << (8 * k);
        lo |= unsigned(ql & 0xFF) << (8 * k);
      }
      const int b = i >> 5, j = i & 31;
      if (!in) continue;
      uint8_t* dst = q + xq_block(b) + j + (j >= 16 ? 16 : 0);
      *reinterpret_cast<unsigned*>(dst) = hi;
      *reinterpret_cast<unsigned*>(dst + 16) = lo;
      if (j == 0) sc[b] = make_float2(amax * (1.0f / (127.0f * 256.0f)), sum);
    }
  }
  if (tail_zeros && !padded && threadIdx.x < kBitmapTailZeros) xs[n + threadIdx.x] = 0.0f;
  if (kNormAfter && norm != nullptr) {  // norm_scale's inputs, published by the sync below
    ss_after = warp_sum(ss_after);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss_after / float(n);
    if (threadIdx.x == 0) red[kWarps] = eps;
  }
  __syncthreads();
}

// The input of a matvec over m: staged floats, plus their codes when m's format multiplies codes.
__device__ inline void stage_input(float* xs, const float* src, int n, const float* norm, float eps,
                                   float* red, const DevMatrix& m) {
  const bool sparse = m.fmt == Fmt::kMdCsr || m.fmt == Fmt::kBitmapI8;
  stage_vector(xs, src, n, norm, eps, red, quantized_x(m.fmt), !sparse, m.fmt == Fmt::kBitmapI8);
}

// ---- per-format pieces: scale of chunk c of row r, and the dot of one 16-byte chunk ----------
// A chunk is the 16 bytes one lane loads: 16 q8 weights, 32 q4 weights, 8 f16/bf16, 4 f32.

// q8_0 chunk c = half of block c/2: 4 words of int8 weights against 4 words of qh and of ql.
// Per row: 8 dp4a, one I2F and an FFMA for 16 weights (was 52 instructions).
struct FmtQ8 {
  static constexpr bool kRowScale = false;  // true: acc is multiplied by scales[row] at the end
  __device__ static float2 scale(const DevMatrix& m, int r, int c) {
    const __half* s = static_cast<const __half*>(m.scales) + size_t(r) * (m.cols >> 5) + (c >> 1);
    return make_float2(__half2float(__ldg(s)), 0.0f);
  }
  __device__ static void accumulate(const int4 (&w)[kRowsPerWarp], const float2 (&sc)[kRowsPerWarp],
                                    const StagedX& x, int c, float (&acc)[kRowsPerWarp]) {
    const uint8_t* xb = x.q + xq_block(c >> 1) + 32 * (c & 1);
    const int4 xh = *reinterpret_cast<const int4*>(xb);
    const int4 xl = *reinterpret_cast<const int4*>(xb + 16);
    const float sf = x.sc[c >> 1].x;
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      int th = __dp4a(w[i].x, xh.x, 0), tl = __dp4a(w[i].x, xl.x, 0);
      th = __dp4a(w[i].y, xh.y, th); tl = __dp4a(w[i].y, xl.y, tl);
      th = __dp4a(w[i].z, xh.z, th); tl = __dp4a(w[i].z, xl.z, tl);
      th = __dp4a(w[i].w, xh.w, th); tl = __dp4a(w[i].w, xl.w, tl);
      // |th| <= 16*127*127, so 256*th + tl fits in int32 exactly
      acc[i] += __int2float_rn(th * 256 + tl) * (sc[i].x * sf);
    }
  }
};

// i8_row chunk c: the q8_0 dot (same value layout, same x codes), with the row's one f32 scale
// applied once after the warp sum instead of a scale per chunk: per row 8 dp4a, one I2F and an
// FMUL + FADD for 16 weights, and no scale loads in the loop.
struct FmtI8Row : FmtQ8 {
  static constexpr bool kRowScale = true;
  __device__ static float2 scale(const DevMatrix&, int, int) { return make_float2(1.0f, 0.0f); }
};

// q8_16 chunk c: the q8_0 dot with the chunk's own scale, plus its offset (non-zero on even
// chunks only) times the 32-block's sum of x, as Q4_1's minimum: K-quants and mixed block types
// converted at upload (device_types.cuh). Per row: 8 dp4a, one I2F and 2 FFMA for 16 weights.
struct FmtQ8_16 {
  static constexpr bool kRowScale = false;
  __device__ static float2 scale(const DevMatrix& m, int r, int c) {
    const __half2* s = static_cast<const __half2*>(m.scales) + size_t(r) * (m.cols >> 4) + c;
    return __half22float2(__ldg(s));
  }
  __device__ static void accumulate(const int4 (&w)[kRowsPerWarp], const float2 (&sc)[kRowsPerWarp],
                                    const StagedX& x, int c, float (&acc)[kRowsPerWarp]) {
    FmtQ8::accumulate(w, sc, x, c, acc);
    const float xsum = x.sc[c >> 1].y;
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) acc[i] += sc[i].y * xsum;
  }
};

// q4 chunk c = block c (16 bytes: weight j in the low nibble of byte j, j+16 in the high one).
// Nibbles 0..15 are valid signed bytes, so dp4a takes them as they are; the offset (Q4_0: -8) or
// minimum (Q4_1) multiplies the block's exact sum of x. Per row: 12 LOP + 16 dp4a + ~4 for 32
// weights (was 104).
template <bool kHasMin>  // false: Q4_0, w = d*(q-8); true: Q4_1, w = d*q + m
struct FmtQ4 {
  static constexpr bool kRowScale = false;
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
                                    const StagedX& x, int c, float (&acc)[kRowsPerWarp]) {
    const uint8_t* xb = x.q + xq_block(c);
    const int4 h0 = *reinterpret_cast<const int4*>(xb);       // qh of weights 0-15
    const int4 l0 = *reinterpret_cast<const int4*>(xb + 16);  // ql of weights 0-15
    const int4 h1 = *reinterpret_cast<const int4*>(xb + 32);  // qh of weights 16-31
    const int4 l1 = *reinterpret_cast<const int4*>(xb + 48);  // ql of weights 16-31
    const int xh0[4] = {h0.x, h0.y, h0.z, h0.w}, xl0[4] = {l0.x, l0.y, l0.z, l0.w};
    const int xh1[4] = {h1.x, h1.y, h1.z, h1.w}, xl1[4] = {l1.x, l1.y, l1.z, l1.w};
    const float2 xs = x.sc[c];
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const int words[4] = {w[i].x, w[i].y, w[i].z, w[i].w};
      int th = 0, tl = 0;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const int lo = words[k] & 0x0F0F0F0F, hi = (words[k] >> 4) & 0x0F0F0F0F;
        th = __dp4a(lo, xh0[k], th);
        tl = __dp4a(lo, xl0[k], tl);
        th = __dp4a(hi, xh1[k], th);
        tl = __dp4a(hi, xl1[k], tl);
      }
      const float dot = __int2float_rn(th * 256 + tl) * xs.x;  // sum of q * x over the block
      if constexpr (kHasMin) {
        acc[i] += sc[i].x * dot + sc[i].y * xs.y;
      } else {
        acc[i] += sc[i].x * (dot - 8.0f * xs.y);
      }
    }
  }
};

template <Fmt kFmt>  // kF16, kBF16, kF32
struct FmtDense {
  static constexpr bool kRowScale = false;
  static constexpr int kPerChunk = kFmt == Fmt::kF32 ? 4 : 8;
  __device__ static float2 scale(const DevMatrix&, int, int) { return make_float2(1.0f, 0.0f); }
  __device__ static void accumulate(const int4 (&w)[kRowsPerWarp], const float2 (&)[kRowsPerWarp],
                                    const StagedX& x, int c, float (&acc)[kRowsPerWarp]) {
    const float* xs = x.f;
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
template <class F, bool kPaired>
__device__ __forceinline__ void matvec_rows_warp(const DevMatrix& m, int row0, const StagedX& xs,
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
  // row scales: requested with the first weights, not after the last (a round trip at the end of
  // every warp, i.e. of the stage)
  float row_scale[kRowsPerWarp];
  if constexpr (F::kRowScale) {
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i)
      row_scale[i] = __ldg(static_cast<const float*>(m.scales) + rr[i]);
  }
  // Two chunks per row per step (8 loads in flight per lane). kPaired (the fused kernels): the
  // last odd chunk peeled, because with the second chunk under `if (c + 32 < n_chunks)` the
  // compiler sank its loads into that branch, after the first chunk's math (two dependent round
  // trips per step): -0.2..-0.5 ms per token. The per-op kernels keep the branch: the peeled loop
  // made them 0.3-0.5 ms slower (docs/notes-cuda.md, Round 8; cause not established).
  if constexpr (!kPaired) {
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
  } else {
    int c = lane;
    for (; c + 32 < n_chunks; c += 64) {
      int4 w1[kRowsPerWarp], w2[kRowsPerWarp];
      float2 s1[kRowsPerWarp], s2[kRowsPerWarp];
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) w1[i] = ld_weight16(wrow[i] + size_t(c) * 16);
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) w2[i] = ld_weight16(wrow[i] + size_t(c + 32) * 16);
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) { s1[i] = F::scale(m, rr[i], c); s2[i] = F::scale(m, rr[i], c + 32); }
      F::accumulate(w1, s1, xs, c, acc);
      F::accumulate(w2, s2, xs, c + 32, acc);
    }
    if (c < n_chunks) {
      int4 w1[kRowsPerWarp];
      float2 s1[kRowsPerWarp];
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) w1[i] = ld_weight16(wrow[i] + size_t(c) * 16);
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) s1[i] = F::scale(m, rr[i], c);
      F::accumulate(w1, s1, xs, c, acc);
    }
  }
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) acc[i] = warp_sum(acc[i]);
  if constexpr (F::kRowScale) {
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) acc[i] *= row_scale[i];
  }
}

// The warps of the whole grid share the row groups; warp-major numbering spreads a matrix with
// fewer groups than warps evenly over all blocks (hence all SMs).
template <class F, bool kPaired, class Epi>
__device__ void matvec_stage_fmt(const DevMatrix& m, const float* smem, const Epi& epi) {
  const StagedX xs(smem, m.cols);
  const int n_groups = (m.rows + kRowsPerWarp - 1) / kRowsPerWarp;
  const int first = (threadIdx.x >> 5) * gridDim.x + blockIdx.x;
  for (int g = first; g < n_groups; g += gridDim.x * kWarps) {
    const auto pre = epi.preload(g * kRowsPerWarp);
    float acc[kRowsPerWarp];
    matvec_rows_warp<F, kPaired>(m, g * kRowsPerWarp, xs, acc);
    epi(g * kRowsPerWarp, acc, pre);
  }
}

}  // namespace pdvm::cuda
#include "cuda/sparse_matvec.cuh"  // matvec_stage_mdcsr (uses the primitives above)
#include "cuda/bitmap_matvec.cuh"  // matvec_stage_bitmap (uses biased_byte_as_float too)
namespace pdvm::cuda {

// The format switch is uniform across the grid (one matrix per stage), so it costs one branch.
// kPaired: the fused kernels' loop shape (matvec_rows_warp); false in the per-op kernels.
// kFmts: the formats this instance holds code for (FmtSet); the launcher picks an instance that
// holds the matrix's format.
template <bool kPaired = true, FmtSet kFmts = kAllFmts, class Epi>
__device__ void matvec_stage(const DevMatrix& m, const float* xs, const Epi& epi) {
#define PDVM_FMT_CASE(F, CALL) \
  case F:                      \
    if constexpr ((kFmts & fmt_bit(F)) != 0) CALL; \
    break
  switch (m.fmt) {
    PDVM_FMT_CASE(Fmt::kQ8_0, (matvec_stage_fmt<FmtQ8, kPaired>(m, xs, epi)));
    PDVM_FMT_CASE(Fmt::kQ4_0, (matvec_stage_fmt<FmtQ4<false>, kPaired>(m, xs, epi)));
    PDVM_FMT_CASE(Fmt::kQ4_1, (matvec_stage_fmt<FmtQ4<true>, kPaired>(m, xs, epi)));
    PDVM_FMT_CASE(Fmt::kBF16, (matvec_stage_fmt<FmtDense<Fmt::kBF16>, kPaired>(m, xs, epi)));
    PDVM_FMT_CASE(Fmt::kF16, (matvec_stage_fmt<FmtDense<Fmt::kF16>, kPaired>(m, xs, epi)));
    PDVM_FMT_CASE(Fmt::kF32, (matvec_stage_fmt<FmtDense<Fmt::kF32>, kPaired>(m, xs, epi)));
    PDVM_FMT_CASE(Fmt::kMdCsr, (matvec_stage_mdcsr(m, xs, epi)));
    PDVM_FMT_CASE(Fmt::kI8Row, (matvec_stage_fmt<FmtI8Row, kPaired>(m, xs, epi)));
    PDVM_FMT_CASE(Fmt::kBitmapI8, (matvec_stage_bitmap(m, xs, epi)));
    PDVM_FMT_CASE(Fmt::kQ8_16, (matvec_stage_fmt<FmtQ8_16, kPaired>(m, xs, epi)));
  }
#undef PDVM_FMT_CASE
}

// One weight, dequantized (embedding lookups; not on a hot path).
__device__ inline float dequant_one(const DevMatrix& m, int row, int col) {
  const uint8_t* r = m.w + size_t(row) * m.row_bytes;
  const size_t g = size_t(row) * (m.cols >> 5) + (col >> 5);
  switch (m.fmt) {
    case Fmt::kMdCsr:
    case Fmt::kBitmapI8: return 0.0f;  // never an embedding: the upload rejects it
    case Fmt::kI8Row:
      return float(reinterpret_cast<const int8_t*>(r)[col]) * static_cast<const float*>(m.scales)[row];
    case Fmt::kF32: return reinterpret_cast<const float*>(r)[col];
    case Fmt::kF16: return __half2float(reinterpret_cast<const __half*>(r)[col]);
    case Fmt::kBF16: return __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(r)[col]);
    case Fmt::kQ8_0:
      return float(reinterpret_cast<const int8_t*>(r)[col]) *
             __half2float(static_cast<const __half*>(m.scales)[g]);
    case Fmt::kQ8_16: {
      const __half2* s = static_cast<const __half2*>(m.scales) + size_t(row) * (m.cols >> 4);
      return float(reinterpret_cast<const int8_t*>(r)[col]) * __low2float(s[col >> 4]) +
             __high2float(s[(col >> 5) * 2]);
    }
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
