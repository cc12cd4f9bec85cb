// Per-type single-thread row kernels for matvec, and the quantization of x to int8 blocks.
// Quantized types: int8 x int8/uint8 dot products per block of 32 (AVX-512 VNNI vpdpbusd on
// 256-bit vectors, or AVX2 maddubs+madd), scaled in f32; the constant offsets of Q4_0/Q4_1/Q4_K/
// Q6_K are folded in through x's scaled block sums, so the inner loop multiplies raw codes.
// Float types: f32 FMA against the f32 copy of x (exact but for summation order).
// Every SIMD path has a scalar twin (built when the ISA macros are absent) computing the same sums.
#include "cpu/matvec_kernels.h"
#include "cpu/spmv.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "core/half.h"
#include "formats/quant_blocks.h"
#include "pdvm/status.h"

// GCC 12.2 -O3 reports -Wmaybe-uninitialized inside its own AVX-512 intrinsic headers (the
// _mm512_undefined_* placeholders, GCC PR 105593); silence it for those headers only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#if defined(__F16C__) || defined(__AVX2__)
#include <immintrin.h>
#endif
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define PDVM_MATVEC_SIMD 1
#endif

namespace pdvm::cpu::detail {
namespace {

using core::Matrix;
using core::WeightType;
using formats::BlockQ4_0;
using formats::BlockQ4_1;
using formats::BlockQ4_K;
using formats::BlockQ6_K;
using formats::BlockQ8_0;
using formats::kQK;
using formats::kQK_K;

inline float h2f(uint16_t h) {
#if defined(__F16C__)
  return _cvtsh_ss(h);
#else
  return core::f16_to_f32(h);
#endif
}

template <typename Block>
inline const Block* row_blocks(const Matrix& w, int64_t r) {
  return reinterpret_cast<const Block*>(w.row(r));
}

// Q4_K: the 8 six-bit scales and mins of one super-block.
inline void q4_k_scales(const BlockQ4_K& b, uint8_t* sc, uint8_t* mn) {
  for (int j = 0; j < 8; ++j) formats::q4_k_scale_min(j, b.scales, &sc[j], &mn[j]);
}

#if defined(PDVM_MATVEC_SIMD)
// ---------------------------------------------------------------------------------------------
// SIMD kernels. A block of 32 codes is one 256-bit vector; dot_u8s8 returns its dot product with
// 32 int8 x values as 8 int32 partial sums (lane k: bytes 4k..4k+3), converted and scaled in f32.

inline __m256i dot_u8s8(__m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
  // u <= 128 and |s| <= 127: the pairwise int16 sums (<= 32512) never saturate.
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline __m256i load_x(const int8_t* xq, int64_t block) {
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(xq + block * kQK));
}

// 16 bytes of packed nibbles -> 32 codes: low nibbles (weights 0..15) then high (16..31).
inline __m256i unpack_nibbles16(const uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

inline __m256 fma_block(__m256i dot, float scale, __m256 acc) {
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(scale), acc);
}

// Rows are processed two at a time: two independent load streams and dependency chains per
// thread, and each x block loaded once for both rows. (Superseded by rows_q8_0_zmm where AVX-512
// VNNI is built; kept for AVX2-only builds.)
[[maybe_unused]] void rows_q8_0(const Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1) {
  const int64_t nb = w.cols / kQK;
  const int8_t* xq = x.q8();
  const float* xs = x.q8_scale();
  int64_t r = r0;
  for (; r + 1 < r1; r += 2) {
    const BlockQ8_0* a = row_blocks<BlockQ8_0>(w, r);
    const BlockQ8_0* b = row_blocks<BlockQ8_0>(w, r + 1);
    __m256 acc_a = _mm256_setzero_ps(), acc_b = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; ++i) {
      const __m256i xv = load_x(xq, i);
      const __m256i wa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[i].qs));
      const __m256i wb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].qs));
      // vpdpbusd multiplies unsigned by signed: |w| times x carrying w's sign.
      acc_a = fma_block(dot_u8s8(_mm256_sign_epi8(wa, wa), _mm256_sign_epi8(xv, wa)),
                        h2f(a[i].d) * xs[i], acc_a);
      acc_b = fma_block(dot_u8s8(_mm256_sign_epi8(wb, wb), _mm256_sign_epi8(xv, wb)),
                        h2f(b[i].d) * xs[i], acc_b);
    }
    y[r] = hsum(acc_a);
    y[r + 1] = hsum(acc_b);
  }
  for (; r < r1; ++r) {
    const BlockQ8_0* a = row_blocks<BlockQ8_0>(w, r);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; ++i) {
      const __m256i xv = load_x(xq, i);
      const __m256i wa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[i].qs));
      acc = fma_block(dot_u8s8(_mm256_sign_epi8(wa, wa), _mm256_sign_epi8(xv, wa)),
                      h2f(a[i].d) * xs[i], acc);
    }
    y[r] = hsum(acc);
  }
}

