// SpMV / matvec kernels for the compressed formats (see spmv.h). The AVX-512 path needs
// VBMI2 (vpexpandb, for the bitmap format), VBMI (vpermt2b, for MdCSR) and VNNI (vpdpbusd); Zen 4
// and Ice Lake+ have all three.
// Without them a scalar path computes the same sums from x's f32 copy.
#include "cpu/spmv.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <utility>

#include "formats/bitmap_i8.h"
#include "formats/mdcsr.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__) && defined(__AVX512VBMI__) && \
    defined(__AVX512VBMI2__) && defined(__AVX512DQ__) && defined(__AVX512VL__)
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

// acc += x-scaled [256 dot(w, q) + dot(w, q_lo)] for one group of 64 biased weights wb against
// x's codes xv (q) and xl (q_lo) of that group.
inline __m512 group_dot_x(__m512i wb, __m512i xv, __m512i xl, __m512i corr, __m512 xscale, __m512 acc) {
  __m512i d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wb, xv);
  d = _mm512_dpbusd_epi32(_mm512_slli_epi32(d, 8), wb, xl);
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(d, corr)), xscale, acc);
}
inline __m512 group_dot(__m512i wb, const PreparedInput& x, int64_t g, __m512i corr, __m512 xscale, __m512 acc) {
  return group_dot_x(wb, _mm512_load_si512(x.q8() + 64 * g), _mm512_load_si512(x.q8_lo() + 64 * g), corr,
                     xscale, acc);
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

// kRows rows per pass over x (rows wider than kWideRowCols), as rows_dot_groups_signed does for int8
// rows: x's codes and the group constants are loaded once per group for all of them. `load[i](g)`
// returns row i's group g (each loader keeps its own cursor, so it is called once per group, in
// order; hence the array is taken by value). Results in d.
template <int kRows, bool kTables, typename Load>
inline void rows_dot_groups(int64_t groups, const PreparedInput& x, const GroupConsts* k,
                            std::array<Load, kRows> load, float (&d)[kRows]) {
  __m512 acc[kRows];
  for (int i = 0; i < kRows; ++i) acc[i] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    const __m512i xv = _mm512_load_si512(x.q8() + 64 * g), xl = _mm512_load_si512(x.q8_lo() + 64 * g);
    __m512i corr;
    __m512 sc;
    if constexpr (kTables) {
      corr = k->corr[g];
      sc = k->scale[g];
    } else {
      corr = group_corr(x, g);
      sc = group_scale(x, g);
    }
    for (int i = 0; i < kRows; ++i) acc[i] = group_dot_x(load[i](g), xv, xl, corr, sc, acc[i]);
  }
  for (int i = 0; i < kRows; ++i) d[i] = _mm512_reduce_add_ps(acc[i]);
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
inline __m512 group_dot_signed_x(__m512i wv, __m512i xv, __m512i xl, __m512 xscale, __m512 acc) {
  const __m512i zero = _mm512_setzero_si512();
  const __mmask64 neg = _mm512_movepi8_mask(wv);
  const __m512i wabs = _mm512_abs_epi8(wv);
  const __m512i xs = _mm512_mask_sub_epi8(xv, neg, zero, xv);
  const __m512i xsl = _mm512_mask_sub_epi8(xl, neg, zero, xl);
  __m512i dot = _mm512_slli_epi32(_mm512_dpbusd_epi32(zero, wabs, xs), 8);
  dot = _mm512_dpbusd_epi32(dot, wabs, xsl);
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), xscale, acc);
}
inline __m512 group_dot_signed(__m512i wv, const int8_t* xq, const int8_t* xq_lo, __m512 xscale, __m512 acc) {
  return group_dot_signed_x(wv, _mm512_load_si512(xq), _mm512_load_si512(xq_lo), xscale, acc);
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

// kRows rows per pass over x (rows wider than kWideRowCols): x's codes are loaded once per group
// for all of them, dividing their traffic by kRows when they no longer fit L1. Results in d.
template <int kRows, typename Load>
inline void rows_dot_groups_signed(int64_t cols, const PreparedInput& x, const ScaleSpread& sp,
                                   const std::array<Load, kRows>& load, float (&d)[kRows]) {
  const int8_t* xq = x.q8();
  const int8_t* xl = x.q8_lo();
  const float* xsc = x.q8_fine_scale();
  const int64_t groups = formats::bitmap_groups(cols);
  __m512 acc[kRows];
  for (int i = 0; i < kRows; ++i) acc[i] = _mm512_setzero_ps();
  for (int64_t g0 = 0; g0 < groups; g0 += 8) {
    const __m512 s16 = _mm512_load_ps(xsc + 2 * g0);  // padded: never past the array
    const int64_t n = std::min<int64_t>(8, groups - g0);
    for (int64_t j = 0; j < n; ++j) {
      const int64_t g = g0 + j;
      const __m512i xv = _mm512_load_si512(xq + 64 * g), xlv = _mm512_load_si512(xl + 64 * g);
      const __m512 sc = _mm512_permutexvar_ps(sp.idx[j], s16);
      for (int i = 0; i < kRows; ++i) acc[i] = group_dot_signed_x(load[i](g), xv, xlv, sc, acc[i]);
    }
  }
  for (int i = 0; i < kRows; ++i) d[i] = _mm512_reduce_add_ps(acc[i]);
}

// Software prefetch distance in bytes, per stream. The hardware prefetcher alone left each core
// 15-25% under its L2-resident rate when the arrays came from DRAM (1-thread bench cases, GB/s by
// CPU time): MdCSR 50% 9.2 -> 11, 70% 7.9 -> 9.2; bitmap 50% 11 -> 13.4; int8 rows 13.3 -> 15.9.
// 1-4 KB measured alike; one prefetch per 64 bytes consumed (per group of 4 chunks, per bitmap
// group, per 64 int8 weights).
constexpr int kPrefetchMdCsr = 2048, kPrefetchBitmap = 1024, kPrefetchI8 = 2048;
// Rows wider than this keep x's codes (2 B per column: 35 KB at Phi-4 down's 17920) out of the
// 32 KB L1 once the weight stream passes through it: int8 rows (and dense-enough bitmap rows) then
// run kWideRowsPerPass rows per pass over x (then 2, then 1 for the rest), and MdCSR prefetches
// its streams into L2 only (MdCsrCtx::prefetch_to_l2). bench_spmv, down 5120x17920, alternating builds
// (2026-11-25 00:20-00:25 UTC, load 0.1-1.1): 2 threads 18.6-26.1 GB/s with 2 rows per pass, 21.3-27.0
// with 4, 26.0-30.9 with 8; 1 thread from DRAM 11.8-14.1 -> 18.5-19.2 with 8, 15.2-18.7 with 16
// (whose L2-resident rate drops, 37 -> 23-35 GB/s). On the 5120-column shapes two rows per pass
// lost (20-22 against 26-34 GB/s), so narrower rows keep one.
constexpr int64_t kWideRowCols = 8192;
constexpr int kWideRowsPerPass = 8;

// bitmap_i8 takes the same passes on wide rows when at least this fraction of weights is kept:
// down 5120x17920, 2 threads (00:40-00:42 UTC, alternating builds, noisy: ceiling 26-48 GB/s)
// 30% sparsity 16.0-18.6 -> 24.1-25.1 GB/s, 50% 15.0-16.8 -> 16.3-21.5, 70% 14.4-15.6 -> 11.1-16.4,
// 80% 10.6-13.6 -> 8.3-12.9: at high sparsity the 8 rows' cursors and masks cost more than x's
// traffic saves.
constexpr double kBitmapWideMinDensity = 0.4;

// Rows [r, r1) of a wide matrix in passes of kWideRowsPerPass rows, then of 2;
// `pass.template operator()<kRows>(row)` computes rows row .. row + kRows - 1. r ends at the
// first row left over, for the caller's one-row loop.
template <typename Pass>
inline void wide_row_passes(int64_t& r, int64_t r1, Pass pass) {
  auto run = [&]<int kRows>(std::integral_constant<int, kRows>) {
    for (; r + kRows <= r1; r += kRows) pass.template operator()<kRows>(r);
  };
  run(std::integral_constant<int, kWideRowsPerPass>{});
  run(std::integral_constant<int, 2>{});
}

// {make(row), make(row + 1), ..., make(row + kRows - 1)}: one group loader per row of a pass.
template <int kRows, typename Make>
inline auto row_loaders(int64_t row, Make make) {
  return [&]<size_t... I>(std::index_sequence<I...>) {
    return std::array{make(row + int64_t(I))...};
  }(std::make_index_sequence<kRows>{});
}

// How many MdCSR chunks share a 128-column window: formats::mdcsr_window_chunks, from the row's
// mean columns per chunk: 4 up to 26 (4 chunks span ~63/16 of the mean +- a few columns: 30%
// sparsity, ~23 per chunk, never fails), 2 up to 60 (pairs span ~31/16 of it: 50%, ~32, never
// fails; 70%, ~53, failed for ~6% of random pairs, whose group then took one window per chunk
// after a mispredicted branch: per core 22 GB/s L2-resident (15 with one window per chunk), 13-14
// from DRAM, ~19 without the misses), else 1 (80%, ~80). Branch-free ways around the misses cost
// more than they saved (notes-cpu-kernels.md); the encoder now keeps the groups inside their
// windows instead (formats/mdcsr.h), so the fallback is for other encoders' files and rare rows.

// ---- MdCSR against x's whole-vector int16 codes ----
// x[c] ~= S (256 hi[c] + lo[c]), hi/lo stored as unsigned bytes biased by 128 (PreparedInput::
// x16_hi/lo): a 128-column window of each is 2 zmm, and one vpermt2b picks 64 bytes from it, i.e.
// 4 chunks' x at once when the chunks share the window. The f32 kernel this replaces needed
// 2-3 vpermt2ps + blends + 4-6 zmm loads PER CHUNK and vpmovsxbd + convert + FMA for the values;
// here the 64 values of 4 chunks go into 3 vpdpbusd as they are (u8 x codes by s8 values):
//   A_h += (hi + 128) w,  A_l += (lo + 128) w,  A_s += w   (per dword lane, int32)
//   sum_e w_e v_e = 256 (A_h - 128 A_s) + (A_l - 128 A_s), exact in integers; y = scale S sum.
// Every 32-column block of x shares the one scale S, so a lane may mix columns from any blocks;
// the price is precision: |error of x| <= S/2 = max|x| / 65278 (the f32 kernel was exact in x;
// the int8 formats' per-block two-term x is within 1/65024 of each block's own max).
// Per group of 4 chunks (64 entries): one 64-byte load of their deltas and a saturating byte
// prefix sum inside each 128-bit lane (4 shift + add steps): byte i of lane j = min(255, column of
// entry i of chunk j - base_j); chunks sharing a window get base_j - (window's first base) added
// (saturating). If every byte is < 128 (one test for the group), each window is 2 + 2 loads and 2
// vpermt2b, merged with lane blends. Otherwise each chunk takes its own window (the same test on
// the unshifted offsets), and in the rare group where that fails too, a chunk with
// an offset >= 128 (a gap bridge, or a very sparse row) is gathered from x's f32 copy instead
// (an f32 accumulator; its lanes in the byte picks are left at the code of 0).
// Reads 16 B values + 16 B deltas + 2 B base per chunk: 34 B per 16 stored entries; 2 integer
// multiply-adds per entry (2 FLOP-equivalents) plus one for the value sums.
struct MdCsrCtx {
  const uint8_t* xh;  // x16_hi: padded past cols by >= 128 bytes, so any window at a column < cols fits
  const uint8_t* xl;  // x16_lo
  const float* xf;    // f32 copy, for the gathered chunks
  const core::SparseLayout* s;
  // Rows wider than kWideRowCols: x's codes (2 B per column) take more than half of the 32 KB L1,
  // so the streams are prefetched into L2 only and L1 is left to x. Phi-4 down (17920 columns),
  // 2 threads: 50% 22.4-27.4 -> 25.8-30.0 GB/s, 70% 14.8-22.3 -> 20.2-23.2 (five interleaved
  // rounds, 21:01-21:04, load 1.3-1.5); at 5120 columns the same hint lost (50%: 12.8-15.3 vs
  // 19.1-19.8 GB/s, 1 thread), so narrower rows keep prefetching into L1.
  bool prefetch_to_l2;
};

// Saturating prefix sums of n (1..4) chunks' offsets from chunk k (masked loads: nothing past
// the row's chunks is read). Byte i of lane j: min(255, col of entry i of chunk k+j - its base).
inline __m512i mdcsr_scan(const core::SparseLayout& s, uint32_t k, uint32_t n) {
  const __mmask64 lm = n >= 4 ? ~__mmask64(0) : (__mmask64(1) << (16 * n)) - 1;
  __m512i sc = _mm512_maskz_loadu_epi8(lm, s.deltas + size_t(k) * kMdCsrChunk);
  sc = _mm512_adds_epu8(sc, _mm512_bslli_epi128(sc, 1));
  sc = _mm512_adds_epu8(sc, _mm512_bslli_epi128(sc, 2));
  sc = _mm512_adds_epu8(sc, _mm512_bslli_epi128(sc, 4));
  return _mm512_adds_epu8(sc, _mm512_bslli_epi128(sc, 8));
}

// Byte i <- byte i / 16: spreads 4 bytes over the 4 128-bit lanes.
inline __m512i lane_of_byte() {
  return _mm512_set_epi64(0x0303030303030303ll, 0x0303030303030303ll, 0x0202020202020202ll, 0x0202020202020202ll,
                          0x0101010101010101ll, 0x0101010101010101ll, 0, 0);
}

// Lane j: min(255, base_j - base of the first chunk of j's window), G chunks per window.
template <int G>
inline __m512i mdcsr_window_shift(const uint16_t* b) {
  const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b));
  const __m128i first = G == 2 ? _mm_shufflelo_epi16(v, _MM_SHUFFLE(2, 2, 0, 0)) : _mm_shufflelo_epi16(v, 0);
  const __m128i d = _mm_cvtusepi16_epi8(_mm_sub_epi16(v, first));  // bases increase: u16 differences
  return _mm512_permutexvar_epi8(lane_of_byte(), _mm512_castsi128_si512(d));
}

