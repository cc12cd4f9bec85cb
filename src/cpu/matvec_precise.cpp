// Row kernels for the GGUF quantized types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)
// against the two-term int8 x of PreparedInput (x ~= s q + s/256 q_lo per block of 32), and that
// quantization. Per block the int32 sum 256 * dot(codes, q) + dot(codes, q_lo) is exact (< 2^24, so
// its f32 conversion is too) and is scaled once by d * s / 256; offsets fold in through x's block
// sums. AVX-512 VNNI: Q4_1 multiplies whole 64-byte loads of its row against x laid out along the
// row's byte stream (q4_1_stream); Q4_0/Q8_0 walk pairs of blocks. Q5_0/Q5_1, the K-quants and AVX2
// builds: 256-bit per block. Scalar twins compute the same integer sums.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/half.h"
#include "cpu/matvec_kernels.h"
#include "formats/quant_blocks.h"

// GCC 12.2 -O3 reports -Wmaybe-uninitialized inside its own AVX-512 intrinsic headers (GCC PR
// 105593); silence it for those headers only.
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

namespace pdvm::cpu::detail {
namespace {

using core::Matrix;
using core::WeightType;
using formats::BlockQ4_0;
using formats::BlockQ4_1;
using formats::BlockQ4_K;
using formats::BlockQ5_0;
using formats::BlockQ5_1;
using formats::BlockQ5_K;
using formats::BlockQ6_K;
using formats::BlockQ8_0;
using formats::block32_bias;
using formats::block32_code;
using formats::k_code;
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

// Q4_K and Q5_K share the packed 6-bit scales and mins.
template <typename Block>
inline void q4_k_scales(const Block& b, uint8_t* sc, uint8_t* mn) {
  for (int j = 0; j < 8; ++j) formats::q4_k_scale_min(j, b.scales, &sc[j], &mn[j]);
}

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
// ---------------------------------------------------------------------------------------------
// 256-bit kernels: one block of 32 codes per vector.

// 256 * dot(u, hi) + dot(u, lo) as 8 int32 lanes (lane k: bytes 4k..4k+3); u unsigned <= 128
// (AVX2 maddubs needs u * 127 * 2 <= 32767), hi/lo signed.
inline __m256i dot2(__m256i u, __m256i hi, __m256i lo) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  const __m256i t = _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, hi);
  return _mm256_dpbusd_epi32(_mm256_slli_epi32(t, 8), u, lo);
#else
  const __m256i one = _mm256_set1_epi16(1);
  const __m256i t = _mm256_madd_epi16(_mm256_maddubs_epi16(u, hi), one);
  return _mm256_add_epi32(_mm256_slli_epi32(t, 8), _mm256_madd_epi16(_mm256_maddubs_epi16(u, lo), one));
#endif
}

inline __m256i load32(const int8_t* p) { return _mm256_load_si256(reinterpret_cast<const __m256i*>(p)); }

// The two x terms of block j.
struct XBlock {
  __m256i hi, lo;
};
inline XBlock x_block(const PreparedInput& x, int64_t j) {
  return {load32(x.q8() + j * kQK), load32(x.q8_lo() + j * kQK)};
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline __m256 fma_block(__m256i dot, float scale, __m256 acc) {
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(scale), acc);
}

// 16 bytes of packed nibbles -> 32 codes: low nibbles (weights 0..15) then high (16..31).
inline __m256i unpack_nibbles16(const uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// One block of each 32-weight type, accumulated into acc (f32 lanes) and corr (the offset term).
inline void block_q8_0(const BlockQ8_0& b, const PreparedInput& x, int64_t i, __m256& acc) {
  const XBlock xb = x_block(x, i);
  const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs));
  // Unsigned |w| times x carrying w's sign; |w| <= 128 and |x| <= 127.
  const __m256i dot = dot2(_mm256_sign_epi8(w, w), _mm256_sign_epi8(xb.hi, w), _mm256_sign_epi8(xb.lo, w));
  acc = fma_block(dot, h2f(b.d) * x.q8_fine_scale()[i], acc);
}