// Q4_0 / Q4_1: sum_blocks d * xs * dot(codes, xq) + offset * (xs * sum xq), offset -8d or m.
template <typename Block>
inline void q4_block(const Block& b, const int8_t* xq, const float* xs, const float* xsum,
                     int64_t i, __m256& acc, float& corr) {
  const float d = h2f(b.d);
  acc = fma_block(dot_u8s8(unpack_nibbles16(b.qs), load_x(xq, i)), d * xs[i], acc);
  if constexpr (std::is_same_v<Block, BlockQ4_1>) {
    corr += h2f(b.m) * xsum[i];
  } else {
    corr -= 8.0f * d * xsum[i];
  }
}

template <typename Block>
void rows_q4(const Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1) {
  const int64_t nb = w.cols / kQK;
  const int8_t* xq = x.q8();
  const float* xs = x.q8_scale();
  const float* xsum = x.q8_scaled_sum32();
  int64_t r = r0;
  for (; r + 1 < r1; r += 2) {
    const Block* a = row_blocks<Block>(w, r);
    const Block* b = row_blocks<Block>(w, r + 1);
    __m256 acc_a = _mm256_setzero_ps(), acc_b = _mm256_setzero_ps();
    float corr_a = 0.0f, corr_b = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
      q4_block(a[i], xq, xs, xsum, i, acc_a, corr_a);
      q4_block(b[i], xq, xs, xsum, i, acc_b, corr_b);
    }
    y[r] = hsum(acc_a) + corr_a;
    y[r + 1] = hsum(acc_b) + corr_b;
  }
  for (; r < r1; ++r) {
    const Block* a = row_blocks<Block>(w, r);
    __m256 acc = _mm256_setzero_ps();
    float corr = 0.0f;
    for (int64_t i = 0; i < nb; ++i) q4_block(a[i], xq, xs, xsum, i, acc, corr);
    y[r] = hsum(acc) + corr;
  }
}

void rows_q4_k(const Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1) {
  const int64_t nb = w.cols / kQK_K;
  const int8_t* xq = x.q8();
  const float* xs = x.q8_scale();
  const float* xsum = x.q8_scaled_sum32();
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  for (int64_t r = r0; r < r1; ++r) {
    const BlockQ4_K* blocks = row_blocks<BlockQ4_K>(w, r);
    __m256 acc = _mm256_setzero_ps();
    float corr = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
      const BlockQ4_K& b = blocks[i];
      const float d = h2f(b.d), dmin = h2f(b.dmin);
      uint8_t sc[8], mn[8];
      q4_k_scales(b, sc, mn);
      // 4 groups of 32 bytes: low nibbles are sub-block 2g, high nibbles sub-block 2g+1.
      for (int g = 0; g < 4; ++g) {
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * g));
        const int64_t j = i * 8 + 2 * g;
        acc = fma_block(dot_u8s8(_mm256_and_si256(q, m4), load_x(xq, j)), d * sc[2 * g] * xs[j],
                        acc);
        acc = fma_block(dot_u8s8(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), load_x(xq, j + 1)),
                        d * sc[2 * g + 1] * xs[j + 1], acc);
        corr += dmin * (float(mn[2 * g]) * xsum[j] + float(mn[2 * g + 1]) * xsum[j + 1]);
      }
    }
    y[r] = hsum(acc) - corr;
  }
}

