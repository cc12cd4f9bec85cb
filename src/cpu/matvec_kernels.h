// Internal to the matvec kernels: the per-type single-thread row kernels that matvec.cpp
// dispatches to (matvec_precise.cpp for the GGUF quantized types, matvec_kernels.cpp for the
// float types and pdvm's compressed types). Each computes y[r] for r in [r0, r1) of one matrix.
// (The single-term-x kernels that preceded matvec_precise.cpp were deleted: their 3% logit error
// flipped greedy tokens; docs/notes-cpu-kernels.md has the comparison.)
#pragma once

#include <cstdint>

#include "core/weight.h"
#include "cpu/matvec.h"

namespace pdvm::cpu::detail {

using RowKernel = void (*)(const core::Matrix& w, const PreparedInput& x, float* y, int64_t r0,
                           int64_t r1);

// The kernel for the float types and pdvm's compressed types; null for the GGUF block types,
// whose kernels precise_row_kernel gives.
RowKernel row_kernel(core::WeightType type);

// The two-term-x kernel for the GGUF quantized types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K,
// Q6_K); null for every other type.
RowKernel precise_row_kernel(core::WeightType type);

// Two-term quantization of blocks of 32 floats (see PreparedInput): hi/lo [32 * n_blocks],
// scale/fine/sum32 [n_blocks], sum16 [2 * n_blocks].
void quantize_x_two_term(const float* x, int64_t n_blocks, int8_t* hi, int8_t* lo, float* scale,
                         float* fine, float* sum32, float* sum16);

const char* isa_name();

}  // namespace pdvm::cpu::detail
