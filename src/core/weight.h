// WeightType and Matrix: how one weight matrix is stored. Every matrix is [rows = out_features,
// cols = in_features], row-major, each row a whole number of blocks of its type (GGUF block
// layouts, see formats/quant_blocks.h). A Matrix is a view: it never owns its bytes (the Model
// keeps the file mapping or buffer alive).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "pdvm/status.h"

namespace pdvm::core {

enum class WeightType : uint8_t {
  kF32, kF16, kBF16, kQ8_0, kQ4_0, kQ4_1, kQ4_K, kQ6_K, kQ5_0, kQ5_1, kQ5_K,
  // (Files store types by name, never by number: pdvm_file.cpp writes weight_type_name.)
  // pdvm's own formats (docs/FORMAT.md; formats/int8_rows.h, mdcsr.h, bitmap_i8.h):
  kI8Row,     // dense int8, one f32 scale per row: each row is [f32 scale][int8 x cols]
  kMdCsr,     // sparse int8, delta-coded columns in chunks of 16 (Matrix::sparse holds the arrays)
  kBitmapI8,  // sparse int8, a 64-bit mask of kept columns per 64 columns (Matrix::sparse)
};

// Sparse types keep their weights in several arrays, so a Matrix of one points at this
// (owned, like the bytes, by the Model's storage). `data` then points at `row_ptr` (never null,
// even when nothing is stored), so code that only checks `data` treats it like any matrix.
struct SparseLayout;

struct WeightTypeInfo {
  std::string_view name;  // as GGUF and the CLI spell it: "f32", "q4_1", "q4_K", ...
  int block_size;         // weights per block
  int block_bytes;        // bytes per block
};

const WeightTypeInfo& weight_type_info(WeightType type);
inline std::string_view weight_type_name(WeightType type) { return weight_type_info(type).name; }
Result<WeightType> parse_weight_type(std::string_view name);

inline bool is_sparse(WeightType type) {
  return type == WeightType::kMdCsr || type == WeightType::kBitmapI8;
}

// Bytes of one row of `cols` weights; cols must be a multiple of the block size. 0 for the
// sparse types, whose rows have no fixed size (Matrix::n_bytes() asks their layout).
inline size_t row_bytes(WeightType type, int64_t cols) {
  if (type == WeightType::kI8Row) return size_t(cols) + 4;  // f32 scale + cols int8
  if (is_sparse(type)) return 0;
  const auto& info = weight_type_info(type);
  return size_t(cols / info.block_size) * size_t(info.block_bytes);
}

struct Matrix {
  WeightType type = WeightType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  const uint8_t* data = nullptr;  // rows * row_bytes(type, cols) bytes
  const SparseLayout* sparse = nullptr;  // the arrays of a sparse type; null for dense types

  bool empty() const { return data == nullptr; }
  size_t row_stride() const { return row_bytes(type, cols); }
  // Bytes one matvec reads: for sparse types every array of the layout (values, indices,
  // row pointers, scales), as the bench harness sums it.
  size_t n_bytes() const;
  const uint8_t* row(int64_t r) const { return data + size_t(r) * row_stride(); }
  // Rows [begin, begin+count) as a matrix of their own: how fused qkv / gate_up are split.
  Matrix slice_rows(int64_t begin, int64_t count) const {
    PDVM_ASSERT(begin >= 0 && count >= 0 && begin + count <= rows);
    PDVM_ASSERT(sparse == nullptr);  // sparse matrices are stored already split
    return {type, count, cols, row(begin)};
  }
};

// The arrays of a sparse matrix, all views into storage the Model owns. Which are used, and
// what they mean, is the format's (docs/FORMAT.md); the unused ones stay null.
struct SparseLayout {
  const uint32_t* row_ptr = nullptr;     // [rows + 1]: MdCSR chunks / bitmap value bytes
  const float* row_scale = nullptr;      // [rows]: w = scale * int8 value
  const int8_t* values = nullptr;        // stored int8 values (incl. MdCSR padding entries)
  const uint8_t* deltas = nullptr;       // MdCSR: [16 * n_chunks] column gaps
  const uint16_t* chunk_base = nullptr;  // MdCSR: [n_chunks] column of each chunk's first entry
  const uint64_t* masks = nullptr;       // bitmap: [rows * ceil(cols / 64)] kept columns
  int64_t n_values = 0;                  // stored values (MdCSR: 16 * n_chunks)
  int64_t n_nonzero = 0;                 // kept weights (without MdCSR padding)
  size_t n_bytes = 0;                    // bytes of all arrays above
};

inline size_t Matrix::n_bytes() const {
  return sparse != nullptr ? sparse->n_bytes : size_t(rows) * row_stride();
}

}  // namespace pdvm::core
