// y = W x for MdCSR matrices (docs/FORMAT.md) on the GPU. Included by matvec.cuh (it uses its
// warp primitives and kRowsPerWarp); matvec_stage dispatches here for Fmt::kMdCsr.
//
// Device layout (repacked at upload, same bytes as the file): chunk k is 32 bytes, its 16 int8
// values then its 16 column deltas, so one lane reads a whole chunk with two 16-byte loads that
// the warp's lanes coalesce; the u16 chunk bases, f32 row scales and u32 row pointers are arrays
// of their own. The input vector is staged as plain floats (no bank padding: the columns a lane
// reads are data-dependent anyway). The chunks the 32 lanes read together are dealt at upload
// (formats::interleave_mdcsr_row), so at each step the lanes read consecutive entries of a row,
// whose columns share fewer banks: MdCSR 50% -0.15 ms per Phi-4 token on the H100 (Round 18).
#pragma once

namespace pdvm::cuda {

// int8 (stored ^ 0x80 as 0..255 in byte b of u) -> float by building 2^23 + byte: PRMT + FADD at
// full rate instead of the quarter-rate I2F. two23 is the word 0x4B000000 (2^23 as a float).
__device__ __forceinline__ float biased_byte_as_float(unsigned u, int b, unsigned two23) {
  return __int_as_float(int(__byte_perm(u, two23, 0x7440u | unsigned(b)))) - 8388736.0f;
}
__device__ __forceinline__ float biased_byte_as_float(unsigned u, int b) {
  return biased_byte_as_float(u, b, 0x4B000000u);
}

// 2^23 as a variable in constant memory (so c_ like c_layers, not kName): with the literal, ptxas
// folds it into the PRMT's immediate and moves the byte selector (0x7440-0x7443) into a register
// for every entry, one instruction in nine; read from here, the selector is the immediate
// (down_kernel<64u>: 72 fewer instructions, scripts/sass-compare.sh; -0.02 to -0.05 ms per Phi-4
// MdCSR token, H100, Round 18). Seen with nvcc 13.0: a compiler that folds a never-written
// constant would bring the moves back. bitmap_i8's walk keeps the literal (Round 8: the same trick
// moved the dense formats' code in the kernel they then shared; not retried since).
static __constant__ unsigned c_float_2p23 = 0x4B000000u;

// One chunk: col runs from the base through the 16 prefix-summed deltas; padding entries have
// value 0 and a column inside the row (validated at load), so they add 0.
// Per entry: PRMT + LEA (the column), a shared-memory load of x, PRMT + FADD, FFMA.
// The column's byte is taken by one PRMT, not a shift and a mask: ptxas then keeps the column as
// a byte address (down_kernel<64u> 1184 -> 1128 instructions; -0.05 to -0.075 ms per Phi-4 MdCSR
// 50% token, -0.035 to -0.05 ms at 70%, three A/B rounds on the H100, Round 19).
__device__ __forceinline__ float mdcsr_chunk_dot(int4 v, int4 d, int col, const float* xs) {
  const unsigned vw[4] = {unsigned(v.x) ^ 0x80808080u, unsigned(v.y) ^ 0x80808080u,
                          unsigned(v.z) ^ 0x80808080u, unsigned(v.w) ^ 0x80808080u};
  const unsigned dw[4] = {unsigned(d.x), unsigned(d.y), unsigned(d.z), unsigned(d.w)};
  float s0 = 0.0f, s1 = 0.0f;
#pragma unroll
  for (int k = 0; k < 4; ++k) {
#pragma unroll
    for (int b = 0; b < 4; ++b) {
      col += int(__byte_perm(dw[k], 0u, 0x4440u | unsigned(b)));
      const float p = biased_byte_as_float(vw[k], b, c_float_2p23) * xs[col];
      if (b & 1) s1 += p; else s0 += p;
    }
  }
  return s0 + s1;
}

// The row scales of a warp's group (`scale` = m.scales as floats; 0 past the last row), requested
// with its row pointers, not after its last chunk: that load was a dependent round trip at the
// end of every warp, so of every one-wave stage (MdCSR and bitmap_i8).
__device__ __forceinline__ void load_row_scales(const DevMatrix& m, const float* scale, int row0,
                                                float (&row_scale)[kRowsPerWarp]) {
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i)
    row_scale[i] = row0 + i < m.rows ? __ldg(scale + row0 + i) : 0.0f;
}

