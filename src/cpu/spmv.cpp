// SpMV / matvec kernels for the compressed formats (see spmv.h). The AVX-512 path needs
// VBMI2 (vpexpandb, for the bitmap format) and VNNI (vpdpbusd); Zen 4 and Ice Lake+ have both.
// Without them a scalar path computes the same sums from x's f32 copy.
#include "cpu/spmv.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "formats/bitmap_i8.h"
#include "formats/mdcsr.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__) && \
    defined(__AVX512VBMI2__) && defined(__AVX512DQ__)
#define PDVM_SPMV_AVX512 1
// GCC 12 warns inside its own AVX-512 headers (PR 105593), as in matvec_kernels.cpp.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

namespace pdvm::cpu {
namespace {
using core::Matrix;
using formats::kBitmapGroup;
using formats::kMdCsrChunk;

#if defined(PDVM_SPMV_AVX512)
// ---- bitmap int8 weights against x's two-term int8 codes ----
// x ~= s q + s/256 q_lo per block of 32 (PreparedInput). vpdpbusd multiplies unsigned by signed
// bytes, so the weights go in biased: wb = w + 128 (u8, one vpxor), x's signed codes as they are.
// Per lane (4 columns) 256 * dot(wb, q) + dot(wb, q_lo) = [256 * dot(w, q) + dot(w, q_lo)] +
// 128 * (256 * sum q + sum q_lo); the second term depends on x only, so it is computed once per
// call for every 64-column group (GroupConsts::corr) and subtracted in int32. The result is the
// same exact integer the sign trick gave (|.| <= 4 * 128 * 127 * 257 < 2^24, so the f32 convert is
// exact too), for 3 fewer vector ops per 64 weights (no movepi8_mask, abs, 2 masked subtracts):
// bitmap 50% went from 10.8 to 19.6 GB/s per core on L2-resident rows (notes-cpu-kernels.md).
// Columns that are not kept expand to 128 (= weight 0), so the correction is the same for every
// row. From DRAM with 2 threads the gain shrinks (70%: 14 -> 16-19 GB/s; 50%: 20 -> 18-20), and
// for dense int8 rows it turned into a loss, so rows_i8_row keeps the sign trick below.
constexpr int64_t kMaxGroups = 512;  // per-call tables on the stack: cols <= 32768

struct GroupConsts {
  alignas(64) __m512i corr[kMaxGroups];  // 128 * (256 * sum q + sum q_lo) per lane of each group
  alignas(64) __m512 scale[kMaxGroups];  // x's fine scale per lane: lanes 0-7 block 2g, 8-15 block 2g+1
};

inline __m512i group_corr(const PreparedInput& x, int64_t g) {
  const __m512i c80 = _mm512_set1_epi8(char(0x80));
  const __m512i t = _mm512_dpbusd_epi32(_mm512_setzero_si512(), c80, _mm512_load_si512(x.q8() + 64 * g));
  return _mm512_dpbusd_epi32(_mm512_slli_epi32(t, 8), c80, _mm512_load_si512(x.q8_lo() + 64 * g));
}

inline __m512 group_scale(const PreparedInput& x, int64_t g) {
  const int j = int(g & 7);
  const __m512i idx = _mm512_setr_epi32(2 * j, 2 * j, 2 * j, 2 * j, 2 * j, 2 * j, 2 * j, 2 * j, 2 * j + 1,
                                        2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1);
  // The scale arrays are padded to 512 columns (16 blocks), so this load stays inside them.
  return _mm512_permutexvar_ps(idx, _mm512_load_ps(x.q8_fine_scale() + 2 * (g & ~int64_t(7))));
}

// ~2 * groups vpdpbusd: negligible next to rows * groups for any matrix worth threading.
inline void fill_group_consts(const PreparedInput& x, int64_t groups, GroupConsts& k) {
  for (int64_t g = 0; g < groups; ++g) {
    k.corr[g] = group_corr(x, g);
    k.scale[g] = group_scale(x, g);
  }
}

// acc += x-scaled [256 dot(w, q) + dot(w, q_lo)] for one group of 64 biased weights wb.
inline __m512 group_dot(__m512i wb, const PreparedInput& x, int64_t g, __m512i corr, __m512 xscale, __m512 acc) {
  __m512i d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wb, _mm512_load_si512(x.q8() + 64 * g));
  d = _mm512_dpbusd_epi32(_mm512_slli_epi32(d, 8), wb, _mm512_load_si512(x.q8_lo() + 64 * g));
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(d, corr)), xscale, acc);
}

