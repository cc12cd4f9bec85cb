// Plain reference kernels: scalar loops, fp64 accumulation, no threads, no SIMD. They are the
// oracle every fast kernel (CPU SIMD, CUDA) is checked against; keep them obviously correct.
#pragma once

#include <cstdint>

#include "core/config.h"
#include "core/weight.h"

namespace pdvm::cpu::ref {

// out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i]
void rmsnorm(const float* x, const float* w, int n, float eps, float* out);

// y[r] = sum_c W[r][c] * x[c]; `row_scratch` holds one dequantized row (w.cols floats).
void matvec(const core::Matrix& w, const float* x, float* y, float* row_scratch);

// Rotates the first rope_dim dims of each of n_heads heads (head_dim apart) to position pos.
void rope(float* v, int n_heads, const core::ModelConfig& c, int pos);

// One query head over positions [first, last] of its KV head; k/v rows are `kv_stride` floats
// apart; out has head_dim floats. `scores` has room for last - first + 1 floats.
void attend_head(const float* q, const float* k_cache, const float* v_cache, int kv_stride,
                 int head_dim, int first, int last, float* scores, float* out);

// out[i] = silu(gate[i]) * up[i]
void swiglu(const float* gate, const float* up, int n, float* out);

}  // namespace pdvm::cpu::ref