// x's two code bytes at byte indices idx (each < 128) of the 128-column window at start.
inline void mdcsr_pick(const MdCsrCtx& cx, int64_t start, __m512i idx, __m512i& h, __m512i& l) {
  h = _mm512_permutex2var_epi8(_mm512_loadu_si512(cx.xh + start), idx, _mm512_loadu_si512(cx.xh + start + 64));
  l = _mm512_permutex2var_epi8(_mm512_loadu_si512(cx.xl + start), idx, _mm512_loadu_si512(cx.xl + start + 64));
}

constexpr __mmask64 kLane1 = 0xFFFFull << 16, kLane3 = 0xFFFFull << 48, kLanes23 = 0xFFFFFFFFull << 32;

// The fast path: sc (window-relative offsets) all < 128.
template <int G>
inline void mdcsr_group_fast(const MdCsrCtx& cx, const uint16_t* b, __m512i sc, __m512i& h, __m512i& l) {
  if constexpr (G == 4) {
    mdcsr_pick(cx, b[0], sc, h, l);
  } else if constexpr (G == 2) {
    __m512i h0, l0, h1, l1;
    mdcsr_pick(cx, b[0], sc, h0, l0);
    mdcsr_pick(cx, b[2], sc, h1, l1);
    h = _mm512_mask_blend_epi8(kLanes23, h0, h1);
    l = _mm512_mask_blend_epi8(kLanes23, l0, l1);
  } else {
    __m512i h0, l0, h1, l1, h2, l2, h3, l3;
    mdcsr_pick(cx, b[0], sc, h0, l0);
    mdcsr_pick(cx, b[1], sc, h1, l1);
    mdcsr_pick(cx, b[2], sc, h2, l2);
    mdcsr_pick(cx, b[3], sc, h3, l3);
    h = _mm512_mask_blend_epi8(kLanes23, _mm512_mask_blend_epi8(kLane1, h0, h1), _mm512_mask_blend_epi8(kLane3, h2, h3));
    l = _mm512_mask_blend_epi8(kLanes23, _mm512_mask_blend_epi8(kLane1, l0, l1), _mm512_mask_blend_epi8(kLane3, l2, l3));
  }
}