// Sum over a row's groups; `load(g)` returns group g's 64 biased weights. Two accumulators;
// kTables: corr/scale from the per-call tables (cols <= 32768), else recomputed per group.
template <bool kTables, typename Load>
inline float row_dot_groups(int64_t groups, const PreparedInput& x, const GroupConsts* k, Load load) {
  auto one = [&](int64_t g, __m512 acc) {
    if constexpr (kTables) return group_dot(load(g), x, g, k->corr[g], k->scale[g], acc);
    else return group_dot(load(g), x, g, group_corr(x, g), group_scale(x, g), acc);
  };
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t g = 0;
  for (; g + 1 < groups; g += 2) {
    acc0 = one(g, acc0);
    acc1 = one(g + 1, acc1);
  }
  if (g < groups) acc0 = one(g, acc0);
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

// Runs body.template operator()<kTables>(&tables) with the per-call tables when they fit
// (else with null: row_dot_groups<false> recomputes them per group).
template <typename Body>
inline void with_group_consts(const PreparedInput& x, int64_t groups, Body body) {
  if (groups <= kMaxGroups) {
    GroupConsts k;  // 64 KB of stack, filled once per call (per thread)
    fill_group_consts(x, groups, k);
    body.template operator()<true>(&k);
  } else {
    body.template operator()<false>(static_cast<const GroupConsts*>(nullptr));
  }
}

// ---- the sign trick (i8_row) ----
// One group of 64 int8 weights w against x's two-term int8 codes (x ~= s q + s/256 q_lo, see
// PreparedInput) for two blocks of 32 with fine scales xs[2g], xs[2g + 1] (= s / 256).
// vpdpbusd wants unsigned x signed: multiply |w| by x with w's sign; lanes 0-7 hold block 2g's
// partial sums, lanes 8-15 block 2g+1's, exact in int32 as 256 * dot(w, q) + dot(w, q_lo).
// Per group: ~11 instructions for 64 weights, under the ~20 B/cycle DRAM gives 2 cores.
inline __m512 group_dot_signed(__m512i wv, const int8_t* xq, const int8_t* xq_lo, __m512 xscale, __m512 acc) {
  const __m512i zero = _mm512_setzero_si512();
  const __mmask64 neg = _mm512_movepi8_mask(wv);
  const __m512i wabs = _mm512_abs_epi8(wv);
  const __m512i xv = _mm512_load_si512(xq);
  const __m512i xl = _mm512_load_si512(xq_lo);
  const __m512i xs = _mm512_mask_sub_epi8(xv, neg, zero, xv);
  const __m512i xsl = _mm512_mask_sub_epi8(xl, neg, zero, xl);
  __m512i dot = _mm512_slli_epi32(_mm512_dpbusd_epi32(zero, wabs, xs), 8);
  dot = _mm512_dpbusd_epi32(dot, wabs, xsl);
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), xscale, acc);
}

// Lanes 0-7 = s[2j], lanes 8-15 = s[2j + 1], from a zmm holding the scales of 16 blocks.
struct ScaleSpread {
  __m512i idx[8];
  ScaleSpread() {
    for (int j = 0; j < 8; ++j) {
      const int a = 2 * j, b = 2 * j + 1;
      idx[j] = _mm512_setr_epi32(a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b);
    }
  }
};


