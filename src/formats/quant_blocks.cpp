// Reference dequantization of GGUF blocks: plain scalar code, written to be read against ggml's
// definitions (ggml-quants.c dequantize_row_*). The oracle for every fast kernel.
#include "formats/quant_blocks.h"

#include <cstring>

#include "core/half.h"

namespace pdvm::formats {
using core::bf16_to_f32;
using core::f16_to_f32;
using core::WeightType;

namespace {

template <typename Block>
const Block* as(const uint8_t* row) { return reinterpret_cast<const Block*>(row); }

// Q4_0 / Q4_1 / Q5_0 / Q5_1: w = d * (code - bias), or d * code + m.
template <typename Block>
void dequantize_block32(const Block* b, int64_t cols, float* out) {
  constexpr int kBias = block32_bias<Block>();
  for (int64_t i = 0; i < cols / kQK; ++i) {
    const float d = f16_to_f32(b[i].d);
    float* y = out + i * kQK;
    if constexpr (requires { b->m; }) {
      const float m = f16_to_f32(b[i].m);
      for (int j = 0; j < kQK; ++j) y[j] = d * block32_code(b[i], j) + m;
    } else {
      for (int j = 0; j < kQK; ++j) y[j] = d * (block32_code(b[i], j) - kBias);
    }
  }
}

// Q4_K / Q5_K: w = (d * sc) * code - (dmin * min), sc and min of the weight's sub-block of 32.
template <typename Block>
void dequantize_k45(const Block* b, int64_t cols, float* out) {
  for (int64_t i = 0; i < cols / kQK_K; ++i) {
    const float d = f16_to_f32(b[i].d), dmin = f16_to_f32(b[i].dmin);
    for (int s = 0; s < 8; ++s) {
      uint8_t sc, mn;
      q4_k_scale_min(s, b[i].scales, &sc, &mn);
      const float ds = d * sc, ms = dmin * mn;
      float* y = out + i * kQK_K + 32 * s;
      for (int l = 0; l < 32; ++l) y[l] = ds * k_code(b[i], s, l) - ms;
    }
  }
}

// split_row_int8 of the 32-weight types: codes less the bias, one (d, m) for both 16-groups.
template <typename Block>
void split_block32(const Block* b, int64_t cols, int8_t* q, float* scale, float* offset) {
  constexpr int kBias = block32_bias<Block>();
  for (int64_t i = 0; i < cols / kQK; ++i) {
    for (int j = 0; j < kQK; ++j) q[i * kQK + j] = int8_t(block32_code(b[i], j) - kBias);
    float m = 0.0f;
    if constexpr (requires { b->m; }) m = f16_to_f32(b[i].m);
    scale[2 * i] = scale[2 * i + 1] = f16_to_f32(b[i].d);
    offset[2 * i] = offset[2 * i + 1] = m;
  }
}

// split_row_int8 of Q4_K / Q5_K: scale d * sc and offset -(dmin * min) for both 16-groups of each
// sub-block.
template <typename Block>
void split_k45(const Block* b, int64_t cols, int8_t* q, float* scale, float* offset) {
  for (int64_t i = 0; i < cols / kQK_K; ++i) {
    const float d = f16_to_f32(b[i].d), dmin = f16_to_f32(b[i].dmin);
    for (int s = 0; s < 8; ++s) {
      uint8_t sc, mn;
      q4_k_scale_min(s, b[i].scales, &sc, &mn);
      const int64_t k = i * (kQK_K / 16) + 2 * s;  // first of the sub-block's two 16-groups
      scale[k] = scale[k + 1] = d * sc;
      offset[k] = offset[k + 1] = -(dmin * mn);
      for (int l = 0; l < 32; ++l) q[i * kQK_K + 32 * s + l] = int8_t(k_code(b[i], s, l));
    }
  }
}

}  // namespace

void dequantize_row(WeightType type, const uint8_t* row, int64_t cols, float* out) {
  switch (type) {
    case WeightType::kF32:
      std::memcpy(out, row, size_t(cols) * 4);
      return;
    case WeightType::kF16:
      for (int64_t i = 0; i < cols; ++i) {
        uint16_t h; std::memcpy(&h, row + 2 * i, 2); out[i] = f16_to_f32(h);
      }
      return;
    case WeightType::kBF16:
      for (int64_t i = 0; i < cols; ++i) {
        uint16_t h; std::memcpy(&h, row + 2 * i, 2); out[i] = bf16_to_f32(h);
      }
      return;
    case WeightType::kQ8_0: {
      const auto* b = as<BlockQ8_0>(row);
      for (int64_t i = 0; i < cols / kQK; ++i) {
        const float d = f16_to_f32(b[i].d);
        for (int j = 0; j < kQK; ++j) out[i * kQK + j] = d * b[i].qs[j];
      }
      return;
    }
    case WeightType::kQ4_0: return dequantize_block32(as<BlockQ4_0>(row), cols, out);
    case WeightType::kQ4_1: return dequantize_block32(as<BlockQ4_1>(row), cols, out);
    case WeightType::kQ5_0: return dequantize_block32(as<BlockQ5_0>(row), cols, out);
    case WeightType::kQ5_1: return dequantize_block32(as<BlockQ5_1>(row), cols, out);
    case WeightType::kQ4_K: return dequantize_k45(as<BlockQ4_K>(row), cols, out);
    case WeightType::kQ5_K: return dequantize_k45(as<BlockQ5_K>(row), cols, out);
    case WeightType::kQ6_K: {
      const auto* b = as<BlockQ6_K>(row);
      for (int64_t i = 0; i < cols / kQK_K; ++i) {
        const float d = f16_to_f32(b[i].d);
        const uint8_t* ql = b[i].ql;
        const uint8_t* qh = b[i].qh;
        const int8_t* sc = b[i].scales;
        float* y = out + i * kQK_K;
        // two halves of 128 weights; in each, 4 runs of 32 built from ql nibbles and qh 2-bit pairs
        for (int h = 0; h < 2; ++h) {
          for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = int((ql[l] & 0xF) | ((qh[l] >> 0) & 3) << 4) - 32;
            const int q2 = int((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) - 32;
            const int q3 = int((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
            const int q4 = int((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
            y[l] = d * sc[is + 0] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
          }
          y += 128; ql += 64; qh += 32; sc += 8;
        }
      }
      return;
    }
    case WeightType::kI8Row: {  // [f32 scale][int8 x cols] (formats/int8_rows.h)
      float scale;
      std::memcpy(&scale, row, 4);
      const auto* q = reinterpret_cast<const int8_t*>(row + 4);
      for (int64_t i = 0; i < cols; ++i) out[i] = scale * float(q[i]);
      return;
    }
    case WeightType::kMdCsr:
    case WeightType::kBitmapI8:
      // Sparse rows have no fixed place in `data`: formats/mdcsr.h and bitmap_i8.h decode them.
      PDVM_ASSERT(false && "dequantize_row: sparse types decode through their own format code");
      return;
  }
  PDVM_ASSERT(false && "unknown weight type");
}

bool has_int8_codes(WeightType type) {
  return type == WeightType::kQ8_0 || type == WeightType::kQ4_0 || type == WeightType::kQ4_1 ||
         type == WeightType::kQ5_0 || type == WeightType::kQ5_1 || type == WeightType::kQ4_K ||
         type == WeightType::kQ5_K || type == WeightType::kQ6_K;
}

// Written against the dequantizers above, term by term: the same scale (d, d * sc) and offset
// (0, m, -(dmin * m)) products, so scale * q + offset rounds exactly as they do.
void split_row_int8(WeightType type, const uint8_t* row, int64_t cols, int8_t* q, float* scale,
                    float* offset) {
  PDVM_ASSERT(has_int8_codes(type));
  switch (type) {
    case WeightType::kQ8_0: {
      const auto* b = as<BlockQ8_0>(row);
      for (int64_t i = 0; i < cols / kQK; ++i) {
        std::memcpy(q + i * kQK, b[i].qs, kQK);
        scale[2 * i] = scale[2 * i + 1] = f16_to_f32(b[i].d);
        offset[2 * i] = offset[2 * i + 1] = 0.0f;
      }
      return;
    }
    case WeightType::kQ4_0: return split_block32(as<BlockQ4_0>(row), cols, q, scale, offset);
    case WeightType::kQ4_1: return split_block32(as<BlockQ4_1>(row), cols, q, scale, offset);
    case WeightType::kQ5_0: return split_block32(as<BlockQ5_0>(row), cols, q, scale, offset);
    case WeightType::kQ5_1: return split_block32(as<BlockQ5_1>(row), cols, q, scale, offset);
    case WeightType::kQ4_K: return split_k45(as<BlockQ4_K>(row), cols, q, scale, offset);
    case WeightType::kQ5_K: return split_k45(as<BlockQ5_K>(row), cols, q, scale, offset);
    case WeightType::kQ6_K: {
      const auto* b = as<BlockQ6_K>(row);
      for (int64_t i = 0; i < cols / kQK_K; ++i) {
        const float d = f16_to_f32(b[i].d);
        for (int g = 0; g < kQK_K / 16; ++g) {
          scale[i * (kQK_K / 16) + g] = d * b[i].scales[g];
          offset[i * (kQK_K / 16) + g] = 0.0f;
        }
        // as dequantize_row: two halves of 128, 4 runs of 32 from ql nibbles and qh bit pairs
        for (int h = 0; h < 2; ++h) {
          const uint8_t* ql = b[i].ql + 64 * h;
          const uint8_t* qh = b[i].qh + 32 * h;
          int8_t* y = q + i * kQK_K + 128 * h;
          for (int l = 0; l < 32; ++l) {
            y[l] = int8_t(((ql[l] & 0xF) | ((qh[l] >> 0) & 3) << 4) - 32);
            y[l + 32] = int8_t(((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) - 32);
            y[l + 64] = int8_t(((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32);
            y[l + 96] = int8_t(((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32);
          }
        }
      }
      return;
    }
    default:
      return;
  }
}

}  // namespace pdvm::formats