// Chunks each lane loads per round: 4 x 32 B = 128 B per lane, as the dense q8 matvec (8 x 16 B);
// with 2 (64 B per lane) MdCSR ran at 59-65% of the read ceiling on Phi-4 (H100, df7c033). A
// pipelined round (the next requested before this one is decoded) spilled token_kernel<64u> by
// 236-440 B (Round 18, not run; bench/results/round18/mdcsr-chunk-variants.patch.txt); 6 per round
// for MdCSR alone (no spill in token_kernel<64u>, 90 registers in the per-op kernels) was 0.02 to
// 0.12 ms slower (Round 19).
constexpr int kChunksInFlight = 4;

// One round of a lane's chunks: chunk k + 32 u for u < kChunksInFlight (past the range's end the
// last chunk is loaded again, and not used). Made for the pipelined round, kept: the loop written
// inline again compiles to other SASS than Round 19 measured.
struct MdcsrRound {
  int4 v[kChunksInFlight], d[kChunksInFlight];
  int b[kChunksInFlight];
};

__device__ __forceinline__ void load_mdcsr_round(const DevMatrix& m, unsigned k, unsigned end,
                                                 MdcsrRound& r) {
#pragma unroll
  for (int u = 0; u < kChunksInFlight; ++u) {
    const unsigned ku = min(k + 32 * u, end - 1);
    r.v[u] = ld_weight16(m.w + size_t(ku) * 32);
    r.d[u] = ld_weight16(m.w + size_t(ku) * 32 + 16);
    r.b[u] = __ldg(m.bases + ku);
  }
}

// A warp takes kRowsPerWarp consecutive rows; their chunks are one contiguous range
// [row_ptr[row0], row_ptr[row0 + kRowsPerWarp]), which its lanes stride with kChunksInFlight
// chunks per round per lane (rows of unequal length cost no idle lanes). Each chunk's sum goes to
// its row's accumulator; the row scale is applied once at the end.
// Reads: 34 B per chunk of 16 entries + 8 B per row (~2.13 B per kept weight). FLOPs: 2 per entry.
template <class Epi>
__device__ void matvec_stage_mdcsr(const DevMatrix& m, const float* xs, const Epi& epi) {
  const int n_groups = (m.rows + kRowsPerWarp - 1) / kRowsPerWarp;
  const int lane = threadIdx.x & 31;
  const float* scale = static_cast<const float*>(m.scales);
  for (int g = (threadIdx.x >> 5) * gridDim.x + blockIdx.x; g < n_groups; g += gridDim.x * kWarps) {
    const int row0 = g * kRowsPerWarp;
    const auto pre = epi.preload(row0);
    unsigned bound[kRowsPerWarp + 1];
#pragma unroll
    for (int i = 0; i <= kRowsPerWarp; ++i) bound[i] = __ldg(m.row_ptr + min(row0 + i, m.rows));
    float row_scale[kRowsPerWarp];
    load_row_scales(m, scale, row0, row_scale);
    float acc[kRowsPerWarp];
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) acc[i] = 0.0f;
    auto add = [&](unsigned k, float v) {
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i)
        if (k >= bound[i] && k < bound[i + 1]) acc[i] += v;
    };
    const unsigned end = bound[kRowsPerWarp];
    auto decode = [&](unsigned k, const MdcsrRound& r) {
#pragma unroll
      for (int u = 0; u < kChunksInFlight; ++u)
        if (k + 32 * u < end) add(k + 32 * u, mdcsr_chunk_dot(r.v[u], r.d[u], r.b[u], xs));
    };
    for (unsigned k = bound[0] + lane; k < end; k += 32 * kChunksInFlight) {
      MdcsrRound r;
      load_mdcsr_round(m, k, end, r);
      decode(k, r);
    }
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i)
      acc[i] = warp_sum(acc[i]) * row_scale[i];
    epi(row0, acc, pre);
  }
}

}  // namespace pdvm::cuda
