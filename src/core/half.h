// f16 and bf16 <-> f32 conversions, scalar and exact (round to nearest even on the way down).
// Used by loaders, reference kernels and tests; SIMD kernels use F16C/AVX-512 instructions.
#pragma once

#include <cstdint>
#include <cstring>

namespace pdvm::core {

inline float bits_to_f32(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline uint32_t f32_to_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ff;
  if (exp == 0) {
    if (man == 0) return bits_to_f32(sign);
    // subnormal: normalise
    int e = -1;
    do { man <<= 1; ++e; } while (!(man & 0x400));
    man &= 0x3ff;
    return bits_to_f32(sign | uint32_t(127 - 15 - e) << 23 | man << 13);
  }
  if (exp == 31) return bits_to_f32(sign | 0x7f800000u | man << 13);
  return bits_to_f32(sign | (exp + 127 - 15) << 23 | man << 13);
}

inline uint16_t f32_to_f16(float f) {
  uint32_t x = f32_to_bits(f);
  const uint16_t sign = (x >> 16) & 0x8000;
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) return sign | 0x7c00 | (x > 0x7f800000u ? 0x200 : 0);  // inf/nan
  if (x >= 0x477ff000u) return sign | 0x7c00;                                      // overflow
  if (x < 0x38800000u) {                                                            // subnormal
    if (x < 0x33000000u) return sign;
    const uint32_t e = x >> 23;
    uint32_t m = (x & 0x7fffff) | 0x800000;
    const uint32_t s = 126 - e;  // value = m * 2^(e-150); f16 subnormal unit is 2^-24
    uint32_t half = m >> s;
    const uint32_t rem = m & ((1u << s) - 1), mid = 1u << (s - 1);
    if (rem > mid || (rem == mid && (half & 1))) ++half;
    return sign | uint16_t(half);
  }
  uint32_t h = ((x >> 23) - 112) << 10 | (x >> 13 & 0x3ff);
  const uint32_t rem = x & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;
  return sign | uint16_t(h);
}

inline float bf16_to_f32(uint16_t b) { return bits_to_f32(uint32_t(b) << 16); }

inline uint16_t f32_to_bf16(float f) {
  uint32_t x = f32_to_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t(x >> 16 | 0x40);  // quiet NaN
  x += 0x7fff + ((x >> 16) & 1);
  return uint16_t(x >> 16);
}

}  // namespace pdvm::core
