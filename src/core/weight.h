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

enum class WeightType : uint8_t { kF32, kF16, kBF16, kQ8_0, kQ4_0, kQ4_1, kQ4_K, kQ6_K };

struct WeightTypeInfo {
  std::string_view name;  // as GGUF and the CLI spell it: "f32", "q4_1", "q4_K", ...
  int block_size;         // weights per block
  int block_bytes;        // bytes per block
};

const WeightTypeInfo& weight_type_info(WeightType type);
inline std::string_view weight_type_name(WeightType type) { return weight_type_info(type).name; }
Result<WeightType> parse_weight_type(std::string_view name);

// Bytes of one row of `cols` weights; cols must be a multiple of the block size.
inline size_t row_bytes(WeightType type, int64_t cols) {
  const auto& info = weight_type_info(type);
  return size_t(cols / info.block_size) * size_t(info.block_bytes);
}

struct Matrix {
  WeightType type = WeightType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  const uint8_t* data = nullptr;  // rows * row_bytes(type, cols) bytes

  bool empty() const { return data == nullptr; }
  size_t row_stride() const { return row_bytes(type, cols); }
  size_t n_bytes() const { return size_t(rows) * row_stride(); }
  const uint8_t* row(int64_t r) const { return data + size_t(r) * row_stride(); }
  // Rows [begin, begin+count) as a matrix of their own: how fused qkv / gate_up are split.
  Matrix slice_rows(int64_t begin, int64_t count) const {
    PDVM_ASSERT(begin >= 0 && count >= 0 && begin + count <= rows);
    return {type, count, cols, row(begin)};
  }
};

}  // namespace pdvm::core