inline __mmask64 tail_mask(int64_t n) { return n >= 64 ? ~__mmask64(0) : (__mmask64(1) << n) - 1; }
// Walks the 64-column groups of one row; `load(g, mask)` returns the group's 64 weights.
template <typename Load>
inline float row_dot_groups_signed(int64_t cols, const PreparedInput& x, const ScaleSpread& sp, Load load) {
  const int8_t* xq = x.q8();
  const int8_t* xl = x.q8_lo();
  const float* xsc = x.q8_fine_scale();
  const int64_t groups = formats::bitmap_groups(cols);
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  for (int64_t g0 = 0; g0 < groups; g0 += 8) {
    // x's scales for 16 blocks (8 groups); the arrays are padded to 512 columns, so this load
    // never runs past them.
    const __m512 s16 = _mm512_load_ps(xsc + 2 * g0);
    const int64_t n = std::min<int64_t>(8, groups - g0);
    int64_t j = 0;
    for (; j + 1 < n; j += 2) {
      const int64_t g = g0 + j;
      acc0 = group_dot_signed(load(g), xq + 64 * g, xl + 64 * g, _mm512_permutexvar_ps(sp.idx[j], s16), acc0);
      acc1 = group_dot_signed(load(g + 1), xq + 64 * (g + 1), xl + 64 * (g + 1),
                       _mm512_permutexvar_ps(sp.idx[j + 1], s16), acc1);
    }
    if (j < n) {
      const int64_t g = g0 + j;
      acc0 = group_dot_signed(load(g), xq + 64 * g, xl + 64 * g, _mm512_permutexvar_ps(sp.idx[j], s16), acc0);
    }
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

// Software prefetch distance in bytes, per stream. The hardware prefetcher alone left each core
// 15-25% under its L2-resident rate when the arrays came from DRAM (1-thread bench cases, GB/s by
// CPU time): MdCSR 50% 9.2 -> 11, 70% 7.9 -> 9.2; bitmap 50% 11 -> 13.4; int8 rows 13.3 -> 15.9.
// 1-4 KB measured alike; one prefetch per 64 bytes consumed (per group of 4 chunks, per bitmap
// group, per 64 int8 weights).
constexpr int kPrefetchMdCsr = 2048, kPrefetchBitmap = 1024, kPrefetchI8 = 2048;
// A row's mean columns per MdCSR chunk up to which its window is 64 floats, then 96 (else 128).
constexpr int64_t kWindow64MaxSpan = 40, kWindow96MaxSpan = 60;

// ---- MdCSR against x's f32 copy ----
// Per group of 4 chunks (64 entries): one 64-byte load of their deltas and a saturating byte
// prefix sum inside each 128-bit lane (4 shift + add steps for 4 chunks, instead of 4 per chunk
// on dwords): byte i of lane j = min(255, column of entry i of chunk j - start_j), where start_j
// is the chunk's base, or (kAligned) its base rounded down to 16 floats, the shift (base & 15)
// being added to the chunk's first delta before the sum. If all 64 offsets of the group fit a
// window of 32 * NP floats (one compare for the group), each chunk takes the fast path: one vpermb
// spreads its 16 offsets to dword lanes, 2 * NP zmm loads of x at start_j (L1) and NP vpermt2ps
// + NP - 1 blends pick the 16 x values, and one FMA with the 16 int8 values widened to f32.
// Otherwise each chunk of the group chooses: a 64- or 128-float window, or, when an offset
// reaches 128 (a gap bridge), a vgatherdps from exact offsets.
// The window is chosen per row from its mean chunk span, so that the group check almost never
// fails: a mispredicted branch costs little when the arrays sit in L2, but from DRAM it stalls
// the loads queued behind it. At 70% sparsity the 64-float window with a per-chunk 128-float
// fallback ran at 11.4 GB/s per core L2-resident but 5.0 from DRAM; the branch-free 96-float
// window, 9.8 and 8.0 (notes-cpu-kernels.md).
// Reads 16 B values + 16 B deltas + 2 B base per chunk: 34 B per 16 stored entries.
struct MdCsrCtx {
  const float* xf;
  int64_t x_len;  // x.f32() is zero-padded to round_up(cols, 512) floats (matvec.h): windows may read to here
  const core::SparseLayout* s;
};

// Byte 4i of dword lane i <- byte 16j + i: chunk j's offsets as dword indices (the other bytes 0).
struct ChunkSpread {
  __m512i idx[4];
  ChunkSpread() {
    alignas(64) uint8_t b[4][64] = {};
    for (int j = 0; j < 4; ++j)
      for (int i = 0; i < 16; ++i) b[j][4 * i] = uint8_t(16 * j + i);
    for (int j = 0; j < 4; ++j) idx[j] = _mm512_load_si512(b[j]);
  }
};
constexpr __mmask64 kDwordLowBytes = 0x1111111111111111ull;

template <bool kAligned>
inline int64_t mdcsr_start(int64_t base) { return kAligned ? base & ~int64_t(15) : base; }

// Saturating prefix sums of n (1..4) chunks' offsets from chunk k (masked loads: nothing past
// the row's chunks is read).
template <bool kAligned>
inline __m512i mdcsr_scan(const core::SparseLayout& s, uint32_t k, uint32_t n) {
  const __mmask64 lm = n >= 4 ? ~__mmask64(0) : (__mmask64(1) << (16 * n)) - 1;
  __m512i sc = _mm512_maskz_loadu_epi8(lm, s.deltas + size_t(k) * kMdCsrChunk);
  if constexpr (kAligned) {
    // Bases as words [b0, 0, b1, 0, b2, 0, b3, 0], widened to qwords: qword 2j = b_j, so byte 16j
    // (chunk j's first delta) gets b_j & 15.
    const __m128i b = _mm_cvtepu16_epi32(_mm_maskz_loadu_epi16(__mmask8((1u << n) - 1), s.chunk_base + k));
    sc = _mm512_adds_epu8(sc, _mm512_and_si512(_mm512_cvtepu16_epi64(b), _mm512_set1_epi64(15)));
  }
  sc = _mm512_adds_epu8(sc, _mm512_bslli_epi128(sc, 1));
  sc = _mm512_adds_epu8(sc, _mm512_bslli_epi128(sc, 2));
  sc = _mm512_adds_epu8(sc, _mm512_bslli_epi128(sc, 4));
  return _mm512_adds_epu8(sc, _mm512_bslli_epi128(sc, 8));
}

// x at dword indices idx (each < 32 * NP) of the 32 * NP floats at xb; NP = 2, 3 or 4.
template <int NP>
inline __m512 mdcsr_pick(const float* xb, __m512i idx) {
  const __mmask16 b5 = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(32));
  const __m512 p0 = _mm512_permutex2var_ps(_mm512_loadu_ps(xb), idx, _mm512_loadu_ps(xb + 16));
  const __m512 p1 = _mm512_permutex2var_ps(_mm512_loadu_ps(xb + 32), idx, _mm512_loadu_ps(xb + 48));
  __m512 v = _mm512_mask_blend_ps(b5, p0, p1);
  if constexpr (NP >= 3) {
    __m512 hi = _mm512_permutex2var_ps(_mm512_loadu_ps(xb + 64), idx, _mm512_loadu_ps(xb + 80));
    if constexpr (NP == 4)
      hi = _mm512_mask_blend_ps(b5, hi, _mm512_permutex2var_ps(_mm512_loadu_ps(xb + 96), idx, _mm512_loadu_ps(xb + 112)));
    v = _mm512_mask_blend_ps(_mm512_test_epi32_mask(idx, _mm512_set1_epi32(64)), v, hi);
  }
  return v;
}

inline __m512 mdcsr_values(const core::SparseLayout& s, uint32_t c) {
  return _mm512_cvtepi32_ps(
      _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s.values + size_t(c) * kMdCsrChunk))));
}