// Chunks k .. k+n-1 (n <= 4) one by one, from their own offsets sc0 (relative to their bases):
// a 128-column window each, or, with an offset >= 128, a gather from x's f32 copy into af (its
// lanes in h, l keep the code of 0: 128).
inline void mdcsr_group_slow(const MdCsrCtx& cx, uint32_t k, uint32_t n, __m512i sc0, __m512i& h, __m512i& l,
                             __m512& af) {
  const core::SparseLayout& s = *cx.s;
  const uint64_t far = _mm512_movepi8_mask(sc0);
  h = l = _mm512_set1_epi8(char(0x80));
  for (uint32_t j = 0; j < n; ++j) {
    const uint32_t c = k + j;
    const int64_t base = s.chunk_base[c];
    if ((far >> (16 * j) & 0xFFFF) == 0) {
      __m512i ph, pl;
      mdcsr_pick(cx, base, sc0, ph, pl);
      const __mmask64 lane = 0xFFFFull << (16 * j);
      h = _mm512_mask_blend_epi8(lane, h, ph);
      l = _mm512_mask_blend_epi8(lane, l, pl);
      continue;
    }
    // Exact offsets (no saturation) from the deltas, 4 shift-and-add steps on dwords, then a gather.
    const __m512i zero = _mm512_setzero_si512();
    __m512i d = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s.deltas + size_t(c) * kMdCsrChunk)));
    d = _mm512_add_epi32(d, _mm512_alignr_epi32(d, zero, 15));
    d = _mm512_add_epi32(d, _mm512_alignr_epi32(d, zero, 14));
    d = _mm512_add_epi32(d, _mm512_alignr_epi32(d, zero, 12));
    d = _mm512_add_epi32(d, _mm512_alignr_epi32(d, zero, 8));
    const __m512 xv = _mm512_i32gather_ps(_mm512_add_epi32(d, _mm512_set1_epi32(int(base))), cx.xf, 4);
    const __m512 wv = _mm512_cvtepi32_ps(
        _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s.values + size_t(c) * kMdCsrChunk))));
    af = _mm512_fmadd_ps(wv, xv, af);
  }
}