void rows_q6_k(const Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1) {
  const int64_t nb = w.cols / kQK_K;
  const int8_t* xq = x.q8();
  const float* xs = x.q8_scale();
  const float* xsum16 = x.q8_scaled_sum16();
  const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
  for (int64_t r = r0; r < r1; ++r) {
    const BlockQ6_K* blocks = row_blocks<BlockQ6_K>(w, r);
    __m256 acc = _mm256_setzero_ps();
    float corr = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
      const BlockQ6_K& b = blocks[i];
      const float d = h2f(b.d);
      for (int h = 0; h < 2; ++h) {
        const uint8_t* ql = b.ql + 64 * h;
        const int8_t* sc = b.scales + 8 * h;
        const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
        const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
        const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * h));
        // 4 runs of 32 six-bit codes (0..63): low 4 bits from ql nibbles, top 2 from qh pairs.
        __m256i q[4];
        q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
                               _mm256_and_si256(_mm256_slli_epi16(hb, 4), m30));
        q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                               _mm256_and_si256(_mm256_slli_epi16(hb, 2), m30));
        q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                               _mm256_and_si256(hb, m30));
        q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                               _mm256_and_si256(_mm256_srli_epi16(hb, 2), m30));
        for (int k = 0; k < 4; ++k) {
          const int64_t j = i * 8 + h * 4 + k;  // x block of this run
          // Lanes 0-3 hold codes 0..15 (scale sc[2k]), lanes 4-7 codes 16..31 (scale sc[2k+1]).
          const float sa = d * float(sc[2 * k]), sb = d * float(sc[2 * k + 1]);
          const __m256 scale = _mm256_setr_m128(_mm_set1_ps(sa * xs[j]), _mm_set1_ps(sb * xs[j]));
          acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_u8s8(q[k], load_x(xq, j))), scale, acc);
          corr += 32.0f * (sa * xsum16[2 * j] + sb * xsum16[2 * j + 1]);
        }
      }
    }
    y[r] = hsum(acc) - corr;
  }
}


#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__) && !defined(PDVM_NO_ZMM)
// ---------------------------------------------------------------------------------------------
// AVX-512 kernels for the 32-weight block types (the default model's Q4_1 and Q8_0 LM head).
// A row is walked in groups of 16 blocks: one masked gather fetches the 16 blocks' f16 headers
// (d, and m for Q4_1), one multiply makes the 16 scales d * x_scale, and the offset term
// (m or -8d times x's block sums) is one FMA per group. Then each pair of blocks is one zmm:
// one vpdpbusd, one convert, one permute that spreads the pair's two scales over its lanes, one
// FMA. Per block that is about half the instructions of the 256-bit path above, which was
// compute-bound on Zen 4 (cached 2-thread Q4_1 ~25 GB/s vs ~28 GB/s DRAM; see
// docs/notes-cpu-kernels.md).
#define PDVM_MATVEC_AVX512 1

constexpr int kGroup = 16;  // blocks per gather: one zmm of 32-bit headers

inline __m512i header_offsets(int block_bytes) {
  return _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                            _mm512_set1_epi32(block_bytes));
}

inline __mmask16 group_mask(int64_t n) { return n >= kGroup ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1); }

// Low and high f16 halves of 16 gathered 32-bit words, as f32.
inline __m512 f16_lo(__m512i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v)); }
inline __m512 f16_hi(__m512i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(v, 16))); }

