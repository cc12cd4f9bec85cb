// GGUF block layouts (ggml's Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) and their plain
// reference dequantization. The layouts are the on-disk format: static_asserts pin their sizes,
// and the dequantizers are the oracle every fast kernel is checked against.
#pragma once

#include <cstdint>

#include "core/weight.h"

namespace pdvm::formats {

constexpr int kQK = 32;    // weights per block of the simple types
constexpr int kQK_K = 256;  // weights per super-block of the K types

struct BlockQ8_0 { uint16_t d; int8_t qs[kQK]; };                 // w = d * q
struct BlockQ4_0 { uint16_t d; uint8_t qs[kQK / 2]; };            // w = d * (nibble - 8)
struct BlockQ4_1 { uint16_t d, m; uint8_t qs[kQK / 2]; };         // w = d * nibble + m
// Weight j < 16 of a Q4_0/Q4_1 block is the low nibble of qs[j]; weight j + 16 the high nibble.
// Q5_0/Q5_1 add a fifth bit per weight: bit j of the little-endian u32 qh is weight j's (j < 32),
// so weight j < 16 is (qs[j] & 0xF) | bit j << 4 and weight j + 16 is (qs[j] >> 4) | bit j+16 << 4.
struct BlockQ5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[kQK / 2]; };     // w = d * (q5 - 16)
struct BlockQ5_1 { uint16_t d, m; uint8_t qh[4]; uint8_t qs[kQK / 2]; };  // w = d * q5 + m
struct BlockQ4_K {  // 8 sub-blocks of 32; 6-bit scale and min per sub-block, packed in scales[12]
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qs[kQK_K / 2];
};
// Q5_K: Q4_K plus a fifth bit per weight: bit s of qh[l] is the top bit of weight l of sub-block s.
struct BlockQ5_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};
struct BlockQ6_K {  // 16 sub-blocks of 16; w = d * scale[sub] * (q6 - 32)
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;
};
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22 && sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210);

// Q4_K and Q5_K: 6-bit scale and min of sub-block j (0..7) from the packed 12 bytes.
inline void q4_k_scale_min(int j, const uint8_t* q, uint8_t* scale, uint8_t* min) {
  if (j < 4) {
    *scale = q[j] & 63;
    *min = q[j + 4] & 63;
  } else {
    *scale = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Code j (0..31) of a Q4_0 / Q4_1 / Q5_0 / Q5_1 block, unsigned (0..15, or 0..31 with Q5's fifth
// bit), before the type's offset; the layout comment above the block structs.
template <typename Block>
inline int block32_code(const Block& b, int j) {
  const int nibble = j < kQK / 2 ? b.qs[j] & 0xF : b.qs[j - kQK / 2] >> 4;
  if constexpr (requires { b.qh; }) {
    uint32_t qh = 0;
    for (int k = 0; k < 4; ++k) qh |= uint32_t(b.qh[k]) << (8 * k);
    return nibble | int((qh >> j) & 1) << 4;
  }
  return nibble;
}

// What a Q4_0 / Q5_0 code has subtracted (8 / 16; Q4_1 and Q5_1 add their m instead: 0).
template <typename Block>
constexpr int block32_bias() {
  if constexpr (requires(const Block& b) { b.m; }) return 0;
  else if constexpr (requires(const Block& b) { b.qh; }) return 16;
  else return 8;
}

// Code l (0..31) of sub-block s (0..7) of a Q4_K / Q5_K super-block: nibble s % 2 of
// qs[32 * (s / 2) + l], and for Q5_K its fifth bit, bit s of qh[l].
template <typename Block>
inline int k_code(const Block& b, int s, int l) {
  const uint8_t byte = b.qs[32 * (s / 2) + l];
  const int nibble = s % 2 == 0 ? byte & 0xF : byte >> 4;
  if constexpr (requires { b.qh; }) return nibble | ((b.qh[l] >> s) & 1) << 4;
  return nibble;
}

// Dequantizes one row of `cols` weights of any WeightType into f32 (plain loops).
void dequantize_row(core::WeightType type, const uint8_t* row, int64_t cols, float* out);

// The block-quantized types (q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K) as int8 codes with an
// affine pair per 16 weights: w[j] = scale[j / 16] * q[j] + offset[j / 16], which gives
// dequantize_row's floats bit for bit (same f32 products; offset is minus the K-quants' d_min *
// min). Codes fit int8: Q8_0's own, Q6_K's q6 - 32, Q4_0's q4 - 8, Q5_0's q5 - 16, and the
// unsigned 0..15 / 0..31 of Q4_1, Q5_1, Q4_K and Q5_K. The offset is the same for both halves of
// every 32 weights in each type (Q4_1's and Q5_1's m, the K-quants' per-sub-block min), which
// the CUDA upload relies on: it converts K-quants, Q5 types and fused matrices that mix block
// types into this form (cuda/device_types.cuh, kQ8_16). q holds cols values, scale and offset
// cols / 16.
bool has_int8_codes(core::WeightType type);
void split_row_int8(core::WeightType type, const uint8_t* row, int64_t cols, int8_t* q,
                    float* scale, float* offset);

}  // namespace pdvm::formats