// Sum over chunks [k, k1) of one row, G chunks per window, in units of the row's scale.
template <int G>
inline float mdcsr_row(const MdCsrCtx& cx, float x_scale, uint32_t k, uint32_t k1) {
  const core::SparseLayout& s = *cx.s;
  const __m512i ones = _mm512_set1_epi8(1);
  __m512i ah = _mm512_setzero_si512(), al = ah, as = ah;
  __m512 af = _mm512_setzero_ps();
  // Software-pipelined by one group: the next group's offsets (and so its window test) are
  // computed before this group's picks, so a mispredicted test resolves early. Per core, 1 thread,
  // two interleaved rounds (21:22-21:26, load 1.4-2.7): 70% from DRAM 13.3-13.9 -> 14.4-14.6 GB/s
  // (5120 columns), 10.6-11.6 -> 11.5-12.4 (17920); L2-resident 70% 18.8-22.0 -> 22.6-22.8.
  __m512i sc0 = _mm512_setzero_si512(), sc = sc0;
  if (k + 4 <= k1) {
    sc0 = mdcsr_scan(s, k, 4);
    sc = sc0;
    if constexpr (G > 1) sc = _mm512_adds_epu8(sc0, mdcsr_window_shift<G>(s.chunk_base + k));
  }
  for (; k + 4 <= k1; k += 4) {
    // (prefetch never faults, so running past the arrays' ends is harmless)
    const char* pd = reinterpret_cast<const char*>(s.deltas + size_t(k) * kMdCsrChunk + kPrefetchMdCsr);
    const char* pv = reinterpret_cast<const char*>(s.values + size_t(k) * kMdCsrChunk + kPrefetchMdCsr);
    if (cx.prefetch_to_l2) {
      _mm_prefetch(pd, _MM_HINT_T2);
      _mm_prefetch(pv, _MM_HINT_T2);
    } else {
      _mm_prefetch(pd, _MM_HINT_T0);
      _mm_prefetch(pv, _MM_HINT_T0);
    }
    const uint16_t* b = s.chunk_base + k;
    const __m512i cur0 = sc0, cur = sc;
    const uint64_t bad = _mm512_movepi8_mask(cur), bad0 = _mm512_movepi8_mask(cur0);
    if (k + 8 <= k1) {
      sc0 = mdcsr_scan(s, k + 4, 4);
      sc = sc0;
      if constexpr (G > 1) sc = _mm512_adds_epu8(sc0, mdcsr_window_shift<G>(b + 4));
    }
    __m512i h, l;
    if (bad == 0) [[likely]] mdcsr_group_fast<G>(cx, b, cur, h, l);
    else if (G > 1 && bad0 == 0) mdcsr_group_fast<1>(cx, b, cur0, h, l);
    else mdcsr_group_slow(cx, k, 4, cur0, h, l, af);
    const __m512i wv = _mm512_loadu_si512(s.values + size_t(k) * kMdCsrChunk);
    ah = _mm512_dpbusd_epi32(ah, h, wv);
    al = _mm512_dpbusd_epi32(al, l, wv);
    as = _mm512_dpbusd_epi32(as, ones, wv);
  }
  if (k < k1) {  // the row's last 1-3 chunks (masked loads: values past them read as 0)
    const uint32_t n = k1 - k;
    __m512i h, l;
    mdcsr_group_slow(cx, k, n, mdcsr_scan(s, k, n), h, l, af);
    const __m512i wv = _mm512_maskz_loadu_epi8((__mmask64(1) << (16 * n)) - 1, s.values + size_t(k) * kMdCsrChunk);
    ah = _mm512_dpbusd_epi32(ah, h, wv);
    al = _mm512_dpbusd_epi32(al, l, wv);
    as = _mm512_dpbusd_epi32(as, ones, wv);
  }
  // A_h - 128 A_s = sum w hi, A_l - 128 A_s = sum w lo: each |.| <= 128 * 128 per stored entry,
  // so the int32 lane sums hold up to 2^17 entries (a row has at most 65536 columns).
  const __m512i a7 = _mm512_slli_epi32(as, 7);
  const int64_t hi = _mm512_reduce_add_epi32(_mm512_sub_epi32(ah, a7));
  const int64_t lo = _mm512_reduce_add_epi32(_mm512_sub_epi32(al, a7));
  return float(double(x_scale) * double(256 * hi + lo) + double(_mm512_reduce_add_ps(af)));
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
  int64_t r = r0;
  if (w.cols > kWideRowCols) {
    auto load = [&](int64_t row) {
      const int8_t* q = reinterpret_cast<const int8_t*>(w.data + size_t(row) * stride + 4);
      return [q, full, last](int64_t g) {
        _mm_prefetch(reinterpret_cast<const char*>(q + 64 * g + kPrefetchI8), _MM_HINT_T0);
        return g < full ? _mm512_loadu_si512(q + 64 * g) : _mm512_maskz_loadu_epi8(last, q + 64 * g);
      };
    };
    wide_row_passes(r, r1, [&]<int kRows>(int64_t row) {
      float d[kRows];
      rows_dot_groups_signed<kRows>(w.cols, x, sp, row_loaders<kRows>(row, load), d);
      for (int i = 0; i < kRows; ++i) {
        float scale;
        std::memcpy(&scale, w.data + size_t(row + i) * stride, 4);
        y[row + i] = scale * d[i];
      }
    });
  }
  for (; r < r1; ++r) {
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
  // Row r's loader: group g's 64 biased weights, advancing the row's value cursor; called once
  // per group, in order. A plain 64-byte load of the group's packed values (a masked one only
  // within 64 bytes of the array's end, never past it), biased by the xor, then vpexpandb
  // register-to-register with 128 (weight 0) in the columns not kept. (vpexpandb with a memory
  // operand is microcoded on Zen 4: ~3x slower per group in bench_spmv.)
  auto row_loader = [&](int64_t r) {
    return [masks = s.masks + r * groups, v = s.values + s.row_ptr[r], values_end, c80](int64_t g) mutable {
      const uint64_t m = masks[g];
      const int n = std::popcount(m);
      _mm_prefetch(reinterpret_cast<const char*>(v + kPrefetchBitmap), _MM_HINT_T0);
      if ((g & 7) == 0) _mm_prefetch(reinterpret_cast<const char*>(masks + g + kPrefetchBitmap / 8), _MM_HINT_T0);
      const __m512i packed = values_end - v >= 64
                                 ? _mm512_loadu_si512(v)
                                 : _mm512_maskz_loadu_epi8(__mmask64(_bzhi_u64(~uint64_t(0), unsigned(n))), v);
      v += n;
      return _mm512_mask_expand_epi8(c80, __mmask64(m), _mm512_xor_si512(packed, c80));
    };
  };
  with_group_consts(x, groups, [&]<bool kTables>(const GroupConsts* k) {
    int64_t r = r0;
    const double density = double(s.row_ptr[w.rows]) / (double(w.rows) * double(w.cols));
    if (w.cols > kWideRowCols && density >= kBitmapWideMinDensity) {
      wide_row_passes(r, r1, [&]<int kRows>(int64_t row) {
        float d[kRows];
        rows_dot_groups<kRows, kTables>(groups, x, k, row_loaders<kRows>(row, row_loader), d);
        for (int i = 0; i < kRows; ++i) y[row + i] = s.row_scale[row + i] * d[i];
      });
    }
    for (; r < r1; ++r) y[r] = s.row_scale[r] * row_dot_groups<kTables>(groups, x, k, row_loader(r));
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
  const MdCsrCtx c{x.x16_hi(), x.x16_lo(), xf, &s, w.cols > kWideRowCols};
  const float x_scale = x.x16_scale();
  for (int64_t r = r0; r < r1; ++r) {
    const uint32_t k0 = s.row_ptr[r], k1 = s.row_ptr[r + 1];
    // How many chunks share a window, from the row's mean chunk span (cols per chunk).
    const int share = formats::mdcsr_window_chunks(w.cols, int64_t(k1 - k0));
    float dot;
    if (share == 4) dot = mdcsr_row<4>(c, x_scale, k0, k1);
    else if (share == 2) dot = mdcsr_row<2>(c, x_scale, k0, k1);
    else dot = mdcsr_row<1>(c, x_scale, k0, k1);
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
