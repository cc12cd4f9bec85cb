// y = W x for bitmap_i8 matrices (docs/FORMAT.md) on the GPU. Included by matvec.cuh (it uses
// its warp primitives, kRowsPerWarp, kChunksInFlight and biased_byte_as_float); matvec_stage
// dispatches here for Fmt::kBitmapI8. Correct on the H100, but issue- and latency-bound at
// 35-38% of the read ceiling on Phi-4, token mode (docs/notes-cuda.md, Rounds 4 and 8).
//
// Design: value-major, MdCSR-shaped. The file's packed values are cut at upload into chunks of
// 16 bytes that one lane loads with one coalesced 16-byte load (4 chunks in flight per lane, as
// MdCSR); each chunk carries the u16 column of its first value, and the lane finds the columns
// of its 16 values by walking the row's bitmap from there, highest bit first. A chunk is two
// halves of 8 values, and each half's values lie in one 32-column window of the bitmap:
//   half A: the next <= 8 kept columns in [c0, c0 + 32), c0 = the chunk's first column;
//   half B: the next <= 8 kept columns in [sB, sB + 32), sB = (A full ? A's last column + 1 :
//           c0 + 32);
// a half with fewer than 8 values is padded with zero values. So a half's columns come from one
// 32-bit word (funnel-shifted out of three mask words) and the walk never refills: per value
// FLO (the next set bit p), IMAD + LDS (x at the window's top minus p), SHL + LOP (clear bit p),
// PRMT + MOV + FADD (int8 -> f32) and FFMA: 9 instructions (the SASS under Nsight Compute; it
// was 12 with CLZ = FLO + subtract and the column turned into an address in two more steps), no
// branch, no divergence. A padding value walks an exhausted word: FLO(0) = -1 gives column
// (window start + 32), at most c0 + 64 <= cols + 63; stage_vector zeroes x[cols, cols + 64) for
// this format, so padding adds 0 * (finite x) = 0.
// Per chunk: 2 B column + 3 mask-word loads (L1: the warp's rows' masks are prefetched into L1
// at the start of each row group), 2 funnel shifts, the row select and accumulate (as MdCSR):
// ~25 instructions per 16 values. Nsight Compute on ffn_up at 50% sparsity: 15.8 instructions
// per kept weight in all before, 12.7 with FLO + IMAD and the selector in a register (that last
// part, a constant-memory 2^23, made the q4_0 / q8_0 token kernel 1% slower: left out, so ~13.7);
// 1 FLO (16/clk/SM) and 1 LDS (random banks: 3.7 wavefronts each) per value.
//
// Why not group-major (each lane expands one 64-column group to dense int8 words and uses dp4a
// with the x codes, as FmtQ8): a group's values start at a data-dependent byte offset, so each
// 4-column word needs its source bytes fetched at a dynamic address (2 LDS + funnel shift) and a
// selector from a nibble LUT: ~13 instructions per 4 columns, almost all INT (64/clk/SM on
// sm_90), ~3.4 per column = ~11 per kept weight at 70% sparsity, plus staging the values
// through shared memory; by this estimate it would win only below ~50% sparsity. The
// value-major walk costs per kept weight, so its instructions per byte read stay about constant
// across sparsity (estimated near the INT and LDS limits at 70% and 2.8 TB/s: notes-cuda.md).
//
// Bytes (device, per weight at keep fraction k): values k (+ zero padding of halves cut by
// their 32-column window), chunk columns 2/16 B per chunk of 16, masks 0.125, plus 8 B per row
// (scale, row pointer). Computed from the cutting rule on random 5120-column rows (notes-cuda.md):
// 0.691 B at 50% sparsity (file format 0.627, +10%), 0.480 B at 70% (0.427, +12%; 4.5% padding),
// 0.411 B at 80% (0.327, +26%). The u16 chunk column is the price of a decode without a per-row
// scan of the masks (a warp scan of popcounts plus a select of the n-th set bit per chunk cost
// ~4 more instructions per kept weight in the estimate).
#pragma once