// Q4_0 / Q4_1. Pair k of a group (blocks 2k, 2k+1) against q8_nibble_pairs(): int32 lanes 0-3 and
// 8-11 belong to block 2k, lanes 4-7 and 12-15 to block 2k+1.
template <typename Block>
void rows_q4_zmm(const Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1) {
  constexpr bool kHasMin = std::is_same_v<Block, BlockQ4_1>;
  const int64_t nb = w.cols / kQK;
  const int8_t* xp = x.q8_nibble_pairs();
  const float* xs = x.q8_scale();
  const float* xsum = x.q8_scaled_sum32();
  const __m512i offsets = header_offsets(int(sizeof(Block)));
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  __m512i lane_block[kGroup / 2];
  for (int k = 0; k < kGroup / 2; ++k) {
    const int a = 2 * k, b = 2 * k + 1;
    lane_block[k] = _mm512_setr_epi32(a, a, a, a, b, b, b, b, a, a, a, a, b, b, b, b);
  }
  for (int64_t r = r0; r < r1; ++r) {
    const Block* blocks = row_blocks<Block>(w, r);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps(), off = _mm512_setzero_ps();
    const int64_t nb_full = nb / kGroup * kGroup;
    for (int64_t g = 0; g < nb_full; g += kGroup) {
      const int64_t n = kGroup;
      const Block* gb = blocks + g;
      const __m512i hdr = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), group_mask(n), offsets, gb, 1);
      const __m512 d = f16_lo(hdr);
      const __m512 scale = _mm512_mul_ps(d, _mm512_load_ps(xs + g));
      off = _mm512_fmadd_ps(kHasMin ? f16_hi(hdr) : d, _mm512_load_ps(xsum + g), off);
      const auto pair = [&](int k, __m512& acc) {
        const Block* b0 = gb + 2 * k;
        const Block* b1 = 2 * k + 1 < n ? b0 + 1 : b0;  // odd tail: x of the missing block is 0
        const __m256i q = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b0->qs))),
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(b1->qs)), 1);
        const __m512i codes = _mm512_and_si512(
            _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1), m4);
        const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes,
                                                _mm512_load_si512(xp + (g + 2 * k) * kQK));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_permutexvar_ps(lane_block[k], scale), acc);
      };
      if (n == kGroup) {
#pragma GCC unroll 8
        for (int k = 0; k < kGroup / 2; k += 2) {
          pair(k, acc0);
          pair(k + 1, acc1);
        }
      } else {
        for (int k = 0; 2 * k < n; ++k) pair(k, acc0);
      }
    }
    // The last nb % 16 blocks (2 of SmolLM2's 18 per 576-wide row) one at a time: a masked
    // gather plus a half-empty group cost more there than the 256-bit per-block path.
    __m256 acc_t = _mm256_setzero_ps();
    float corr_t = 0.0f;
    for (int64_t i = nb_full; i < nb; ++i) q4_block(blocks[i], x.q8(), xs, xsum, i, acc_t, corr_t);
    const __m512 all = _mm512_fmadd_ps(off, _mm512_set1_ps(kHasMin ? 1.0f : -8.0f),
                                       _mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_zextps256_ps512(acc_t)));
    y[r] = _mm512_reduce_add_ps(all) + corr_t;
  }
}

