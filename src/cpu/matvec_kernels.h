// Internal to the matvec kernels: the per-type single-thread row kernels (matvec_kernels.cpp)
// that matvec.cpp dispatches to. Each computes y[r] for r in [r0, r1) of one matrix.
#pragma once

#include <cstdint>

#include "core/weight.h"
#include "cpu/matvec.h"

namespace pdvm::cpu::detail {

using RowKernel = void (*)(const core::Matrix& w, const PreparedInput& x, float* y, int64_t r0,
                           int64_t r1);

// The kernel for w.type (never null for a valid type).
RowKernel row_kernel(core::WeightType type);

// Quantizes blocks of 32 floats: q8[32 * n_blocks], scale/sum32 [n_blocks], sum16 [2 * n_blocks].
void quantize_x_q8(const float* x, int64_t n_blocks, int8_t* q8, float* scale, float* sum32,
                   float* sum16);

const char* isa_name();

}  // namespace pdvm::cpu::detail