[[maybe_unused]] void rows_q8_0_256(const Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1) {
  const int64_t nb = w.cols / kQK;
  for (int64_t r = r0; r < r1; ++r) {
    const BlockQ8_0* b = row_blocks<BlockQ8_0>(w, r);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; ++i) block_q8_0(b[i], x, i, acc);
    y[r] = hsum(acc);
  }
}

// Q5_0 / Q5_1's fifth bits: bit k of the u32 qh is code k's, so byte k of the result is 0x10
// where it is set (code k in the order unpack_nibbles16 gives: low nibbles, then high).
inline __m256i unpack_fifth_bits32(const uint8_t* qh) {
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
  // byte k takes qh byte k / 8 (each 128-bit half holds all 4, broadcast), then tests bit k % 8
  const __m256i which = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                         2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201ULL));
  const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(int32_t(bits)), which);
  const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
  return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

// One Q4_0 / Q4_1 / Q5_0 / Q5_1 block: codes 0..15 or 0..31 (dot2 takes unsigned codes up to
// 128); Q4_0's -8, Q5_0's -16 and the +m of Q4_1 / Q5_1 fold in through x's block sum.
template <typename Block>
inline void block_q4_5(const Block& b, const PreparedInput& x, int64_t i, __m256& acc, float& corr) {
  const XBlock xb = x_block(x, i);
  const float d = h2f(b.d);
  __m256i codes = unpack_nibbles16(b.qs);
  if constexpr (requires { b.qh; }) codes = _mm256_or_si256(codes, unpack_fifth_bits32(b.qh));
  acc = fma_block(dot2(codes, xb.hi, xb.lo), d * x.q8_fine_scale()[i], acc);
  if constexpr (requires { b.m; }) {
    corr += h2f(b.m) * x.q8_scaled_sum32()[i];
  } else {
    corr -= float(block32_bias<Block>()) * d * x.q8_scaled_sum32()[i];
  }
}

template <typename Block>
void rows_q4_5_256(const Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1) {
  const int64_t nb = w.cols / kQK;
  for (int64_t r = r0; r < r1; ++r) {
    const Block* b = row_blocks<Block>(w, r);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float corr = 0.0f;
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
      block_q4_5(b[i], x, i, acc0, corr);
      block_q4_5(b[i + 1], x, i + 1, acc1, corr);
    }
    if (i < nb) block_q4_5(b[i], x, i, acc0, corr);
    y[r] = hsum(_mm256_add_ps(acc0, acc1)) + corr;
  }
}

// Q4_K and Q5_K: 4 groups of 32 bytes per super-block, low nibbles sub-block 2g, high nibbles
// 2g+1; Q5_K ors in each code's fifth bit (bit s of qh[l] for sub-block s) as 0x10.
template <typename Block>
void rows_q4_5_k(const Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1) {
  constexpr bool kFifth = requires(const Block& b) { b.qh; };
  const int64_t nb = w.cols / kQK_K;
  const float* xf = x.q8_fine_scale();
  const float* xsum = x.q8_scaled_sum32();
  const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
  // bit s of every byte of hb, moved to 0x10 (the 16-bit shifts cross no byte: and-ed to bit 0
  // before the left shift)
  const auto fifth = [&](__m256i hb, int s) {
    return _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(hb, _mm_cvtsi32_si128(s)), one), 4);
  };
  for (int64_t r = r0; r < r1; ++r) {
    const Block* blocks = row_blocks<Block>(w, r);
    __m256 acc = _mm256_setzero_ps();
    float corr = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
      const Block& b = blocks[i];
      const float d = h2f(b.d), dmin = h2f(b.dmin);
      uint8_t sc[8], mn[8];
      q4_k_scales(b, sc, mn);
      __m256i hb = _mm256_setzero_si256();
      if constexpr (kFifth) hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh));
      for (int g = 0; g < 4; ++g) {
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * g));
        const int64_t j = i * 8 + 2 * g;
        const XBlock x0 = x_block(x, j), x1 = x_block(x, j + 1);
        __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        if constexpr (kFifth) {
          lo = _mm256_or_si256(lo, fifth(hb, 2 * g));
          hi = _mm256_or_si256(hi, fifth(hb, 2 * g + 1));
        }
        acc = fma_block(dot2(lo, x0.hi, x0.lo), d * sc[2 * g] * xf[j], acc);
        acc = fma_block(dot2(hi, x1.hi, x1.lo), d * sc[2 * g + 1] * xf[j + 1], acc);
        corr += dmin * (float(mn[2 * g]) * xsum[j] + float(mn[2 * g + 1]) * xsum[j + 1]);
      }
    }
    y[r] = hsum(acc) - corr;
  }
}