// Q8_0: signed codes against u8() = x + 128, so vpdpbusd (unsigned x signed) applies directly:
// sum (x+128) w - 128 sum w. Pair k: lanes 0-7 block 2k, lanes 8-15 block 2k+1.
void rows_q8_0_zmm(const Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1) {
  const int64_t nb = w.cols / kQK;
  const uint8_t* xu = x.u8();
  const float* xs = x.q8_scale();
  const __m512i offsets = header_offsets(int(sizeof(BlockQ8_0)));
  const __m512i c128 = _mm512_set1_epi8(char(0x80));
  __m512i lane_block[kGroup / 2];
  for (int k = 0; k < kGroup / 2; ++k) {
    const int a = 2 * k, b = 2 * k + 1;
    lane_block[k] = _mm512_setr_epi32(a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b);
  }
  for (int64_t r = r0; r < r1; ++r) {
    const BlockQ8_0* blocks = row_blocks<BlockQ8_0>(w, r);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    const int64_t nb_full = nb / kGroup * kGroup;
    for (int64_t g = 0; g < nb_full; g += kGroup) {
      const int64_t n = kGroup;
      const BlockQ8_0* gb = blocks + g;
      const __m512i hdr = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), group_mask(n), offsets, gb, 1);
      const __m512 scale = _mm512_mul_ps(f16_lo(hdr), _mm512_load_ps(xs + g));
      const auto pair = [&](int k, __m512& acc) {
        const BlockQ8_0* b0 = gb + 2 * k;
        const BlockQ8_0* b1 = 2 * k + 1 < n ? b0 + 1 : b0;  // odd tail: the x+128 terms cancel
        const __m512i wv = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b0->qs))),
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b1->qs)), 1);
        const __m512i t = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_load_si512(xu + (g + 2 * k) * kQK), wv);
        const __m512i u = _mm512_dpbusd_epi32(_mm512_setzero_si512(), c128, wv);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(t, u)),
                              _mm512_permutexvar_ps(lane_block[k], scale), acc);
      };
      if (n == kGroup) {
#pragma GCC unroll 8
        for (int k = 0; k < kGroup / 2; k += 2) {
          pair(k, acc0);
          pair(k + 1, acc1);
        }
      } else {
        for (int k = 0; 2 * k < n; ++k) pair(k, acc0);
      }
    }
    __m256 acc_t = _mm256_setzero_ps();  // the nb % 16 tail, as in rows_q4_zmm
    for (int64_t i = nb_full; i < nb; ++i) {
      const __m256i xv = load_x(x.q8(), i);
      const __m256i wa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blocks[i].qs));
      acc_t = fma_block(dot_u8s8(_mm256_sign_epi8(wa, wa), _mm256_sign_epi8(xv, wa)),
                        h2f(blocks[i].d) * xs[i], acc_t);
    }
    y[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_zextps256_ps512(acc_t)));
  }
}
#endif  // AVX-512 F/BW/VNNI

#if defined(__AVX512F__)
// Float types: 16 weights per step widened to f32, 4 accumulators to hide FMA latency.
struct LoadF32 {
  static __m512 load(const uint8_t* p) { return _mm512_loadu_ps(reinterpret_cast<const float*>(p)); }
  static constexpr int kBytes = 4;
  static float scalar(const uint8_t* p) { float f; std::memcpy(&f, p, 4); return f; }
};
struct LoadF16 {
  static __m512 load(const uint8_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static constexpr int kBytes = 2;
  static float scalar(const uint8_t* p) { uint16_t h; std::memcpy(&h, p, 2); return h2f(h); }
};
struct LoadBF16 {
  static __m512 load(const uint8_t* p) {
    const __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
  }
  static constexpr int kBytes = 2;
  static float scalar(const uint8_t* p) { uint16_t h; std::memcpy(&h, p, 2); return core::bf16_to_f32(h); }
};

template <typename L>
void rows_float(const Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1) {
  const int64_t n = w.cols;
  const float* xf = x.f32();
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* p = w.row(r);
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    int64_t c = 0;
    for (; c + 64 <= n; c += 64) {
      for (int k = 0; k < 4; ++k) {
        acc[k] = _mm512_fmadd_ps(L::load(p + (c + 16 * k) * L::kBytes),
                                 _mm512_load_ps(xf + c + 16 * k), acc[k]);
      }
    }
    for (; c + 16 <= n; c += 16) {
      acc[0] = _mm512_fmadd_ps(L::load(p + c * L::kBytes), _mm512_load_ps(xf + c), acc[0]);
    }
    float sum = _mm512_reduce_add_ps(
        _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
    for (; c < n; ++c) sum += L::scalar(p + c * L::kBytes) * xf[c];
    y[r] = sum;
  }
}
#define PDVM_MATVEC_FLOAT_SIMD 1
#endif  // __AVX512F__

#else  // !PDVM_MATVEC_SIMD
// ---------------------------------------------------------------------------------------------
// Scalar kernels: the same integer sums as the SIMD paths, one code at a time.

void rows_q8_0(const Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1) {
  const int64_t nb = w.cols / kQK;
  for (int64_t r = r0; r < r1; ++r) {
    const BlockQ8_0* b = row_blocks<BlockQ8_0>(w, r);
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
      int32_t dot = 0;
      for (int l = 0; l < kQK; ++l) dot += int32_t(b[i].qs[l]) * x.q8()[i * kQK + l];
      sum += float(dot) * h2f(b[i].d) * x.q8_scale()[i];
    }
    y[r] = sum;
  }
}