// A window of 32 * NP floats at start, or at the end of x when that would pass it (columns <
// cols <= x_len, so they are all inside [x_len - 32 NP, x_len)).
template <int NP>
inline __m512 mdcsr_window(const MdCsrCtx& cx, __m512i idx, int64_t start) {
  if (start + 32 * NP > cx.x_len) [[unlikely]] {
    idx = _mm512_add_epi32(idx, _mm512_set1_epi32(int(start - (cx.x_len - 32 * NP))));
    start = cx.x_len - 32 * NP;
  }
  return mdcsr_pick<NP>(cx.xf + start, idx);
}

// x values of chunk c = k + J (its scanned offsets in lane J of sc), whatever its span.
template <int J, bool kAligned>
// wide, far: the bytes of sc >= 64, >= 128.
inline __m512 mdcsr_chunk_any(const MdCsrCtx& cx, const ChunkSpread& spread, __m512i sc, uint64_t wide,
                              uint64_t far, uint32_t c) {
  const int64_t base = cx.s->chunk_base[c];
  if ((far >> (16 * J) & 0xFFFF) == 0) {
    const __m512i idx = _mm512_maskz_permutexvar_epi8(kDwordLowBytes, spread.idx[J], sc);
    if ((wide >> (16 * J) & 0xFFFF) == 0) return mdcsr_window<2>(cx, idx, mdcsr_start<kAligned>(base));
    return mdcsr_window<4>(cx, idx, mdcsr_start<kAligned>(base));
  }
  // An offset >= 128: exact offsets (no saturation) from the deltas, 4 shift-and-add steps on
  // dwords, then a gather.
  const __m512i zero = _mm512_setzero_si512();
  __m512i d = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(cx.s->deltas + size_t(c) * kMdCsrChunk)));
  d = _mm512_add_epi32(d, _mm512_alignr_epi32(d, zero, 15));
  d = _mm512_add_epi32(d, _mm512_alignr_epi32(d, zero, 14));
  d = _mm512_add_epi32(d, _mm512_alignr_epi32(d, zero, 12));
  d = _mm512_add_epi32(d, _mm512_alignr_epi32(d, zero, 8));
  return _mm512_i32gather_ps(_mm512_add_epi32(d, _mm512_set1_epi32(int(base))), cx.xf, 4);
}