void rows_q6_k(const Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1) {
  const int64_t nb = w.cols / kQK_K;
  const float* xf = x.q8_fine_scale();
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
        q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), m30));
        q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 2), m30));
        q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hb, m30));
        q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                               _mm256_and_si256(_mm256_srli_epi16(hb, 2), m30));
        for (int k = 0; k < 4; ++k) {
          const int64_t j = i * 8 + h * 4 + k;  // x block of this run
          const XBlock xb = x_block(x, j);
          // Lanes 0-3 hold codes 0..15 (scale sc[2k]), lanes 4-7 codes 16..31 (scale sc[2k+1]).
          const float sa = d * float(sc[2 * k]), sb = d * float(sc[2 * k + 1]);
          const __m256 scale = _mm256_setr_m128(_mm_set1_ps(sa * xf[j]), _mm_set1_ps(sb * xf[j]));
          acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot2(q[k], xb.hi, xb.lo)), scale, acc);
          corr += 32.0f * (sa * xsum16[2 * j] + sb * xsum16[2 * j + 1]);
        }
      }
    }
    y[r] = hsum(acc) - corr;
  }
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__) && !defined(PDVM_NO_ZMM)
// ---------------------------------------------------------------------------------------------
// AVX-512 kernels for the 32-weight block types (the default model's Q4_1 and Q8_0).
#define PDVM_PRECISE_AVX512 1

constexpr int kGroup = 16;  // blocks per group: one zmm of f32 scales

inline __m512i dpbusd(__m512i acc, __m512i u, __m512i s) { return _mm512_dpbusd_epi32(acc, u, s); }
inline __m512i load64(const void* p) { return _mm512_load_si512(p); }

// Low and high f16 halves of 16 32-bit words, as f32.
inline __m512 f16_lo(__m512i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v)); }
inline __m512 f16_hi(__m512i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(v, 16))); }

// Q4_1 along its byte stream. A Q4_1 block is 20 bytes = 5 int32 lanes (1 header lane: d, m;
// 4 code lanes), so every lane of any 64-byte load of a row lies in exactly one block, and 16
// blocks are exactly 5 loads. Each load is unpacked into low and high nibbles in place and
// multiplied (vpdpbusd, 4 per load: 2 nibble halves x 2 x terms) against q4_1_stream(), which
// holds 0 under the header bytes; lane l of load z of a group belongs to block (16 z + l) / 5,
// so one vpermps spreads the group's 16 block scales over a load's lanes. The 16 headers are
// compacted out of the 5 loads with 3 permutes (no gather, no separate header loads).
// Per 64 row bytes: 1 load, 3 unpack ops, 4 vpdpbusd, shift + add, convert, permute, FMA.
// Tried and measured slower where it matters (weights from DRAM; see docs/notes-cpu-kernels.md):
// two rows per pass sharing the x loads, and one serial chain of the 4 vpdpbusd (no add). Both
// won in L2-cached benchmarks, both lost in the uncached benchmark and in "pdvm run -t 1".
struct Q41Consts {
  __m512i m4 = _mm512_set1_epi8(0x0F);
  // Header lanes: block k's header is stream lane 5 k. Blocks 0-6 from loads 0-1, 7-12 from 2-3
  // (lane - 32), 13-15 from load 4 (lane - 64).
  __m512i hdr01 = _mm512_setr_epi32(0, 5, 10, 15, 20, 25, 30, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  __m512i hdr23 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 3, 8, 13, 18, 23, 28, 0, 0, 0);
  __m512i hdr4 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 6, 11);
  __m512i lane_block[5];
  Q41Consts() {
    for (int z = 0; z < 5; ++z) {
      alignas(64) int32_t idx[16];
      for (int l = 0; l < 16; ++l) idx[l] = (16 * z + l) / 5;
      lane_block[z] = _mm512_load_si512(idx);
    }
  }
};

