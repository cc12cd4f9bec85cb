// Bitmap sparse int8 encode / validate / reference decode (layout in bitmap_i8.h, FORMAT.md).
#include "formats/bitmap_i8.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace pdvm::formats {

Result<SparseArrays> encode_bitmap_i8(const QuantizedMatrix& m) {
  SparseArrays a;
  a.type = core::WeightType::kBitmapI8;
  a.rows = m.rows;
  a.cols = m.cols;
  a.row_scale = m.scale;
  const int64_t groups = bitmap_groups(m.cols);
  a.masks.assign(size_t(m.rows * groups), 0);
  a.row_ptr.reserve(size_t(m.rows) + 1);
  a.row_ptr.push_back(0);
  for (int64_t r = 0; r < m.rows; ++r) {
    const int8_t* q = m.q.data() + r * m.cols;
    for (int64_t c = 0; c < m.cols; ++c) {
      if (q[c] == 0) continue;
      a.masks[size_t(r * groups + c / kBitmapGroup)] |= uint64_t(1) << (c % kBitmapGroup);
      a.values.push_back(q[c]);
      ++a.n_nonzero;
    }
    if (a.values.size() > UINT32_MAX) return invalid_argument("bitmap matrix has more than 2^32 values");
    a.row_ptr.push_back(uint32_t(a.values.size()));
  }
  return a;
}

Status validate_bitmap_i8(const core::SparseLayout& s, const SparseLengths& len, int64_t rows,
                          int64_t cols, const std::string& where) {
  auto bad = [&](const std::string& what) { return corrupt(where + ": " + what); };
  if (rows < 0 || cols <= 0)
    return bad("bitmap shape [" + std::to_string(rows) + ", " + std::to_string(cols) + "] is not valid");
  const int64_t groups = bitmap_groups(cols);
  if (len.row_ptr != size_t(rows) + 1)
    return bad("row_ptr has " + std::to_string(len.row_ptr) + " entries, expected rows + 1 = " +
               std::to_string(rows + 1));
  if (len.row_scale != size_t(rows))
    return bad("row_scale has " + std::to_string(len.row_scale) + " entries, expected " + std::to_string(rows));
  if (len.masks != size_t(rows * groups))
    return bad("masks has " + std::to_string(len.masks) + " words, expected rows * ceil(cols / 64) = " +
               std::to_string(rows * groups));
  if (s.row_ptr[0] != 0) return bad("row_ptr[0] is " + std::to_string(s.row_ptr[0]) + ", expected 0");
  if (s.row_ptr[rows] != len.values)
    return bad("row_ptr ends at " + std::to_string(s.row_ptr[rows]) + " but values has " +
               std::to_string(len.values) + " bytes");
  const int tail = int(cols % kBitmapGroup);
  const uint64_t tail_mask = tail == 0 ? ~uint64_t(0) : (uint64_t(1) << tail) - 1;
  for (int64_t r = 0; r < rows; ++r) {
    if (s.row_ptr[r + 1] < s.row_ptr[r])
      return bad("row " + std::to_string(r) + ": row_ptr decreases from " + std::to_string(s.row_ptr[r]) +
                 " to " + std::to_string(s.row_ptr[r + 1]) + " (offset " + std::to_string(4 * (r + 1)) + ")");
    const float sc = s.row_scale[r];
    if (!std::isfinite(sc) || sc < 0.0f)
      return bad("row " + std::to_string(r) + ": scale " + std::to_string(sc) + " is not finite and >= 0");
    const uint64_t* mk = s.masks + r * groups;
    uint64_t count = 0;
    for (int64_t g = 0; g < groups; ++g) count += uint64_t(std::popcount(mk[g]));
    if ((mk[groups - 1] & ~tail_mask) != 0)
      return bad("row " + std::to_string(r) + ": mask marks a column at or past cols " +
                 std::to_string(cols) + " (masks offset " + std::to_string(8 * (r * groups + groups - 1)) + ")");
    if (count != s.row_ptr[r + 1] - s.row_ptr[r])
      return bad("row " + std::to_string(r) + ": masks mark " + std::to_string(count) +
                 " columns but row_ptr gives " + std::to_string(s.row_ptr[r + 1] - s.row_ptr[r]) + " values");
  }
  return Status::ok();
}

float bitmap_i8_decode_row(const core::Matrix& m, int64_t r, int8_t* q) {
  PDVM_ASSERT(m.type == core::WeightType::kBitmapI8 && m.sparse != nullptr && r >= 0 && r < m.rows);
  const core::SparseLayout& s = *m.sparse;
  const int64_t groups = bitmap_groups(m.cols);
  std::fill(q, q + m.cols, int8_t(0));
  const int8_t* v = s.values + s.row_ptr[r];
  for (int64_t g = 0; g < groups; ++g) {
    for (uint64_t mk = s.masks[r * groups + g]; mk != 0; mk &= mk - 1)
      q[g * kBitmapGroup + std::countr_zero(mk)] = *v++;
  }
  return s.row_scale[r];
}

}  // namespace pdvm::formats
