// Reference dequantization of GGUF blocks: plain scalar code, written to be read against ggml's
// definitions (ggml-quants.c dequantize_row_*). The oracle for every fast kernel.
#include "formats/quant_blocks.h"

#include <cstring>

#include "core/half.h"

namespace pdvm::formats {
using core::bf16_to_f32;
using core::f16_to_f32;
using core::WeightType;

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
      const auto* b = reinterpret_cast<const BlockQ8_0*>(row);
      for (int64_t i = 0; i < cols / kQK; ++i) {
        const float d = f16_to_f32(b[i].d);
        for (int j = 0; j < kQK; ++j) out[i * kQK + j] = d * b[i].qs[j];
      }
      return;
    }
    case WeightType::kQ4_0: {
      const auto* b = reinterpret_cast<const BlockQ4_0*>(row);
      for (int64_t i = 0; i < cols / kQK; ++i) {
        const float d = f16_to_f32(b[i].d);
        for (int j = 0; j < kQK / 2; ++j) {
          out[i * kQK + j] = d * ((b[i].qs[j] & 0xF) - 8);
          out[i * kQK + j + kQK / 2] = d * ((b[i].qs[j] >> 4) - 8);
        }
      }
      return;
    }
    case WeightType::kQ4_1: {
      const auto* b = reinterpret_cast<const BlockQ4_1*>(row);
      for (int64_t i = 0; i < cols / kQK; ++i) {
        const float d = f16_to_f32(b[i].d), m = f16_to_f32(b[i].m);
        for (int j = 0; j < kQK / 2; ++j) {
          out[i * kQK + j] = d * (b[i].qs[j] & 0xF) + m;
          out[i * kQK + j + kQK / 2] = d * (b[i].qs[j] >> 4) + m;
        }
      }
      return;
    }
    case WeightType::kQ5_0: {
      const auto* b = reinterpret_cast<const BlockQ5_0*>(row);
      for (int64_t i = 0; i < cols / kQK; ++i) {
        const float d = f16_to_f32(b[i].d);
        uint32_t qh;
        std::memcpy(&qh, b[i].qh, 4);
        for (int j = 0; j < kQK / 2; ++j) {
          const int x0 = int((b[i].qs[j] & 0xF) | ((qh >> j) & 1) << 4) - 16;
          const int x1 = int((b[i].qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4) - 16;
          out[i * kQK + j] = d * x0;
          out[i * kQK + j + kQK / 2] = d * x1;
        }
      }
      return;
    }
    case WeightType::kQ5_1: {
      const auto* b = reinterpret_cast<const BlockQ5_1*>(row);
      for (int64_t i = 0; i < cols / kQK; ++i) {
        const float d = f16_to_f32(b[i].d), m = f16_to_f32(b[i].m);
        uint32_t qh;
        std::memcpy(&qh, b[i].qh, 4);
        for (int j = 0; j < kQK / 2; ++j) {
          const int x0 = int((b[i].qs[j] & 0xF) | ((qh >> j) & 1) << 4);
          const int x1 = int((b[i].qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4);
          out[i * kQK + j] = d * x0 + m;
          out[i * kQK + j + kQK / 2] = d * x1 + m;
        }
      }
      return;
    }
    case WeightType::kQ4_K: {
      const auto* b = reinterpret_cast<const BlockQ4_K*>(row);
      for (int64_t i = 0; i < cols / kQK_K; ++i) {
        const float d = f16_to_f32(b[i].d), dmin = f16_to_f32(b[i].dmin);
        const uint8_t* q = b[i].qs;
        float* y = out + i * kQK_K;
        // 4 groups of 64 weights: 32 low nibbles (sub-block 2g), then 32 high (sub-block 2g+1)
        for (int g = 0; g < 4; ++g) {
          uint8_t sc, m;
          q4_k_scale_min(2 * g, b[i].scales, &sc, &m);
          const float d1 = d * sc, m1 = dmin * m;
          q4_k_scale_min(2 * g + 1, b[i].scales, &sc, &m);
          const float d2 = d * sc, m2 = dmin * m;
          for (int l = 0; l < 32; ++l) y[g * 64 + l] = d1 * (q[l] & 0xF) - m1;
          for (int l = 0; l < 32; ++l) y[g * 64 + 32 + l] = d2 * (q[l] >> 4) - m2;
          q += 32;
        }
      }
      return;
    }
    case WeightType::kQ5_K: {
      const auto* b = reinterpret_cast<const BlockQ5_K*>(row);
      for (int64_t i = 0; i < cols / kQK_K; ++i) {
        const float d = f16_to_f32(b[i].d), dmin = f16_to_f32(b[i].dmin);
        const uint8_t* q = b[i].qs;
        const uint8_t* qh = b[i].qh;
        float* y = out + i * kQK_K;
        // as Q4_K (group g: low nibbles are sub-block 2g, high nibbles 2g+1), and bit s of qh[l]
        // is the fifth bit of weight l of sub-block s
        for (int g = 0; g < 4; ++g) {
          uint8_t sc, m;
          q4_k_scale_min(2 * g, b[i].scales, &sc, &m);
          const float d1 = d * sc, m1 = dmin * m;
          q4_k_scale_min(2 * g + 1, b[i].scales, &sc, &m);
          const float d2 = d * sc, m2 = dmin * m;
          for (int l = 0; l < 32; ++l)
            y[g * 64 + l] = d1 * int((q[l] & 0xF) | ((qh[l] >> (2 * g)) & 1) << 4) - m1;
          for (int l = 0; l < 32; ++l)
            y[g * 64 + 32 + l] = d2 * int((q[l] >> 4) | ((qh[l] >> (2 * g + 1)) & 1) << 4) - m2;
          q += 32;
        }
      }
      return;
    }
    case WeightType::kQ6_K: {
      const auto* b = reinterpret_cast<const BlockQ6_K*>(row);
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
  // the simple types: one (d, m) for both 16-groups of 32-block i; nibble j and j + 16 of byte j
  auto set_block32 = [&](int64_t i, float d, float m) {
    scale[2 * i] = scale[2 * i + 1] = d;
    offset[2 * i] = offset[2 * i + 1] = m;
  };
  auto nibbles = [](const uint8_t* qs, int bias, int8_t* y) {
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = int8_t((qs[j] & 0xF) - bias);
      y[j + kQK / 2] = int8_t((qs[j] >> 4) - bias);
    }
  };
  // Q5_0/Q5_1: the nibbles plus bit j (weight j) and bit j + 16 (weight j + 16) of the u32 qh
  auto fifths = [](const uint8_t* qs, const uint8_t* qh_bytes, int bias, int8_t* y) {
    uint32_t qh;
    std::memcpy(&qh, qh_bytes, 4);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = int8_t(int((qs[j] & 0xF) | ((qh >> j) & 1) << 4) - bias);
      y[j + kQK / 2] = int8_t(int((qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4) - bias);
    }
  };
  switch (type) {
    case WeightType::kQ8_0: {
      const auto* b = reinterpret_cast<const BlockQ8_0*>(row);
      for (int64_t i = 0; i < cols / kQK; ++i) {
        std::memcpy(q + i * kQK, b[i].qs, kQK);
        set_block32(i, f16_to_f32(b[i].d), 0.0f);
      }
      return;
    }
    case WeightType::kQ4_0: {
      const auto* b = reinterpret_cast<const BlockQ4_0*>(row);
      for (int64_t i = 0; i < cols / kQK; ++i) {
        nibbles(b[i].qs, 8, q + i * kQK);
        set_block32(i, f16_to_f32(b[i].d), 0.0f);
      }
      return;
    }
    case WeightType::kQ4_1: {
      const auto* b = reinterpret_cast<const BlockQ4_1*>(row);
      for (int64_t i = 0; i < cols / kQK; ++i) {
        nibbles(b[i].qs, 0, q + i * kQK);
        set_block32(i, f16_to_f32(b[i].d), f16_to_f32(b[i].m));
      }
      return;
    }
    case WeightType::kQ5_0: {
      const auto* b = reinterpret_cast<const BlockQ5_0*>(row);
      for (int64_t i = 0; i < cols / kQK; ++i) {
        fifths(b[i].qs, b[i].qh, 16, q + i * kQK);
        set_block32(i, f16_to_f32(b[i].d), 0.0f);
      }
      return;
    }
    case WeightType::kQ5_1: {
      const auto* b = reinterpret_cast<const BlockQ5_1*>(row);
      for (int64_t i = 0; i < cols / kQK; ++i) {
        fifths(b[i].qs, b[i].qh, 0, q + i * kQK);
        set_block32(i, f16_to_f32(b[i].d), f16_to_f32(b[i].m));
      }
      return;
    }
    case WeightType::kQ4_K: {
      const auto* b = reinterpret_cast<const BlockQ4_K*>(row);
      for (int64_t i = 0; i < cols / kQK_K; ++i) {
        const float d = f16_to_f32(b[i].d), dmin = f16_to_f32(b[i].dmin);
        const uint8_t* qs = b[i].qs;
        // sub-block s = 2g + h: nibble h (0 low, 1 high) of the 32 bytes of group g
        for (int s = 0; s < 8; ++s) {
          uint8_t sc, mn;
          q4_k_scale_min(s, b[i].scales, &sc, &mn);
          const int64_t k = i * (kQK_K / 16) + 2 * s;  // first of the sub-block's two 16-groups
          scale[k] = scale[k + 1] = d * sc;
          offset[k] = offset[k + 1] = -(dmin * mn);
          int8_t* y = q + i * kQK_K + 32 * s;
          const uint8_t* src = qs + 32 * (s / 2);
          for (int l = 0; l < 32; ++l) y[l] = int8_t(s % 2 == 0 ? (src[l] & 0xF) : (src[l] >> 4));
        }
      }
      return;
    }
    case WeightType::kQ5_K: {
      const auto* b = reinterpret_cast<const BlockQ5_K*>(row);
      for (int64_t i = 0; i < cols / kQK_K; ++i) {
        const float d = f16_to_f32(b[i].d), dmin = f16_to_f32(b[i].dmin);
        // as Q4_K, each code with its fifth bit: bit s of qh[l] for weight l of sub-block s
        for (int s = 0; s < 8; ++s) {
          uint8_t sc, mn;
          q4_k_scale_min(s, b[i].scales, &sc, &mn);
          const int64_t k = i * (kQK_K / 16) + 2 * s;
          scale[k] = scale[k + 1] = d * sc;
          offset[k] = offset[k + 1] = -(dmin * mn);
          int8_t* y = q + i * kQK_K + 32 * s;
          const uint8_t* src = b[i].qs + 32 * (s / 2);
          for (int l = 0; l < 32; ++l) {
            const int low = s % 2 == 0 ? (src[l] & 0xF) : (src[l] >> 4);
            y[l] = int8_t(low | ((b[i].qh[l] >> s) & 1) << 4);
          }
        }
      }
      return;
    }
    case WeightType::kQ6_K: {
      const auto* b = reinterpret_cast<const BlockQ6_K*>(row);
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