// One group of up to 16 blocks whose row bytes are v[0..nz) (zero beyond the row's end).
template <int kLoads>
inline void q4_1_group(const Q41Consts& c, const __m512i* v, int nz, const int8_t* xg, const float* xf,
                       const float* xsum, __m512& acc0, __m512& acc1, __m512& off) {
  __m512i hdr = _mm512_permutex2var_epi32(v[0], c.hdr01, v[1]);
  if (kLoads > 2) {
    hdr = _mm512_mask_blend_epi32(0x1F80, hdr, _mm512_permutex2var_epi32(v[2], c.hdr23, v[3]));
    hdr = _mm512_mask_blend_epi32(0xE000, hdr, _mm512_permutexvar_epi32(c.hdr4, v[4]));
  }
  const __m512 scale = _mm512_mul_ps(f16_lo(hdr), _mm512_load_ps(xf));
  off = _mm512_fmadd_ps(f16_hi(hdr), _mm512_load_ps(xsum), off);
#pragma GCC unroll 5
  for (int z = 0; z < kLoads; ++z) {
    if (z >= nz) break;
    const __m512i lo = _mm512_and_si512(v[z], c.m4);
    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v[z], 4), c.m4);
    const int8_t* xz = xg + 256 * z;
    __m512i t = dpbusd(_mm512_setzero_si512(), lo, load64(xz));
    __m512i u = dpbusd(_mm512_setzero_si512(), lo, load64(xz + 128));
    t = dpbusd(t, hi, load64(xz + 64));
    u = dpbusd(u, hi, load64(xz + 192));
    const __m512 dot = _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_slli_epi32(t, 8), u));
    __m512& acc = (z & 1) ? acc1 : acc0;
    acc = _mm512_fmadd_ps(dot, _mm512_permutexvar_ps(c.lane_block[z], scale), acc);
  }
}

void rows_q4_1_stream(const Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1) {
  const Q41Consts c;
  const int64_t nb = w.cols / kQK;
  const int64_t n_groups = nb / kGroup;
  const int tail = int(nb % kGroup);
  const int tail_lanes = 5 * tail, tail_loads = (tail_lanes + 15) / 16;
  const int8_t* xst = x.q4_1_stream();
  const float* xf = x.q8_fine_scale();
  const float* xsum = x.q8_scaled_sum32();
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* p = w.row(r);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps(), off = _mm512_setzero_ps();
    for (int64_t g = 0; g < n_groups; ++g) {
      const uint8_t* gp = p + g * 320;
      const __m512i v[5] = {_mm512_loadu_si512(gp), _mm512_loadu_si512(gp + 64), _mm512_loadu_si512(gp + 128),
                            _mm512_loadu_si512(gp + 192), _mm512_loadu_si512(gp + 256)};
      q4_1_group<5>(c, v, 5, xst + g * 1280, xf + g * kGroup, xsum + g * kGroup, acc0, acc1, off);
    }
    if (tail > 0) {
      // Masked loads: never read past the row (it may end a mapping); missing lanes are zero,
      // so their headers give d = m = 0 (and x there is 0 too).
      const uint8_t* gp = p + n_groups * 320;
      __m512i v[5];
      for (int z = 0; z < 5; ++z) {
        const int lanes = std::clamp(tail_lanes - 16 * z, 0, 16);
        const auto mask = __mmask16(lanes == 16 ? 0xFFFFu : (1u << lanes) - 1u);
        v[z] = lanes > 0 ? _mm512_maskz_loadu_epi32(mask, gp + 64 * z) : _mm512_setzero_si512();
      }
      const int8_t* xg = xst + n_groups * 1280;
      const float* xfg = xf + n_groups * kGroup;
      const float* xsg = xsum + n_groups * kGroup;
      if (tail_loads <= 2) {
        q4_1_group<2>(c, v, tail_loads, xg, xfg, xsg, acc0, acc1, off);
      } else {
        q4_1_group<5>(c, v, tail_loads, xg, xfg, xsg, acc0, acc1, off);
      }
    }
    y[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), off));
  }
}

