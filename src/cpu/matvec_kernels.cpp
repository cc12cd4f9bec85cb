// Per-type single-thread row kernels for the float types (f32 FMA against the f32 copy of x,
// exact but for summation order; AVX-512 with a scalar twin) and the dispatch to pdvm's compressed
// formats (cpu/spmv.cpp). The GGUF block types have their kernels in matvec_precise.cpp.
#include "cpu/matvec_kernels.h"
#include "cpu/spmv.h"

#include <cstring>

#include "core/half.h"
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

inline float h2f(uint16_t h) {
#if defined(__F16C__)
  return _cvtsh_ss(h);
#else
  return core::f16_to_f32(h);
#endif
}

#if defined(PDVM_MATVEC_SIMD) && defined(__AVX512F__)
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
#endif  // PDVM_MATVEC_SIMD && __AVX512F__

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
    // GGUF block types: two-term-x kernels of matvec_precise.cpp (precise_row_kernel)
    case WeightType::kQ8_0:
    case WeightType::kQ4_0:
    case WeightType::kQ4_1:
    case WeightType::kQ5_0:
    case WeightType::kQ5_1:
    case WeightType::kQ4_K:
    case WeightType::kQ5_K:
    case WeightType::kQ6_K: return nullptr;
    // pdvm's compressed formats: kernels in cpu/spmv.cpp
    case WeightType::kI8Row: return rows_i8_row;
    case WeightType::kMdCsr: return rows_mdcsr;
    case WeightType::kBitmapI8: return rows_bitmap_i8;
  }
  PDVM_ASSERT(false && "unknown weight type");
  return nullptr;
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