namespace pdvm::cuda {

// Prefetch one 128-byte line into L1 (the masks: each mask word is read by 1-3 chunks of the
// same warp, after a dependent load of the chunk's column).
__device__ __forceinline__ void prefetch_l1(const void* p) {
  asm volatile("prefetch.global.L1 [%0];" ::"l"(p));
}

// x << n with PTX semantics (n >= 32 gives 0); C++ leaves a shift by 32 or more undefined.
__device__ __forceinline__ unsigned shl_clamped(unsigned x, unsigned n) {
  unsigned r;
  asm("shl.b32 %0, %1, %2;" : "=r"(r) : "r"(x), "r"(n));
  return r;
}

// Position of the highest set bit of x, 0xFFFFFFFF when x == 0: one FLO (__clz is FLO plus a
// subtract, and the column then needs another add).
__device__ __forceinline__ unsigned highest_bit(unsigned x) {
  unsigned r;
  asm("bfind.u32 %0, %1;" : "=r"(r) : "r"(x));
  return r;
}

// x from a 32-bit shared-memory byte address (so the address is one IMAD from the bit index).
__device__ __forceinline__ float ld_shared_f32(unsigned addr) {
  float v;
  asm volatile("ld.shared.f32 %0, [%1];" : "=f"(v) : "r"(addr));
  return v;
}

// One half chunk: 8 values (bytes b0..b0+7 of vw, biased by ^0x80) at the first 8 set bits of
// `cur` (bit 31 = column of xw[0], bit p = column 31 - p). Returns the offset of the last column
// walked (32 when the half ran out of set bits: padding). Per value FLO (the next bit), IMAD +
// LDS (x at xw + 31 - p), SHL + LOP (clear it), PRMT + FADD (int8 -> f32), FFMA.
__device__ __forceinline__ float bitmap_half_dot(unsigned v0, unsigned v1, unsigned cur,
                                                 const float* xw, int& last) {
  const unsigned vw[2] = {v0, v1};
  // x of bit p as a shared-memory byte address, top - 4p: one IMAD (as an index, c0 + 31 - p
  // then a LEA to bytes, it was two instructions per value)
  const unsigned top = unsigned(__cvta_generic_to_shared(xw + 31));
  float s0 = 0.0f, s1 = 0.0f;
  unsigned p = 0;
#pragma unroll
  for (int k = 0; k < 2; ++k) {
#pragma unroll
    for (int b = 0; b < 4; ++b) {
      p = highest_bit(cur);  // 0xFFFFFFFF when cur == 0: x at xw + 32, zero (stage_vector)
      const float v = biased_byte_as_float(vw[k], b) * ld_shared_f32(top - 4u * p);
      cur ^= shl_clamped(1u, p);  // p >= 32: cur stays 0
      if (b & 1) s1 += v; else s0 += v;
    }
  }
  last = 31 - int(p);
  return s0 + s1;
}

// One chunk: values v, first column c0, the row's masks (bit-reversed u32 words).
__device__ __forceinline__ float bitmap_chunk_dot(int4 v, unsigned c0, unsigned w0, unsigned w1,
                                                  unsigned w2, const float* xs) {
  const unsigned s = c0 & 31u;
  int last;
  const float a = bitmap_half_dot(unsigned(v.x) ^ 0x80808080u, unsigned(v.y) ^ 0x80808080u,
                                  __funnelshift_l(w1, w0, s), xs + c0, last);
  // half B starts after A's last column (A full) or at c0 + 32 (A padded: last == 32)
  const unsigned d = s + unsigned(min(last + 1, 32));  // in [1, 63], from column c0 - s
  const unsigned hi = d < 32 ? w0 : w1, lo = d < 32 ? w1 : w2;
  const float b = bitmap_half_dot(unsigned(v.z) ^ 0x80808080u, unsigned(v.w) ^ 0x80808080u,
                                  __funnelshift_l(lo, hi, d), xs + (c0 - s) + d, last);
  return a + b;
}

// A warp takes kRowsPerWarp consecutive rows; their chunks are one contiguous range
// [row_ptr[row0], row_ptr[row0 + kRowsPerWarp]), which its lanes stride with kChunksInFlight
// chunks in flight per lane (as matvec_stage_mdcsr). The row scale is applied once at the end.
// Reads: 18 B per chunk of 16 values + cols/8 B of masks and 8 B per row (~0.47 B per weight at
// 70% sparsity, see above). FLOPs: 2 per value.
template <class Epi>
__device__ void matvec_stage_bitmap(const DevMatrix& m, const float* xs, const Epi& epi) {
  const int n_groups = (m.rows + kRowsPerWarp - 1) / kRowsPerWarp;
  const int lane = threadIdx.x & 31;
  const int wpr = m.cols >> 5;  // mask words per row
  const float* scale = static_cast<const float*>(m.scales);
  const unsigned* masks =
      reinterpret_cast<const unsigned*>(scale) + bitmap_masks_offset(m.rows);
  for (int g = (threadIdx.x >> 5) * gridDim.x + blockIdx.x; g < n_groups; g += gridDim.x * kWarps) {
    const int row0 = g * kRowsPerWarp;
    const auto pre = epi.preload(row0);
    const unsigned* gmask = masks + size_t(row0) * wpr;
    {
      const int lines = (min(kRowsPerWarp, m.rows - row0) * wpr + 31) >> 5;  // 128 B = 32 words
      for (int l = lane; l < lines; l += 32) prefetch_l1(gmask + l * 32);
    }
    unsigned bound[kRowsPerWarp + 1];
#pragma unroll
    for (int i = 0; i <= kRowsPerWarp; ++i) bound[i] = __ldg(m.row_ptr + min(row0 + i, m.rows));
    float row_scale[kRowsPerWarp];
    load_row_scales(m, scale, row0, row_scale);
    float acc[kRowsPerWarp];
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) acc[i] = 0.0f;
    const unsigned end = bound[kRowsPerWarp];
    for (unsigned k = bound[0] + lane; k < end; k += 32 * kChunksInFlight) {
      int4 v[kChunksInFlight];
      unsigned c0[kChunksInFlight], w[kChunksInFlight][3];
      int r[kChunksInFlight];
#pragma unroll
      for (int u = 0; u < kChunksInFlight; ++u) {
        const unsigned ku = min(k + 32 * u, end - 1);  // past the end: reloads the last chunk, unused
        v[u] = ld_weight16(m.w + size_t(ku) * 16);
        c0[u] = __ldg(m.bases + ku);
        r[u] = 0;
#pragma unroll
        for (int i = 1; i < kRowsPerWarp; ++i) r[u] += ku >= bound[i] ? 1 : 0;
      }
#pragma unroll
      for (int u = 0; u < kChunksInFlight; ++u) {
        // 32-bit index (64-bit pointer math cost ~6 instructions per chunk); +2 words stay in
        // the array
        const unsigned* mw = gmask + (unsigned(r[u]) * unsigned(wpr) + (c0[u] >> 5));
        w[u][0] = __ldg(mw);
        w[u][1] = __ldg(mw + 1);
        w[u][2] = __ldg(mw + 2);
      }
#pragma unroll
      for (int u = 0; u < kChunksInFlight; ++u) {
        const unsigned ku = k + 32 * u;
        if (ku < end) {
          const float d = bitmap_chunk_dot(v[u], c0[u], w[u][0], w[u][1], w[u][2], xs);
          // by the bounds, as MdCSR: `if (r[u] == i)` lets the compiler index acc by r (local memory)
#pragma unroll
          for (int i = 0; i < kRowsPerWarp; ++i)
            if (ku >= bound[i] && ku < bound[i + 1]) acc[i] += d;
        }
      }
    }
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i)
      acc[i] = warp_sum(acc[i]) * row_scale[i];
    epi(row0, acc, pre);
  }
}

}  // namespace pdvm::cuda