// Q4_0 (18-byte blocks, not lane-aligned): pairs of blocks. Pair k of a group (blocks 2k, 2k+1)
// against q8_nibble_pairs(): int32 lanes 0-3 and 8-11 belong to block 2k, 4-7 and 12-15 to 2k+1.
inline __m512i header_offsets(int block_bytes) {
  return _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                            _mm512_set1_epi32(block_bytes));
}

void rows_q4_0_zmm(const Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1) {
  const int64_t nb = w.cols / kQK;
  const int8_t* xp = x.q8_nibble_pairs();
  const int8_t* xpl = x.q8_lo_nibble_pairs();
  const float* xf = x.q8_fine_scale();
  const float* xsum = x.q8_scaled_sum32();
  const __m512i offsets = header_offsets(int(sizeof(BlockQ4_0)));
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  __m512i lane_block[kGroup / 2];
  for (int k = 0; k < kGroup / 2; ++k) {
    const int a = 2 * k, b = 2 * k + 1;
    lane_block[k] = _mm512_setr_epi32(a, a, a, a, b, b, b, b, a, a, a, a, b, b, b, b);
  }
  const int64_t nb_full = nb / kGroup * kGroup;
  for (int64_t r = r0; r < r1; ++r) {
    const BlockQ4_0* blocks = row_blocks<BlockQ4_0>(w, r);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps(), off = _mm512_setzero_ps();
    for (int64_t g = 0; g < nb_full; g += kGroup) {
      const BlockQ4_0* gb = blocks + g;
      const __m512i hdr = _mm512_i32gather_epi32(offsets, gb, 1);
      const __m512 d = f16_lo(hdr);
      const __m512 scale = _mm512_mul_ps(d, _mm512_load_ps(xf + g));
      off = _mm512_fmadd_ps(d, _mm512_load_ps(xsum + g), off);
      const auto pair = [&](int k, __m512& acc) {
        const BlockQ4_0* b0 = gb + 2 * k;
        const __m256i q = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b0->qs))),
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(b0[1].qs)), 1);
        const __m512i codes = _mm512_and_si512(
            _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1), m4);
        const int64_t o = (g + 2 * k) * kQK;
        const __m512i t = dpbusd(_mm512_setzero_si512(), codes, load64(xp + o));
        const __m512i dot = dpbusd(_mm512_slli_epi32(t, 8), codes, load64(xpl + o));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_permutexvar_ps(lane_block[k], scale), acc);
      };
#pragma GCC unroll 8
      for (int k = 0; k < kGroup / 2; k += 2) {
        pair(k, acc0);
        pair(k + 1, acc1);
      }
    }
    __m256 acc_t = _mm256_setzero_ps();
    float corr_t = 0.0f;
    for (int64_t i = nb_full; i < nb; ++i) block_q4_5(blocks[i], x, i, acc_t, corr_t);
    const __m512 all = _mm512_fmadd_ps(off, _mm512_set1_ps(-8.0f),
                                       _mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_zextps256_ps512(acc_t)));
    y[r] = _mm512_reduce_add_ps(all) + corr_t;
  }
}

