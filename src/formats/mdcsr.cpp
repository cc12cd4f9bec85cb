// MdCSR encode / validate / reference decode (layout in mdcsr.h and docs/FORMAT.md).
#include "formats/mdcsr.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace pdvm::formats {

Result<SparseArrays> encode_mdcsr(const QuantizedMatrix& m) {
  if (m.cols > kMdCsrMaxCols)
    return invalid_argument("MdCSR stores chunk base columns as uint16: cols " + std::to_string(m.cols) +
                            " exceeds " + std::to_string(kMdCsrMaxCols));
  SparseArrays a;
  a.type = core::WeightType::kMdCsr;
  a.rows = m.rows;
  a.cols = m.cols;
  a.row_scale = m.scale;
  a.row_ptr.reserve(size_t(m.rows) + 1);
  a.row_ptr.push_back(0);
  for (int64_t r = 0; r < m.rows; ++r) {
    const int8_t* q = m.q.data() + r * m.cols;
    int fill = kMdCsrChunk;  // entries in the current chunk; "full" means: start a new one
    int64_t prev = 0;        // column of the last entry written
    auto emit = [&](int8_t v, int64_t col) {
      if (fill == kMdCsrChunk) {  // new chunk: its base is this entry's column
        a.chunk_base.push_back(uint16_t(col));
        a.values.push_back(v);
        a.deltas.push_back(0);
        fill = 1;
      } else {
        a.values.push_back(v);
        a.deltas.push_back(uint8_t(col - prev));
        ++fill;
      }
      prev = col;
    };
    for (int64_t c = 0; c < m.cols; ++c) {
      if (q[c] == 0) continue;
      // Bridge a gap wider than 255 with padding entries, unless a new chunk starts anyway.
      while (fill < kMdCsrChunk && c - prev > 255) emit(0, prev + 255);
      emit(q[c], c);
      ++a.n_nonzero;
    }
    while (fill < kMdCsrChunk) emit(0, prev);  // pad the row to whole chunks
    if (a.chunk_base.size() > UINT32_MAX)
      return invalid_argument("MdCSR matrix has more than 2^32 chunks");
    a.row_ptr.push_back(uint32_t(a.chunk_base.size()));
  }
  return a;
}

Status validate_mdcsr(const core::SparseLayout& s, const SparseLengths& len, int64_t rows,
                      int64_t cols, const std::string& where) {
  auto bad = [&](const std::string& what) { return corrupt(where + ": " + what); };
  if (rows < 0 || cols <= 0 || cols > kMdCsrMaxCols)
    return bad("MdCSR shape [" + std::to_string(rows) + ", " + std::to_string(cols) +
               "] is not supported (cols must be in [1, 65536])");
  if (len.row_ptr != size_t(rows) + 1)
    return bad("row_ptr has " + std::to_string(len.row_ptr) + " entries, expected rows + 1 = " +
               std::to_string(rows + 1));
  if (len.row_scale != size_t(rows))
    return bad("row_scale has " + std::to_string(len.row_scale) + " entries, expected " + std::to_string(rows));
  if (s.row_ptr[0] != 0) return bad("row_ptr[0] is " + std::to_string(s.row_ptr[0]) + ", expected 0");
  for (int64_t r = 0; r < rows; ++r)
    if (s.row_ptr[r + 1] < s.row_ptr[r])
      return bad("row " + std::to_string(r) + ": row_ptr decreases from " + std::to_string(s.row_ptr[r]) +
                 " to " + std::to_string(s.row_ptr[r + 1]) + " (offset " + std::to_string(4 * (r + 1)) + ")");
  const size_t n_chunks = s.row_ptr[rows];
  if (len.chunk_base != n_chunks)
    return bad("row_ptr ends at " + std::to_string(n_chunks) + " chunks but chunk_base has " +
               std::to_string(len.chunk_base) + " entries");
  if (len.values != n_chunks * kMdCsrChunk || len.deltas != n_chunks * kMdCsrChunk)
    return bad("row_ptr ends at " + std::to_string(n_chunks) + " chunks (" +
               std::to_string(n_chunks * kMdCsrChunk) + " entries) but values has " +
               std::to_string(len.values) + " and deltas " + std::to_string(len.deltas));
  for (int64_t r = 0; r < rows; ++r) {
    const float sc = s.row_scale[r];
    if (!std::isfinite(sc) || sc < 0.0f)
      return bad("row " + std::to_string(r) + ": scale " + std::to_string(sc) + " is not finite and >= 0");
    int64_t last_nz = -1;
    for (uint32_t k = s.row_ptr[r]; k < s.row_ptr[r + 1]; ++k) {
      int64_t col = s.chunk_base[k];
      for (int i = 0; i < kMdCsrChunk; ++i) {
        const size_t e = size_t(k) * kMdCsrChunk + size_t(i);
        col += s.deltas[e];
        if (col >= cols)
          return bad("row " + std::to_string(r) + " chunk " + std::to_string(k) + " entry " +
                     std::to_string(i) + ": column index reaches " + std::to_string(col) +
                     " but cols is " + std::to_string(cols) + " (deltas offset " + std::to_string(e) + ")");
        if (s.values[e] != 0) {
          if (col <= last_nz)
            return bad("row " + std::to_string(r) + " chunk " + std::to_string(k) + " entry " +
                       std::to_string(i) + ": column " + std::to_string(col) +
                       " does not follow the row's previous stored column " + std::to_string(last_nz) +
                       " (values offset " + std::to_string(e) + ")");
          last_nz = col;
        }
      }
    }
  }
  return Status::ok();
}

float mdcsr_decode_row(const core::Matrix& m, int64_t r, int8_t* q) {
  PDVM_ASSERT(m.type == core::WeightType::kMdCsr && m.sparse != nullptr && r >= 0 && r < m.rows);
  const core::SparseLayout& s = *m.sparse;
  std::fill(q, q + m.cols, int8_t(0));
  for (uint32_t k = s.row_ptr[r]; k < s.row_ptr[r + 1]; ++k) {
    int64_t col = s.chunk_base[k];
    for (int i = 0; i < kMdCsrChunk; ++i) {
      const size_t e = size_t(k) * kMdCsrChunk + size_t(i);
      col += s.deltas[e];
      if (s.values[e] != 0) q[col] = s.values[e];
    }
  }
  return s.row_scale[r];
}

}  // namespace pdvm::formats
