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
// One group of 64 int8 weights w against x's two-term int8 codes (x ~= s q + s/256 q_lo, see
// PreparedInput) for two blocks of 32 with fine scales xs[2g], xs[2g + 1] (= s / 256).
// vpdpbusd wants unsigned x signed: multiply |w| by x with w's sign; lanes 0-7 hold block 2g's
// partial sums, lanes 8-15 block 2g+1's, exact in int32 as 256 * dot(w, q) + dot(w, q_lo).
// Per group: ~11 instructions for 64 weights, under the ~20 B/cycle DRAM gives 2 cores.
inline __m512 group_dot(__m512i wv, const int8_t* xq, const int8_t* xq_lo, __m512 xscale, __m512 acc) {
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
inline float row_dot_groups(int64_t cols, const PreparedInput& x, const ScaleSpread& sp, Load load) {
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
      acc0 = group_dot(load(g), xq + 64 * g, xl + 64 * g, _mm512_permutexvar_ps(sp.idx[j], s16), acc0);
      acc1 = group_dot(load(g + 1), xq + 64 * (g + 1), xl + 64 * (g + 1),
                       _mm512_permutexvar_ps(sp.idx[j + 1], s16), acc1);
    }
    if (j < n) {
      const int64_t g = g0 + j;
      acc0 = group_dot(load(g), xq + 64 * g, xl + 64 * g, _mm512_permutexvar_ps(sp.idx[j], s16), acc0);
    }
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}
#endif

}  // namespace

void rows_i8_row(const Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1) {
  const size_t stride = w.row_stride();
#if defined(PDVM_SPMV_AVX512)
  static const ScaleSpread sp;
  const int64_t full = w.cols / 64;
  const __mmask64 last = tail_mask(w.cols - 64 * full);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.data + size_t(r) * stride;
    const int8_t* q = reinterpret_cast<const int8_t*>(row + 4);
    float scale;
    std::memcpy(&scale, row, 4);
    const float dot = row_dot_groups(w.cols, x, sp, [&](int64_t g) {
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
  static const ScaleSpread sp;
  for (int64_t r = r0; r < r1; ++r) {
    const uint64_t* masks = s.masks + r * groups;
    const int8_t* v = s.values + s.row_ptr[r];
    // A masked load of the group's popcount(mask) packed bytes (no read past the row's values),
    // then vpexpandb register-to-register. (vpexpandb with a memory operand is microcoded on
    // Zen 4: ~3x slower per group in bench_spmv.)
    const float dot = row_dot_groups(w.cols, x, sp, [&](int64_t g) {
      const uint64_t m = masks[g];
      const int n = std::popcount(m);
      const __m512i packed = _mm512_maskz_loadu_epi8(__mmask64(_bzhi_u64(~uint64_t(0), unsigned(n))), v);
      v += n;
      return _mm512_maskz_expand_epi8(__mmask64(m), packed);
    });
    y[r] = s.row_scale[r] * dot;
  }
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
  // Per chunk: widen the 16 deltas to int32 and prefix-sum them (4 shift-and-add steps): the
  // entries' column offsets from the chunk base. When they all fall in a 64-column window (the
  // common case up to ~70% sparsity: 16 entries span ~2-3 columns each), x's 64 floats there are
  // 4 loads from L1 and two vpermt2ps + a blend pick the 16 x values; otherwise a vgatherdps does
  // (Zen 4 gathers cost ~5x the permutes: the window path made MdCSR-50% ~4x faster). Then one
  // FMA with the 16 int8 values widened to f32.
  // x.f32() is zero-padded to round_up(cols, 512) floats (matvec.h), so the window may read up
  // to there; chunks whose window would pass it take the gather path.
  const __m512i zero = _mm512_setzero_si512();
  const __m512i k64 = _mm512_set1_epi32(64), k32 = _mm512_set1_epi32(32);
  const int64_t x_len = (w.cols + 511) / 512 * 512;
  for (int64_t r = r0; r < r1; ++r) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    uint32_t k = s.row_ptr[r];
    const uint32_t k1 = s.row_ptr[r + 1];
    auto chunk = [&](uint32_t c) {
      const size_t e = size_t(c) * kMdCsrChunk;
      __m512i d = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s.deltas + e)));
      d = _mm512_add_epi32(d, _mm512_alignr_epi32(d, zero, 15));
      d = _mm512_add_epi32(d, _mm512_alignr_epi32(d, zero, 14));
      d = _mm512_add_epi32(d, _mm512_alignr_epi32(d, zero, 12));
      d = _mm512_add_epi32(d, _mm512_alignr_epi32(d, zero, 8));
      const int64_t base = s.chunk_base[c];
      __m512 xv;
      if (_mm512_cmpge_epi32_mask(d, k64) == 0 && base + 64 <= x_len) {
        const float* xb = xf + base;
        const __m512 lo = _mm512_permutex2var_ps(_mm512_loadu_ps(xb), d, _mm512_loadu_ps(xb + 16));
        const __m512 hi = _mm512_permutex2var_ps(_mm512_loadu_ps(xb + 32), d, _mm512_loadu_ps(xb + 48));
        xv = _mm512_mask_blend_ps(_mm512_test_epi32_mask(d, k32), lo, hi);
      } else {
        xv = _mm512_i32gather_ps(_mm512_add_epi32(d, _mm512_set1_epi32(int(base))), xf, 4);
      }
      const __m512 wv = _mm512_cvtepi32_ps(
          _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s.values + e))));
      return _mm512_mul_ps(wv, xv);
    };
    for (; k + 1 < k1; k += 2) {
      acc0 = _mm512_add_ps(acc0, chunk(k));
      acc1 = _mm512_add_ps(acc1, chunk(k + 1));
    }
    if (k < k1) acc0 = _mm512_add_ps(acc0, chunk(k));
    y[r] = s.row_scale[r] * _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
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