// (Tried: offsetting the weights by xor 0x80 and folding -128 d sum32 into the group's offset
// term, 2 vpdpbusd per pair instead of 3: +10% cached, -30% uncached and in the real LM head.)
// Q8_0: signed codes against u8() = q + 128 (vpdpbusd is unsigned x signed), per pair of blocks
// (lanes 0-7 block 2k, 8-15 block 2k+1): with U = 128 sum w (one more vpdpbusd),
// 256 (T_hi - U) + (T_lo - U) = 256 dot(w, q) + dot(w, q_lo), exact in int32.
void rows_q8_0_zmm(const Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1) {
  const int64_t nb = w.cols / kQK;
  const uint8_t* xu = x.u8();
  const uint8_t* xul = x.u8_lo();
  const float* xf = x.q8_fine_scale();
  const __m512i offsets = header_offsets(int(sizeof(BlockQ8_0)));
  const __m512i c128 = _mm512_set1_epi8(char(0x80));
  __m512i lane_block[kGroup / 2];
  for (int k = 0; k < kGroup / 2; ++k) {
    const int a = 2 * k, b = 2 * k + 1;
    lane_block[k] = _mm512_setr_epi32(a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b);
  }
  const int64_t nb_full = nb / kGroup * kGroup;
  for (int64_t r = r0; r < r1; ++r) {
    const BlockQ8_0* blocks = row_blocks<BlockQ8_0>(w, r);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (int64_t g = 0; g < nb_full; g += kGroup) {
      const BlockQ8_0* gb = blocks + g;
      const __m512i hdr = _mm512_i32gather_epi32(offsets, gb, 1);
      const __m512 scale = _mm512_mul_ps(f16_lo(hdr), _mm512_load_ps(xf + g));
      const auto pair = [&](int k, __m512& acc) {
        const BlockQ8_0* b0 = gb + 2 * k;
        const __m512i wv = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b0->qs))),
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b0[1].qs)), 1);
        const int64_t o = (g + 2 * k) * kQK;
        const __m512i u = dpbusd(_mm512_setzero_si512(), c128, wv);
        const __m512i t = _mm512_sub_epi32(dpbusd(_mm512_setzero_si512(), load64(xu + o), wv), u);
        const __m512i dot = _mm512_sub_epi32(dpbusd(_mm512_slli_epi32(t, 8), load64(xul + o), wv), u);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_permutexvar_ps(lane_block[k], scale), acc);
      };
#pragma GCC unroll 8
      for (int k = 0; k < kGroup / 2; k += 2) {
        pair(k, acc0);
        pair(k + 1, acc1);
      }
    }
    __m256 acc_t = _mm256_setzero_ps();
    for (int64_t i = nb_full; i < nb; ++i) block_q8_0(blocks[i], x, i, acc_t);
    y[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_zextps256_ps512(acc_t)));
  }
}
#endif  // AVX-512 F/BW/VNNI

#else  // no AVX2+FMA+F16C
// ---------------------------------------------------------------------------------------------
// Scalar kernels: the same integer sums, one code at a time. X = 256 q + q_lo per x value.

inline int32_t xv(const PreparedInput& x, int64_t c) { return 256 * int32_t(x.q8()[c]) + x.q8_lo()[c]; }

void rows_q8_0_scalar(const Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1) {
  const int64_t nb = w.cols / kQK;
  for (int64_t r = r0; r < r1; ++r) {
    const BlockQ8_0* b = row_blocks<BlockQ8_0>(w, r);
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
      int32_t dot = 0;
      for (int l = 0; l < kQK; ++l) dot += int32_t(b[i].qs[l]) * xv(x, i * kQK + l);
      sum += float(dot) * h2f(b[i].d) * x.q8_fine_scale()[i];
    }
    y[r] = sum;
  }
}

