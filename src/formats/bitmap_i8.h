// Bitmap sparse int8 (core::WeightType::kBitmapI8): for each row and each group of 64 columns a
// uint64 mask of the kept columns, then the row's kept int8 values packed in column order. Costs
// 1 byte per kept weight + 1/8 byte per weight (the mask), so it moves fewer bytes than dense
// int8 at any sparsity above ~13% (MdCSR needs > ~55%). A group's values start at the row's
// offset plus the popcounts of the groups before it, so groups decode independently after a
// prefix sum (GPU), and on AVX-512 VBMI2 one vpexpandb expands a group to 64 lanes (CPU).
// Encoder, validator, reference decoder; docs/FORMAT.md specifies it.
#pragma once

#include <cstdint>
#include <string>

#include "core/weight.h"
#include "formats/int8_rows.h"
#include "formats/mdcsr.h"  // SparseLengths
#include "formats/sparse_arrays.h"
#include "pdvm/status.h"

namespace pdvm::formats {

constexpr int kBitmapGroup = 64;  // columns per mask word
inline int64_t bitmap_groups(int64_t cols) { return (cols + kBitmapGroup - 1) / kBitmapGroup; }

Result<SparseArrays> encode_bitmap_i8(const QuantizedMatrix& m);

// row_ptr (byte offsets into values) starts at 0, never decreases, ends at the values length;
// each row's mask popcounts sum to its value count; no mask bit at or past cols; scales finite.
Status validate_bitmap_i8(const core::SparseLayout& s, const SparseLengths& len, int64_t rows,
                          int64_t cols, const std::string& where);

// Reference decode of row r into int8 q [cols]; returns the row's scale.
float bitmap_i8_decode_row(const core::Matrix& m, int64_t r, int8_t* q);

}  // namespace pdvm::formats
