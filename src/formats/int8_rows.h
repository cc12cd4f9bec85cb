// Dense int8 with one f32 scale per row (core::WeightType::kI8Row): quantization of f32 rows,
// the row layout [f32 scale][int8 x cols], and its validation. Also the row quantizer that
// every pdvm int8 format (MdCSR, bitmap) shares, so a matrix quantizes identically whichever
// layout stores it. Specified in docs/FORMAT.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pdvm/status.h"

namespace pdvm::formats {

// Symmetric per-row quantization: scale = max|w| / 127 (0 for an all-zero row),
// q[c] = round-to-nearest-even(w[c] / scale), so w ~= scale * q with |error| <= scale / 2.
// Returns the scale. Non-finite inputs are the caller's to reject (the converter does).
float quantize_row_i8(const float* w, int64_t cols, int8_t* q);

// A matrix quantized row by row: q [rows * cols] row-major, scale [rows]. The common input of
// encode_i8_rows, encode_mdcsr and encode_bitmap_i8 (zeros in q are what pruning removed,
// or weights that rounded to 0: the sparse formats drop both).
struct QuantizedMatrix {
  int64_t rows = 0, cols = 0;
  std::vector<int8_t> q;
  std::vector<float> scale;
};
QuantizedMatrix quantize_matrix_i8(const float* w, int64_t rows, int64_t cols);

// kI8Row bytes: rows * (4 + cols).
std::vector<uint8_t> encode_i8_rows(const QuantizedMatrix& m);

// Every scale finite (the int8 bytes cannot be wrong). `where` names the tensor in messages.
Status validate_i8_rows(const uint8_t* data, size_t n_bytes, int64_t rows, int64_t cols,
                        const std::string& where);

}  // namespace pdvm::formats