// Q4_0 / Q4_1 / Q5_0 / Q5_1 (formats::block32_code: the nibble, and Q5's fifth bit).
template <typename Block>
void rows_q4_5_scalar(const Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1) {
  const int64_t nb = w.cols / kQK;
  for (int64_t r = r0; r < r1; ++r) {
    const Block* b = row_blocks<Block>(w, r);
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
      int32_t dot = 0;
      for (int j = 0; j < kQK; ++j) dot += block32_code(b[i], j) * xv(x, i * kQK + j);
      const float d = h2f(b[i].d);
      sum += float(dot) * d * x.q8_fine_scale()[i];
      if constexpr (requires { b->m; }) {
        sum += h2f(b[i].m) * x.q8_scaled_sum32()[i];
      } else {
        sum -= float(block32_bias<Block>()) * d * x.q8_scaled_sum32()[i];
      }
    }
    y[r] = sum;
  }
}

// Q4_K and Q5_K (with each code's fifth bit: bit s of qh[l] for sub-block s).
template <typename Block>
void rows_q4_5_k(const Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1) {
  const int64_t nb = w.cols / kQK_K;
  for (int64_t r = r0; r < r1; ++r) {
    const Block* blocks = row_blocks<Block>(w, r);
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
      const Block& b = blocks[i];
      const float d = h2f(b.d), dmin = h2f(b.dmin);
      uint8_t sc[8], mn[8];
      q4_k_scales(b, sc, mn);
      for (int g = 0; g < 4; ++g) {
        const int64_t j = i * 8 + 2 * g;
        int32_t lo = 0, hi = 0;
        for (int l = 0; l < 32; ++l) {
          lo += k_code(b, 2 * g, l) * xv(x, j * kQK + l);
          hi += k_code(b, 2 * g + 1, l) * xv(x, (j + 1) * kQK + l);
        }
        sum += d * sc[2 * g] * x.q8_fine_scale()[j] * float(lo) +
               d * sc[2 * g + 1] * x.q8_fine_scale()[j + 1] * float(hi);
        sum -= dmin * (float(mn[2 * g]) * x.q8_scaled_sum32()[j] + float(mn[2 * g + 1]) * x.q8_scaled_sum32()[j + 1]);
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
          int32_t dot[2] = {0, 0};
          for (int l = 0; l < 32; ++l) {
            const uint8_t lo = k & 1 ? ql[l + 32] : ql[l];
            const int code = int((k < 2 ? lo & 0xF : lo >> 4) | ((qh[l] >> (2 * k)) & 3) << 4);
            dot[l / 16] += code * xv(x, j * kQK + l);
          }
          for (int s = 0; s < 2; ++s) {
            const float ds = d * float(sc[2 * k + s]);
            sum += ds * (x.q8_fine_scale()[j] * float(dot[s]) - 32.0f * x.q8_scaled_sum16()[2 * j + s]);
          }
        }
      }
    }
    y[r] = sum;
  }
}
#endif

}  // namespace

RowKernel precise_row_kernel(WeightType type) {
  switch (type) {
#if defined(PDVM_PRECISE_AVX512)
    case WeightType::kQ8_0: return rows_q8_0_zmm;
    case WeightType::kQ4_0: return rows_q4_0_zmm;
    case WeightType::kQ4_1: return rows_q4_1_stream;
    case WeightType::kQ5_0: return rows_q4_5_256<BlockQ5_0>;
    case WeightType::kQ5_1: return rows_q4_5_256<BlockQ5_1>;
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
    case WeightType::kQ8_0: return rows_q8_0_256;
    case WeightType::kQ4_0: return rows_q4_5_256<BlockQ4_0>;
    case WeightType::kQ4_1: return rows_q4_5_256<BlockQ4_1>;
    case WeightType::kQ5_0: return rows_q4_5_256<BlockQ5_0>;
    case WeightType::kQ5_1: return rows_q4_5_256<BlockQ5_1>;
#else
    case WeightType::kQ8_0: return rows_q8_0_scalar;
    case WeightType::kQ4_0: return rows_q4_5_scalar<BlockQ4_0>;
    case WeightType::kQ4_1: return rows_q4_5_scalar<BlockQ4_1>;
    case WeightType::kQ5_0: return rows_q4_5_scalar<BlockQ5_0>;
    case WeightType::kQ5_1: return rows_q4_5_scalar<BlockQ5_1>;
#endif
    case WeightType::kQ4_K: return rows_q4_5_k<BlockQ4_K>;
    case WeightType::kQ5_K: return rows_q4_5_k<BlockQ5_K>;
    case WeightType::kQ6_K: return rows_q6_k;
    default: return nullptr;
  }
}