template <typename Block>
void rows_q4(const Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1) {
  const int64_t nb = w.cols / kQK;
  for (int64_t r = r0; r < r1; ++r) {
    const Block* b = row_blocks<Block>(w, r);
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
      const int8_t* xq = x.q8() + i * kQK;
      int32_t dot = 0;
      for (int l = 0; l < kQK / 2; ++l) {
        dot += int32_t(b[i].qs[l] & 0xF) * xq[l] + int32_t(b[i].qs[l] >> 4) * xq[l + 16];
      }
      const float d = h2f(b[i].d);
      sum += float(dot) * d * x.q8_scale()[i];
      if constexpr (std::is_same_v<Block, BlockQ4_1>) {
        sum += h2f(b[i].m) * x.q8_scaled_sum32()[i];
      } else {
        sum -= 8.0f * d * x.q8_scaled_sum32()[i];
      }
    }
    y[r] = sum;
  }
}

void rows_q4_k(const Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1) {
  const int64_t nb = w.cols / kQK_K;
  for (int64_t r = r0; r < r1; ++r) {
    const BlockQ4_K* blocks = row_blocks<BlockQ4_K>(w, r);
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
      const BlockQ4_K& b = blocks[i];
      const float d = h2f(b.d), dmin = h2f(b.dmin);
      uint8_t sc[8], mn[8];
      q4_k_scales(b, sc, mn);
      for (int g = 0; g < 4; ++g) {
        const int64_t j = i * 8 + 2 * g;
        const int8_t* xq = x.q8() + j * kQK;
        int32_t lo = 0, hi = 0;
        for (int l = 0; l < 32; ++l) {
          lo += int32_t(b.qs[32 * g + l] & 0xF) * xq[l];
          hi += int32_t(b.qs[32 * g + l] >> 4) * xq[32 + l];
        }
        sum += d * sc[2 * g] * x.q8_scale()[j] * float(lo) +
               d * sc[2 * g + 1] * x.q8_scale()[j + 1] * float(hi);
        sum -= dmin * (float(mn[2 * g]) * x.q8_scaled_sum32()[j] +
                       float(mn[2 * g + 1]) * x.q8_scaled_sum32()[j + 1]);
      }
    }
    y[r] = sum;
  }
}

void rows_q6_k(const Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1) {
  const int64_t nb = w.cols / kQK_K;
  for (int64_t r = r0; r < r1; ++r) {
    const BlockQ6_K* blocks = row_blocks<BlockQ6_K>(w, r);
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
      const BlockQ6_K& b = blocks[i];
      const float d = h2f(b.d);
      for (int h = 0; h < 2; ++h) {
        const uint8_t* ql = b.ql + 64 * h;
        const uint8_t* qh = b.qh + 32 * h;
        const int8_t* sc = b.scales + 8 * h;
        for (int k = 0; k < 4; ++k) {
          const int64_t j = i * 8 + h * 4 + k;
          const int8_t* xq = x.q8() + j * kQK;
          int32_t dot[2] = {0, 0};
          for (int l = 0; l < 32; ++l) {
            const uint8_t lo = k & 1 ? ql[l + 32] : ql[l];
            const int code = int((k < 2 ? lo & 0xF : lo >> 4) | ((qh[l] >> (2 * k)) & 3) << 4);
            dot[l / 16] += code * xq[l];
          }
          for (int s = 0; s < 2; ++s) {
            const float ds = d * float(sc[2 * k + s]);
            sum += ds * (x.q8_scale()[j] * float(dot[s]) - 32.0f * x.q8_scaled_sum16()[2 * j + s]);
          }
        }
      }
    }
    y[r] = sum;
  }
}
#endif  // PDVM_MATVEC_SIMD

