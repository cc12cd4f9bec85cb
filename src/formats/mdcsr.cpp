// MdCSR encode / validate / reference decode (layout in mdcsr.h and docs/FORMAT.md).
#include "formats/mdcsr.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace pdvm::formats {

namespace {

// One row's chunks, built before they are appended (a row may be encoded twice, see encode_mdcsr).
struct RowChunks {
  std::vector<int8_t> values;
  std::vector<uint8_t> deltas;
  std::vector<uint16_t> bases;
  int64_t n_nonzero = 0;
};

// Encodes row q (cols entries) into out; group: MdCsrRowPacker's.
void encode_row(const int8_t* q, int64_t cols, int group, RowChunks& out) {
  out = RowChunks{};
  auto sink = [&](const int8_t* v, const uint8_t* d, uint16_t base) {
    out.values.insert(out.values.end(), v, v + kMdCsrChunk);
    out.deltas.insert(out.deltas.end(), d, d + kMdCsrChunk);
    out.bases.push_back(base);
  };
  MdCsrRowPacker<decltype(sink)> pack(group, sink);
  for (int64_t c = 0; c < cols; ++c) {
    if (q[c] == 0) continue;
    pack.add(q[c], c);
    ++out.n_nonzero;
  }
  pack.finish();
}

}  // namespace

Result<SparseArrays> encode_mdcsr(const QuantizedMatrix& m, bool align_windows) {
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
  RowChunks row;
  for (int64_t r = 0; r < m.rows; ++r) {
    const int8_t* q = m.q.data() + r * m.cols;
    // Keep the window groups the kernel will use within their windows, if that is cheap. The
    // group size comes from the chunk count, estimated first from the nonzeros (one pass in almost
    // every row); padding adds chunks, which can move the row to larger groups (never smaller):
    // re-encode until the group size the kernel picks is the one the row was encoded for.
    int group = 0;
    if (align_windows) {
      const int64_t nnz = m.cols - std::count(q, q + m.cols, int8_t(0));
      group = mdcsr_aligned_group(m.cols, (nnz + kMdCsrChunk - 1) / kMdCsrChunk);
    }
    encode_row(q, m.cols, group, row);
    for (int pass = 0; align_windows && pass < 3; ++pass) {
      const int g = mdcsr_aligned_group(m.cols, int64_t(row.bases.size()));
      if (g == 0 || g == group) break;
      group = g;
      encode_row(q, m.cols, group, row);
    }
    a.values.insert(a.values.end(), row.values.begin(), row.values.end());
    a.deltas.insert(a.deltas.end(), row.deltas.begin(), row.deltas.end());
    a.chunk_base.insert(a.chunk_base.end(), row.bases.begin(), row.bases.end());
    a.n_nonzero += row.n_nonzero;
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