void quantize_x_two_term(const float* x, int64_t n_blocks, int8_t* hi, int8_t* lo, float* scale,
                         float* fine, float* sum32, float* sum16) {
  for (int64_t i = 0; i < n_blocks; ++i) {
    const float* v = x + i * kQK;
    int8_t* qh = hi + i * kQK;
    int8_t* ql = lo + i * kQK;
#if defined(__AVX512F__)
    const __m512 v0 = _mm512_load_ps(v), v1 = _mm512_load_ps(v + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float d = amax / 127.0f, id = amax > 0.0f ? 127.0f / amax : 0.0f;
    // cvtps rounds to nearest even (the default MXCSR mode), like std::nearbyint below.
    const __m512i h0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, _mm512_set1_ps(id)));
    const __m512i h1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, _mm512_set1_ps(id)));
    // Residual x - d q, |r| <= d/2: in units of d/256 that is <= 128; clamp to 127 (cost: one
    // extra d/256 of error where a value sits exactly half a step off).
    const __m512 r0 = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(h0), _mm512_set1_ps(d), v0);
    const __m512 r1 = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(h1), _mm512_set1_ps(d), v1);
    const __m512i lim = _mm512_set1_epi32(127), nlim = _mm512_set1_epi32(-127);
    const __m512i l0 = _mm512_max_epi32(nlim, _mm512_min_epi32(lim, _mm512_cvtps_epi32(_mm512_mul_ps(r0, _mm512_set1_ps(256.0f * id)))));
    const __m512i l1 = _mm512_max_epi32(nlim, _mm512_min_epi32(lim, _mm512_cvtps_epi32(_mm512_mul_ps(r1, _mm512_set1_ps(256.0f * id)))));
    _mm_store_si128(reinterpret_cast<__m128i*>(qh), _mm512_cvtsepi32_epi8(h0));
    _mm_store_si128(reinterpret_cast<__m128i*>(qh + 16), _mm512_cvtsepi32_epi8(h1));
    _mm_store_si128(reinterpret_cast<__m128i*>(ql), _mm512_cvtsepi32_epi8(l0));
    _mm_store_si128(reinterpret_cast<__m128i*>(ql + 16), _mm512_cvtsepi32_epi8(l1));
    const int s0 = _mm512_reduce_add_epi32(h0), s1 = _mm512_reduce_add_epi32(h1);
    const int t0 = _mm512_reduce_add_epi32(l0), t1 = _mm512_reduce_add_epi32(l1);
#else
    float amax = 0.0f;
    for (int l = 0; l < kQK; ++l) amax = std::fmax(amax, std::fabs(v[l]));
    const float d = amax / 127.0f, id = amax > 0.0f ? 127.0f / amax : 0.0f;
    int s0 = 0, s1 = 0, t0 = 0, t1 = 0;
    for (int l = 0; l < kQK; ++l) {
      const float q = std::nearbyint(v[l] * id);
      const float res = std::fma(-q, d, v[l]);
      qh[l] = int8_t(q);
      ql[l] = int8_t(std::clamp(std::nearbyint(res * (256.0f * id)), -127.0f, 127.0f));
      (l < 16 ? s0 : s1) += qh[l];
      (l < 16 ? t0 : t1) += ql[l];
    }
#endif
    const float f = d * (1.0f / 256.0f);
    scale[i] = d;
    fine[i] = f;
    sum16[2 * i] = d * float(s0) + f * float(t0);
    sum16[2 * i + 1] = d * float(s1) + f * float(t1);
    sum32[i] = d * float(s0 + s1) + f * float(t0 + t1);
  }
}

}  // namespace pdvm::cpu::detail