#if !defined(PDVM_MATVEC_FLOAT_SIMD)
template <WeightType T>
void rows_float(const Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* p = w.row(r);
    float sum = 0.0f;
    for (int64_t c = 0; c < w.cols; ++c) {
      float v;
      if constexpr (T == WeightType::kF32) {
        std::memcpy(&v, p + 4 * c, 4);
      } else {
        uint16_t h;
        std::memcpy(&h, p + 2 * c, 2);
        v = T == WeightType::kF16 ? h2f(h) : core::bf16_to_f32(h);
      }
      sum += v * x.f32()[c];
    }
    y[r] = sum;
  }
}
#endif

}  // namespace

RowKernel row_kernel(WeightType type) {
  switch (type) {
#if defined(PDVM_MATVEC_FLOAT_SIMD)
    case WeightType::kF32: return rows_float<LoadF32>;
    case WeightType::kF16: return rows_float<LoadF16>;
    case WeightType::kBF16: return rows_float<LoadBF16>;
#else
    case WeightType::kF32: return rows_float<WeightType::kF32>;
    case WeightType::kF16: return rows_float<WeightType::kF16>;
    case WeightType::kBF16: return rows_float<WeightType::kBF16>;
#endif
#if defined(PDVM_MATVEC_AVX512)
    case WeightType::kQ8_0: return rows_q8_0_zmm;
    case WeightType::kQ4_0: return rows_q4_zmm<BlockQ4_0>;
    case WeightType::kQ4_1: return rows_q4_zmm<BlockQ4_1>;
#else
    case WeightType::kQ8_0: return rows_q8_0;
    case WeightType::kQ4_0: return rows_q4<BlockQ4_0>;
    case WeightType::kQ4_1: return rows_q4<BlockQ4_1>;
#endif
    case WeightType::kQ4_K: return rows_q4_k;
    case WeightType::kQ6_K: return rows_q6_k;
    // pdvm's compressed formats: kernels in cpu/spmv.cpp
    case WeightType::kI8Row: return rows_i8_row;
    case WeightType::kMdCsr: return rows_mdcsr;
    case WeightType::kBitmapI8: return rows_bitmap_i8;
  }
  PDVM_ASSERT(false && "unknown weight type");
  return nullptr;
}

void quantize_x_q8(const float* x, int64_t n_blocks, int8_t* q8, float* scale, float* sum32,
                   float* sum16) {
  for (int64_t i = 0; i < n_blocks; ++i) {
    const float* v = x + i * kQK;
    int8_t* q = q8 + i * kQK;
#if defined(__AVX512F__)
    const __m512 v0 = _mm512_load_ps(v), v1 = _mm512_load_ps(v + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float d = amax / 127.0f, id = amax > 0.0f ? 127.0f / amax : 0.0f;
    // cvtps rounds to nearest even (the default MXCSR mode), like std::nearbyint below.
    const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, _mm512_set1_ps(id)));
    const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, _mm512_set1_ps(id)));
    _mm_store_si128(reinterpret_cast<__m128i*>(q), _mm512_cvtsepi32_epi8(q0));
    _mm_store_si128(reinterpret_cast<__m128i*>(q + 16), _mm512_cvtsepi32_epi8(q1));
    const int s0 = _mm512_reduce_add_epi32(q0), s1 = _mm512_reduce_add_epi32(q1);
#else
    float amax = 0.0f;
    for (int l = 0; l < kQK; ++l) amax = std::fmax(amax, std::fabs(v[l]));
    const float d = amax / 127.0f, id = amax > 0.0f ? 127.0f / amax : 0.0f;
    int s0 = 0, s1 = 0;
    for (int l = 0; l < kQK; ++l) {
      q[l] = int8_t(std::nearbyint(v[l] * id));
      (l < 16 ? s0 : s1) += q[l];
    }
#endif
    scale[i] = d;
    sum32[i] = d * float(s0 + s1);
    sum16[2 * i] = d * float(s0);
    sum16[2 * i + 1] = d * float(s1);
  }
}

const char* isa_name() {
#if defined(PDVM_MATVEC_SIMD) && defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return "avx512-vnni";
#elif defined(PDVM_MATVEC_SIMD)
  return "avx2";
#else
  return "scalar";
#endif
}

}  // namespace pdvm::cpu::detail
