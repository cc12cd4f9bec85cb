// Small f32 vector helpers for the CPU fast path (attention, norms, residuals): AVX-512 when the
// build has it, plain loops otherwise. Matrix-vector products live in matvec.h.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/simd.h"

namespace pdvm::cpu {

#if defined(__AVX512F__)
// Horizontal sum of 16 lanes by in-register shuffles.
inline float hsum_f32x16(__m512 v) {
  __m512 t = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
  t = _mm512_add_ps(t, _mm512_shuffle_f32x4(t, t, _MM_SHUFFLE(2, 3, 0, 1)));
  t = _mm512_add_ps(t, _mm512_permute_ps(t, _MM_SHUFFLE(1, 0, 3, 2)));
  t = _mm512_add_ps(t, _mm512_permute_ps(t, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm512_cvtss_f32(t);
}
#endif

inline float dot_f32(const float* a, const float* b, int n) {
  int i = 0;
#if defined(__AVX512F__)
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
  }
  for (; i + 16 <= n; i += 16) acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
  float s = hsum_f32x16(_mm512_add_ps(acc0, acc1));
#else
  float s = 0;
#endif
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

#if defined(__AVX512F__)
// exp of 16 lanes: k = round(x / ln 2), r = x - k ln 2 (two-part ln 2), exp(r) by its Taylor
// series to r^7 (|r| <= 0.347: truncation error < 1e-8 relative), then scaled by 2^k.
// Inputs below -87 give 0 (as expf underflows), the softmax's only use.
inline __m512 exp_f32x16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  x = _mm512_min_ps(x, _mm512_set1_ps(88.0f));
  const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(k, _mm512_set1_ps(1.428606765330187e-06f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, k);
}
#endif

// v[i] = exp(v[i] - shift); returns the sum of the new values (the softmax denominator).
inline float exp_shift_sum_f32(float* v, int n, float shift) {
  int i = 0;
  float sum = 0;
#if defined(__AVX512F__)
  const __m512 vs = _mm512_set1_ps(shift);
  __m512 acc = _mm512_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    const __m512 e = exp_f32x16(_mm512_sub_ps(_mm512_loadu_ps(v + i), vs));
    _mm512_storeu_ps(v + i, e);
    acc = _mm512_add_ps(acc, e);
  }
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1);
    const __m512 e = exp_f32x16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, v + i), vs));
    _mm512_mask_storeu_ps(v + i, m, e);
    acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(m, e));
    i = n;
  }
  sum = hsum_f32x16(acc);
#endif
  for (; i < n; ++i) {
    v[i] = std::exp(v[i] - shift);
    sum += v[i];
  }
  return sum;
}

// y += a * x
inline void axpy_f32(float a, const float* x, float* y, int n) {
  int i = 0;
#if defined(__AVX512F__)
  const __m512 va = _mm512_set1_ps(a);
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
#endif
  for (; i < n; ++i) y[i] += a * x[i];
}

inline void rmsnorm_f32(const float* x, const float* w, int n, float eps, float* out) {
  const float ss = dot_f32(x, x, n);
  const float scale = 1.0f / std::sqrt(ss / float(n) + eps);
  for (int i = 0; i < n; ++i) out[i] = (x[i] * scale) * w[i];
}

}  // namespace pdvm::cpu