// The fast path for chunk J of a group: all offsets < 32 * NP and the window inside x.
template <int J, int NP, bool kAligned>
inline __m512 mdcsr_fast(const float* xf, const ChunkSpread& spread, __m512i sc, int64_t base) {
  return mdcsr_pick<NP>(xf + mdcsr_start<kAligned>(base), _mm512_maskz_permutexvar_epi8(kDwordLowBytes, spread.idx[J], sc));
}

// Sum over chunks [k, k1) of one row with windows of 32 * NP floats.
template <int NP, bool kAligned>
inline float mdcsr_row(const MdCsrCtx& cx, const ChunkSpread& spread, uint32_t k, uint32_t k1) {
  const core::SparseLayout& s = *cx.s;
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (; k + 4 <= k1; k += 4) {
    // (prefetch never faults, so running past the arrays' ends is harmless)
    _mm_prefetch(reinterpret_cast<const char*>(s.deltas + size_t(k) * kMdCsrChunk + kPrefetchMdCsr), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(s.values + size_t(k) * kMdCsrChunk + kPrefetchMdCsr), _MM_HINT_T0);
    const __m512i sc = mdcsr_scan<kAligned>(s, k, 4);
    const uint16_t* b = s.chunk_base + k;
    // Bases increase along a row, so if the last chunk's window ends inside x, all do.
    if (_mm512_cmpge_epu8_mask(sc, _mm512_set1_epi8(char(32 * NP))) == 0 &&
        mdcsr_start<kAligned>(b[3]) + 32 * NP <= cx.x_len) [[likely]] {
      a0 = _mm512_fmadd_ps(mdcsr_values(s, k), mdcsr_fast<0, NP, kAligned>(cx.xf, spread, sc, b[0]), a0);
      a1 = _mm512_fmadd_ps(mdcsr_values(s, k + 1), mdcsr_fast<1, NP, kAligned>(cx.xf, spread, sc, b[1]), a1);
      a2 = _mm512_fmadd_ps(mdcsr_values(s, k + 2), mdcsr_fast<2, NP, kAligned>(cx.xf, spread, sc, b[2]), a2);
      a3 = _mm512_fmadd_ps(mdcsr_values(s, k + 3), mdcsr_fast<3, NP, kAligned>(cx.xf, spread, sc, b[3]), a3);
    } else {
      const uint64_t wide = _mm512_cmpge_epu8_mask(sc, _mm512_set1_epi8(64)), far = _mm512_movepi8_mask(sc);
      a0 = _mm512_fmadd_ps(mdcsr_values(s, k), mdcsr_chunk_any<0, kAligned>(cx, spread, sc, wide, far, k), a0);
      a1 = _mm512_fmadd_ps(mdcsr_values(s, k + 1), mdcsr_chunk_any<1, kAligned>(cx, spread, sc, wide, far, k + 1), a1);
      a2 = _mm512_fmadd_ps(mdcsr_values(s, k + 2), mdcsr_chunk_any<2, kAligned>(cx, spread, sc, wide, far, k + 2), a2);
      a3 = _mm512_fmadd_ps(mdcsr_values(s, k + 3), mdcsr_chunk_any<3, kAligned>(cx, spread, sc, wide, far, k + 3), a3);
    }
  }
  if (k < k1) {  // the row's last 1-3 chunks
    const uint32_t n = k1 - k;
    const __m512i sc = mdcsr_scan<kAligned>(s, k, n);
    const uint64_t wide = _mm512_cmpge_epu8_mask(sc, _mm512_set1_epi8(64)), far = _mm512_movepi8_mask(sc);
    a0 = _mm512_fmadd_ps(mdcsr_values(s, k), mdcsr_chunk_any<0, kAligned>(cx, spread, sc, wide, far, k), a0);
    if (n > 1) a1 = _mm512_fmadd_ps(mdcsr_values(s, k + 1), mdcsr_chunk_any<1, kAligned>(cx, spread, sc, wide, far, k + 1), a1);
    if (n > 2) a2 = _mm512_fmadd_ps(mdcsr_values(s, k + 2), mdcsr_chunk_any<2, kAligned>(cx, spread, sc, wide, far, k + 2), a2);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}
#endif

}  // namespace

