// CPU kernels for pdvm's compressed formats (formats/int8_rows.h, mdcsr.h, bitmap_i8.h):
// y[r] for rows [r0, r1) of one matrix, single-threaded. They are reached through cpu::matvec /
// matvec_multi (matvec_kernels.cpp's switch returns them for kI8Row, kMdCsr, kBitmapI8), which
// split rows across the pool's threads, so callers never call them directly.
// All read the PreparedInput that matvec prepares once per step: the int8 formats use x's int8
// codes and per-32 scales with vpdpbusd; MdCSR picks x's whole-vector int16 codes (x16_hi/lo, one
// scale) from 128-column windows with vpermt2b, also into vpdpbusd.
// Assume arrays that formats/*'s validators accepted (load_pdvm validates before building a Model).
#pragma once

#include <cstdint>

#include "core/weight.h"
#include "cpu/matvec.h"

namespace pdvm::cpu {

// Dense int8 rows. Reads rows * (cols + 4) B; 2 FLOP per weight.
void rows_i8_row(const core::Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1);
// MdCSR. Reads 2 B per stored entry + 2 B per 16-entry chunk + 8 B per row. x is used at int16
// precision (|error| <= max|x| / 65278; chunks with a gap of 128+ columns use the f32 copy).
void rows_mdcsr(const core::Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1);
// Bitmap int8. Reads 1 B per kept weight + 1 B per 8 columns (masks) + 8 B per row.
void rows_bitmap_i8(const core::Matrix& w, const PreparedInput& x, float* y, int64_t r0, int64_t r1);

// Which path the compressed kernels were built with: "avx512-vbmi2" or "scalar".
const char* spmv_isa();

}  // namespace pdvm::cpu
