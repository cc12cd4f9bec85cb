// GGUF block layouts (ggml's Q8_0, Q4_0, Q4_1, Q4_K, Q6_K) and their plain reference
// dequantization. The layouts are the on-disk format: static_asserts pin their sizes, and the
// dequantizers are the oracle every fast kernel is checked against.
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
struct BlockQ4_K {  // 8 sub-blocks of 32; 6-bit scale and min per sub-block, packed in scales[12]
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qs[kQK_K / 2];
};
struct BlockQ6_K {  // 16 sub-blocks of 16; w = d * scale[sub] * (q6 - 32)
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;
};
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ4_K) == 144 && sizeof(BlockQ6_K) == 210);

// Q4_K: 6-bit scale and min of sub-block j (0..7) from the packed 12 bytes.
inline void q4_k_scale_min(int j, const uint8_t* q, uint8_t* scale, uint8_t* min) {
  if (j < 4) {
    *scale = q[j] & 63;
    *min = q[j + 4] & 63;
  } else {
    *scale = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Dequantizes one row of `cols` weights of any WeightType into f32 (plain loops).
void dequantize_row(core::WeightType type, const uint8_t* row, int64_t cols, float* out);

// The block-quantized types (q8_0, q4_0, q4_1, q4_k, q6_k) as int8 codes with an affine pair per
// 16 weights: w[j] = scale[j / 16] * q[j] + offset[j / 16], which gives dequantize_row's floats
// bit for bit (same f32 products; offset is minus Q4_K's d_min * min). The offset is the same
// for both halves of every 32 weights in each type (Q4_1's m, Q4_K's per-sub-block min), which
// the CUDA upload relies on: it converts K-quants, and fused matrices that mix block types, into
// this form (cuda/device_types.cuh, kQ8_16). q holds cols values, scale and offset cols / 16.
bool has_int8_codes(core::WeightType type);
void split_row_int8(core::WeightType type, const uint8_t* row, int64_t cols, int8_t* q,
                    float* scale, float* offset);

}  // namespace pdvm::formats