void rows_i8_row(const Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1) {
  const size_t stride = w.row_stride();
#if defined(PDVM_SPMV_AVX512)
  // The sign trick, not the biased weights of the bitmap kernel: with the arrays in L2 both run
  // at ~34.7 GB/s per core, but from DRAM with 2 threads the biased version (2 more loads per
  // group, from the per-call tables) reached only 20-24 GB/s against 29-33 for this one
  // (bench_spmv, Phi-4 shapes; notes-cpu-kernels.md).
  static const ScaleSpread sp;
  const int64_t full = w.cols / 64;
  const __mmask64 last = tail_mask(w.cols - 64 * full);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.data + size_t(r) * stride;
    const int8_t* q = reinterpret_cast<const int8_t*>(row + 4);
    float scale;
    std::memcpy(&scale, row, 4);
    // The tail group's masked load never reads past the row.
    const float dot = row_dot_groups_signed(w.cols, x, sp, [&](int64_t g) {
      _mm_prefetch(reinterpret_cast<const char*>(q + 64 * g + kPrefetchI8), _MM_HINT_T0);
      return g < full ? _mm512_loadu_si512(q + 64 * g) : _mm512_maskz_loadu_epi8(last, q + 64 * g);
    });
    y[r] = scale * dot;
  }
#else
  const float* xf = x.f32();
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.data + size_t(r) * stride;
    const int8_t* q = reinterpret_cast<const int8_t*>(row + 4);
    float scale;
    std::memcpy(&scale, row, 4);
    float sum = 0;
    for (int64_t c = 0; c < w.cols; ++c) sum += float(q[c]) * xf[c];
    y[r] = scale * sum;
  }
#endif
}

void rows_bitmap_i8(const Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1) {
  const core::SparseLayout& s = *w.sparse;
  const int64_t groups = formats::bitmap_groups(w.cols);
#if defined(PDVM_SPMV_AVX512)
  const __m512i c80 = _mm512_set1_epi8(char(0x80));
  const int8_t* values_end = s.values + s.row_ptr[w.rows];
  with_group_consts(x, groups, [&]<bool kTables>(const GroupConsts* k) {
    for (int64_t r = r0; r < r1; ++r) {
      const uint64_t* masks = s.masks + r * groups;
      const int8_t* v = s.values + s.row_ptr[r];
      // A plain 64-byte load of the group's packed values (a masked one only within 64 bytes of
      // the array's end, never past it), biased by the xor, then vpexpandb register-to-register
      // with 128 (weight 0) in the columns not kept. (vpexpandb with a memory operand is
      // microcoded on Zen 4: ~3x slower per group in bench_spmv.)
      const float dot = row_dot_groups<kTables>(groups, x, k, [&](int64_t g) {
        const uint64_t m = masks[g];
        const int n = std::popcount(m);
        _mm_prefetch(reinterpret_cast<const char*>(v + kPrefetchBitmap), _MM_HINT_T0);
        if ((g & 7) == 0) _mm_prefetch(reinterpret_cast<const char*>(masks + g + kPrefetchBitmap / 8), _MM_HINT_T0);
        const __m512i packed = values_end - v >= 64
                                   ? _mm512_loadu_si512(v)
                                   : _mm512_maskz_loadu_epi8(__mmask64(_bzhi_u64(~uint64_t(0), unsigned(n))), v);
        v += n;
        return _mm512_mask_expand_epi8(c80, __mmask64(m), _mm512_xor_si512(packed, c80));
      });
      y[r] = s.row_scale[r] * dot;
    }
  });
#else
  const float* xf = x.f32();
  for (int64_t r = r0; r < r1; ++r) {
    const uint64_t* masks = s.masks + r * groups;
    const int8_t* v = s.values + s.row_ptr[r];
    float sum = 0;
    for (int64_t g = 0; g < groups; ++g)
      for (uint64_t m = masks[g]; m != 0; m &= m - 1) sum += float(*v++) * xf[g * kBitmapGroup + std::countr_zero(m)];
    y[r] = s.row_scale[r] * sum;
  }
#endif
}

void rows_mdcsr(const Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1) {
  const core::SparseLayout& s = *w.sparse;
  const float* xf = x.f32();
#if defined(PDVM_SPMV_AVX512)
  const MdCsrCtx c{xf, (w.cols + 511) / 512 * 512, &s};
  static const ChunkSpread spread;
  for (int64_t r = r0; r < r1; ++r) {
    const uint32_t k0 = s.row_ptr[r], k1 = s.row_ptr[r + 1];
    // The window that holds nearly all of this row's chunks, from its mean chunk span (cols per
    // chunk; a chunk spans ~15/16 of that, +-20-30%, plus the 0-15 shift of an aligned window):
    // 50% sparsity gives ~32 columns per chunk -> 64 floats; 70% ~53 -> 96; 80% ~80 -> 128.
    const int64_t per_chunk = k1 > k0 ? w.cols / int64_t(k1 - k0) : 0;
    float dot;
    if (per_chunk <= kWindow64MaxSpan) dot = mdcsr_row<2, false>(c, spread, k0, k1);
    else if (per_chunk <= kWindow96MaxSpan) dot = mdcsr_row<3, true>(c, spread, k0, k1);
    else dot = mdcsr_row<4, true>(c, spread, k0, k1);
    y[r] = s.row_scale[r] * dot;
  }
#else
  for (int64_t r = r0; r < r1; ++r) {
    float sum = 0;
    for (uint32_t k = s.row_ptr[r]; k < s.row_ptr[r + 1]; ++k) {
      int64_t col = s.chunk_base[k];
      for (int i = 0; i < kMdCsrChunk; ++i) {
        const size_t e = size_t(k) * kMdCsrChunk + size_t(i);
        col += s.deltas[e];
        sum += float(s.values[e]) * xf[col];
      }
    }
    y[r] = s.row_scale[r] * sum;
  }
#endif
}

const char* spmv_isa() {
#if defined(PDVM_SPMV_AVX512)
  return "avx512-vbmi2";
#else
  return "scalar";
#endif
}

}  // namespace pdvm::cpu
