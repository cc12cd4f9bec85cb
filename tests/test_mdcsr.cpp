// MdCSR and bitmap sparse formats (formats/mdcsr.h, bitmap_i8.h): encode -> decode is exact
// w.r.t. the pruned, quantized matrix on random and edge-case matrices (empty rows, full rows,
// gaps of exactly 255/256/510/511, a single column, odd sizes); byte costs; and the validators
// reject every kind of inconsistency with a message naming the row.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>

#include "formats/bitmap_i8.h"
#include "formats/mdcsr.h"
#include "formats/mdcsr_interleave.h"

using namespace pdvm;
using formats::QuantizedMatrix;
using formats::SparseArrays;

namespace {

QuantizedMatrix random_matrix(int64_t rows, int64_t cols, double density, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::uniform_int_distribution<int> v(-127, 127);
  QuantizedMatrix m;
  m.rows = rows;
  m.cols = cols;
  m.q.assign(size_t(rows * cols), 0);
  m.scale.resize(size_t(rows));
  for (int64_t r = 0; r < rows; ++r) {
    m.scale[size_t(r)] = float(0.01 * (r + 1));
    for (int64_t c = 0; c < cols; ++c)
      if (u(rng) < density) {
        int x = v(rng);
        m.q[size_t(r * cols + c)] = int8_t(x == 0 ? 1 : x);
      }
  }
  return m;
}

// Rows with the hard cases: empty, full, and single entries separated by exact gaps.
QuantizedMatrix edge_matrix(int64_t cols) {
  const std::vector<std::vector<int64_t>> rows_cols = {
      {},                                   // empty row
      {0},                                  // first column only
      {cols - 1},                           // last column only
      {0, 255},                             // gap 255: one delta, no padding
      {0, 256},                             // gap 256: one padding entry
      {0, 510, 511},                        // gap 510: two paddings; then gap 1
      {3, 3 + 255 * 3, 3 + 255 * 3 + 256},  // gaps 765 and 256
  };
  QuantizedMatrix m;
  m.rows = int64_t(rows_cols.size()) + 1;
  m.cols = cols;
  m.q.assign(size_t(m.rows * cols), 0);
  m.scale.assign(size_t(m.rows), 0.5f);
  for (size_t r = 0; r < rows_cols.size(); ++r)
    for (int64_t c : rows_cols[r])
      if (c < cols) m.q[r * size_t(cols) + size_t(c)] = int8_t(-128 + int(c % 256));
  for (int64_t c = 0; c < cols; ++c) m.q[size_t((m.rows - 1) * cols + c)] = int8_t(1 + c % 100);  // full row
  return m;
}

void expect_roundtrip(const QuantizedMatrix& qm, core::WeightType type) {
  auto enc = type == core::WeightType::kMdCsr ? formats::encode_mdcsr(qm) : formats::encode_bitmap_i8(qm);
  ASSERT_TRUE(enc.is_ok()) << enc.status().message();
  const SparseArrays& a = *enc;
  const core::SparseLayout layout = a.layout();
  formats::SparseLengths len{a.row_ptr.size(), a.row_scale.size(), a.values.size(), a.deltas.size(),
                             a.chunk_base.size(), a.masks.size()};
  const Status v = type == core::WeightType::kMdCsr ? formats::validate_mdcsr(layout, len, qm.rows, qm.cols, "t")
                                                    : formats::validate_bitmap_i8(layout, len, qm.rows, qm.cols, "t");
  ASSERT_TRUE(v.is_ok()) << v.message();
  const core::Matrix m = a.matrix(&layout);
  int64_t nnz = 0;
  for (int8_t x : qm.q) nnz += x != 0;
  EXPECT_EQ(a.n_nonzero, nnz);
  std::vector<int8_t> row(static_cast<size_t>(qm.cols));
  for (int64_t r = 0; r < qm.rows; ++r) {
    const float s = type == core::WeightType::kMdCsr ? formats::mdcsr_decode_row(m, r, row.data())
                                                     : formats::bitmap_i8_decode_row(m, r, row.data());
    EXPECT_EQ(s, qm.scale[size_t(r)]);
    for (int64_t c = 0; c < qm.cols; ++c)
      ASSERT_EQ(row[size_t(c)], qm.q[size_t(r * qm.cols + c)]) << "row " << r << " col " << c;
  }
}

}  // namespace

TEST(MdCsr, RoundTripRandom) {
  uint32_t seed = 1;
  for (auto [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {3, 7}, {17, 96}, {9, 513}, {4, 5120}, {2, 17920}})
    for (double density : {0.0, 0.01, 0.1, 0.3, 0.5, 0.7, 1.0}) {
      SCOPED_TRACE(testing::Message() << rows << "x" << cols << " density " << density);
      const auto qm = random_matrix(rows, cols, density, seed++);
      expect_roundtrip(qm, core::WeightType::kMdCsr);
      expect_roundtrip(qm, core::WeightType::kBitmapI8);
    }
}

TEST(MdCsr, RoundTripEdgeRows) {
  for (int64_t cols : {1, 255, 256, 257, 600, 1000, 1025}) {
    SCOPED_TRACE(cols);
    expect_roundtrip(edge_matrix(cols), core::WeightType::kMdCsr);
    expect_roundtrip(edge_matrix(cols), core::WeightType::kBitmapI8);
  }
}

TEST(MdCsr, PaddingAndChunksAreAsSpecified) {
  QuantizedMatrix m;
  m.rows = 1;
  m.cols = 600;
  m.q.assign(600, 0);
  m.scale = {1.0f};
  m.q[2] = 5;
  m.q[258] = -3;  // gap 256 from column 2: one padding entry (255) then delta 1
  m.q[259] = 7;
  auto a = formats::encode_mdcsr(m);
  ASSERT_TRUE(a.is_ok());
  ASSERT_EQ(a->chunk_base.size(), 1u);
  EXPECT_EQ(a->chunk_base[0], 2);
  const std::vector<int8_t> values = {5, 0, -3, 7};
  const std::vector<uint8_t> deltas = {0, 255, 1, 1};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(a->values[i], values[i]) << i;
    EXPECT_EQ(a->deltas[i], deltas[i]) << i;
  }
  for (size_t i = 4; i < 16; ++i) {  // row padded to the chunk with (value 0, delta 0)
    EXPECT_EQ(a->values[i], 0);
    EXPECT_EQ(a->deltas[i], 0);
  }
  EXPECT_EQ(a->row_ptr[1], 1u);
  // Bytes: 16 values + 16 deltas + 2 (chunk base) + 8 (row_ptr) + 4 (scale).
  EXPECT_EQ(a->layout().n_bytes, 16u + 16u + 2u + 8u + 4u);
}

TEST(MdCsr, BytesPerEntryAtHalfDensity) {
  const auto qm = random_matrix(64, 5120, 0.5, 7);
  auto md = formats::encode_mdcsr(qm);
  auto bm = formats::encode_bitmap_i8(qm);
  ASSERT_TRUE(md.is_ok() && bm.is_ok());
  const double weights = 64.0 * 5120.0;
  const double md_bpw = double(md->layout().n_bytes) / weights, bm_bpw = double(bm->layout().n_bytes) / weights;
  // MdCSR: ~2 B per stored entry + 1/8 B chunk base + padding: > 1 B per weight at 50%.
  EXPECT_GT(md_bpw, 1.0);
  EXPECT_LT(md_bpw, 1.25);
  // Bitmap: 0.5 B values + 0.125 B mask.
  EXPECT_NEAR(bm_bpw, 0.625, 0.01);
}

// The encoder keeps each group of chunks that the CPU kernel reads through one 128-column window
// (formats::mdcsr_window_chunks) inside that window wherever a group's mean span is at most
// kMdCsrAlignMaxGroupSpan, at a small byte cost; sparser rows are left alone. Random rows at
// 30-95% sparsity, 5120 and 17920 columns (the decode is checked by expect_roundtrip).
TEST(MdCsr, WindowGroupsStayInsideTheirWindows) {
  uint32_t seed = 100;
  for (int64_t cols : {5120, 17920})
    for (double density : {0.7, 0.5, 0.3, 0.25, 0.2, 0.15, 0.05}) {
      SCOPED_TRACE(testing::Message() << cols << " columns, density " << density);
      const auto qm = random_matrix(8, cols, density, seed++);
      expect_roundtrip(qm, core::WeightType::kMdCsr);
      auto a = formats::encode_mdcsr(qm);
      ASSERT_TRUE(a.is_ok());
      int64_t nnz = 0, aligned_rows = 0;
      for (int8_t x : qm.q) nnz += x != 0;
      for (int64_t r = 0; r < qm.rows; ++r) {
        const uint32_t k0 = a->row_ptr[size_t(r)], k1 = a->row_ptr[size_t(r) + 1];
        const int64_t n = k1 - k0;
        const int g = formats::mdcsr_window_chunks(cols, n);
        if (n == 0 || (cols / n) * g > formats::kMdCsrAlignMaxGroupSpan) continue;
        ++aligned_rows;
        for (uint32_t k = k0; k < k1; ++k) {
          const int64_t window = a->chunk_base[k0 + (k - k0) / uint32_t(g) * uint32_t(g)];
          int64_t col = a->chunk_base[k];
          for (int i = 0; i < formats::kMdCsrChunk; ++i) {
            col += a->deltas[size_t(k) * formats::kMdCsrChunk + size_t(i)];
            ASSERT_LT(col - window, formats::kMdCsrWindowCols) << "row " << r << " chunk " << k - k0 << " entry " << i;
          }
        }
      }
      // Which rows qualify, and what the padding costs (entries per stored nonzero).
      const double entries_per_nz = double(a->values.size()) / double(nnz);
      if (density >= 0.15 && density != 0.25) {  // 0.25: rows near the 1 -> 2 chunks-per-window step
        EXPECT_EQ(aligned_rows, qm.rows);
        EXPECT_LT(entries_per_nz, density >= 0.3 ? 1.03 : 1.08);
      }
      if (density <= 0.05) {
        EXPECT_EQ(aligned_rows, 0);  // groups of one chunk span ~320 columns: left as they come
        EXPECT_LT(entries_per_nz, 1.05);
      }
    }
}

// mdcsr_plain_row of a window-aligned encoding gives back the plain packing, chunk for chunk.
TEST(MdCsr, PlainRowRepackUndoesTheWindowPadding) {
  uint32_t seed = 300;
  for (int64_t cols : {600, 5120})
    for (double density : {0.3, 0.2, 0.5, 0.05}) {
      SCOPED_TRACE(testing::Message() << cols << " columns, density " << density);
      auto qm = random_matrix(6, cols, density, seed++);
      qm.q[size_t(cols - 1)] = 9;  // a gap over 255 at the end of row 0 at low density
      auto aligned = formats::encode_mdcsr(qm, true), plain = formats::encode_mdcsr(qm, false);
      ASSERT_TRUE(aligned.is_ok() && plain.is_ok());
      const core::SparseLayout s = aligned->layout();
      std::vector<int8_t> v;
      std::vector<uint8_t> d;
      std::vector<uint16_t> b;
      for (int64_t r = 0; r < qm.rows; ++r) {
        const int64_t n = formats::mdcsr_plain_row(s, r, [&](const int8_t* cv, const uint8_t* cd, uint16_t base) {
          v.insert(v.end(), cv, cv + formats::kMdCsrChunk);
          d.insert(d.end(), cd, cd + formats::kMdCsrChunk);
          b.push_back(base);
        });
        EXPECT_EQ(n, int64_t(plain->row_ptr[size_t(r) + 1] - plain->row_ptr[size_t(r)])) << "row " << r;
      }
      EXPECT_EQ(v, plain->values);
      EXPECT_EQ(d, plain->deltas);
      EXPECT_EQ(b, plain->chunk_base);
    }
}

namespace {

// A row's device chunks (16 values, then 16 deltas, each) and bases, as the CUDA upload packs them.
void pack_device_row(const core::SparseLayout& s, int64_t r, std::vector<uint8_t>& chunks,
                     std::vector<uint16_t>& bases) {
  formats::mdcsr_plain_row(s, r, [&](const int8_t* v, const uint8_t* d, uint16_t base) {
    const auto* vb = reinterpret_cast<const uint8_t*>(v);
    chunks.insert(chunks.end(), vb, vb + formats::kMdCsrChunk);
    chunks.insert(chunks.end(), d, d + formats::kMdCsrChunk);
    bases.push_back(base);
  });
}

// (column, value) of entry i of device chunk k
std::pair<int32_t, int8_t> device_entry(const std::vector<uint8_t>& chunks,
                                        const std::vector<uint16_t>& bases, size_t k, int i) {
  constexpr int C = formats::kMdCsrChunk;
  int32_t col = bases[k];
  for (int j = 0; j <= i; ++j) col += chunks[k * 2 * C + C + size_t(j)];
  return {col, int8_t(chunks[k * 2 * C + size_t(i)])};
}

}  // namespace

// The GPU's dealt chunk order (formats::interleave_mdcsr_run): every run of a row's chunks, dealt,
// decodes chunk by chunk to entry t * m + i of the run at place t of chunk i, so the row keeps its
// (column, value) entries; a run that would need a gap over 255 is left byte for byte as it was.
TEST(MdCsr, InterleavedRunsKeepEveryEntry) {
  constexpr int C = formats::kMdCsrChunk;
  uint32_t seed = 400;
  int dealt = 0, kept = 0;
  for (int64_t cols : {5120, 17920})
    for (double density : {1.0, 0.5, 0.3, 0.1, 0.02}) {
      SCOPED_TRACE(testing::Message() << cols << " columns, density " << density);
      const auto qm = random_matrix(3, cols, density, seed++);
      auto enc = formats::encode_mdcsr(qm, false);
      ASSERT_TRUE(enc.is_ok());
      const core::SparseLayout s = enc->layout();
      for (int64_t r = 0; r < qm.rows; ++r) {
        std::vector<uint8_t> plain_chunks;
        std::vector<uint16_t> plain_bases;
        pack_device_row(s, r, plain_chunks, plain_bases);
        std::vector<uint8_t> chunks;
        std::vector<uint16_t> bases;
        auto decode = [&](size_t k, int i) { return device_entry(chunks, bases, k, i); };
        const size_t n = plain_bases.size();
        for (int m : {1, 2, 7, 32}) {
          chunks = plain_chunks;
          bases = plain_bases;
          for (size_t a = 0; a < n; a += size_t(m)) {
            const int len = int(std::min(n - a, size_t(m)));
            std::vector<std::pair<int32_t, int8_t>> before;
            for (int e = 0; e < len * C; ++e) before.push_back(decode(a + size_t(e / C), e % C));
            const auto bytes = chunks;
            const auto bases_before = bases;
            const bool ok =
                formats::interleave_mdcsr_run(chunks.data() + a * 2 * C, bases.data() + a, len);
            if (!ok) {
              kept += len >= 2;  // runs of one chunk are never dealt
              EXPECT_EQ(chunks, bytes);
              EXPECT_EQ(bases, bases_before);
              continue;
            }
            ++dealt;
            EXPECT_GE(len, 2);
            for (int i = 0; i < len; ++i) {
              EXPECT_EQ(chunks[(a + size_t(i)) * 2 * C + C], 0) << "delta 0 of a chunk";
              for (int t = 0; t < C; ++t)
                ASSERT_EQ(decode(a + size_t(i), t), before[size_t(t * len + i)])
                    << "row " << r << ", run at " << a << " of " << len << ", chunk " << i
                    << " place " << t;
            }
          }
          // the whole row still decodes to the matrix's row (chunk by chunk, in any order)
          std::vector<int8_t> row(size_t(cols), 0);
          for (size_t k = 0; k < n; ++k)
            for (int i = 0; i < C; ++i) {
              const auto [col, v] = decode(k, i);
              ASSERT_LT(col, cols);
              if (v != 0) row[size_t(col)] = v;
            }
          for (int64_t c = 0; c < cols; ++c)
            ASSERT_EQ(row[size_t(c)], qm.q[size_t(r * cols + c)]) << "col " << c;
        }
      }
    }
  EXPECT_GT(dealt, 0);
  EXPECT_GT(kept, 0);  // density 0.02: 32 gaps of ~50 columns are over 255
}

// The largest dealt gap at the limit: two chunks (m = 2) whose entries are one column apart but
// for one gap of g between entries 15 and 16; dealt, that gap joins a neighbour's: g + 1. g = 254
// deals (a delta of exactly 255), g = 255 would need 256 and leaves the run as it was.
TEST(MdCsr, InterleavedRunAtTheGapLimit) {
  for (int g : {254, 255}) {
    SCOPED_TRACE(testing::Message() << "gap " << g);
    QuantizedMatrix qm;
    qm.rows = 1;
    qm.cols = 600;
    qm.q.assign(size_t(qm.cols), 0);
    qm.scale = {1.0f};
    for (int e = 0, col = 3; e < 32; ++e, col += (e == 16 ? g : 1))
      qm.q[size_t(col)] = int8_t(e + 1);
    auto enc = formats::encode_mdcsr(qm, false);
    ASSERT_TRUE(enc.is_ok());
    const core::SparseLayout s = enc->layout();
    std::vector<uint8_t> chunks;
    std::vector<uint16_t> bases;
    pack_device_row(s, 0, chunks, bases);
    ASSERT_EQ(bases.size(), 2u);
    const auto before = chunks;
    const auto bases_before = bases;
    const bool ok = formats::interleave_mdcsr_run(chunks.data(), bases.data(), 2);
    if (g == 255) {
      EXPECT_FALSE(ok);
      EXPECT_EQ(chunks, before);
      EXPECT_EQ(bases, bases_before);
      continue;
    }
    ASSERT_TRUE(ok);
    int max_delta = 0;
    for (int i = 0; i < 16; ++i)
      max_delta = std::max({max_delta, int(chunks[16 + size_t(i)]), int(chunks[48 + size_t(i)])});
    EXPECT_EQ(max_delta, 255);
    for (int e = 0; e < 32; ++e)  // entry e of the run: chunk e % 2, place e / 2
      EXPECT_EQ(device_entry(chunks, bases, size_t(e % 2), e / 2),
                device_entry(before, bases_before, size_t(e / 16), e % 16))
          << "entry " << e;
  }
}

// interleave_mdcsr_row on a matrix of 7 rows (groups of 4: a partial last group) with 0, 1, 31, 32,
// 33, 70 and 2 chunks: each row's chunks are dealt in the runs that share a 32-chunk block counted
// from their group's first chunk, no other row's bytes change, and every row keeps its entries.
TEST(MdCsr, InterleavedRowsFollowTheWarpBlocks) {
  constexpr int C = formats::kMdCsrChunk;
  const std::vector<int> nnz = {0, 16, 31 * 16, 32 * 16, 33 * 16 - 5, 70 * 16, 20};
  QuantizedMatrix qm;
  qm.rows = int64_t(nnz.size());
  qm.cols = 4096;
  qm.q.assign(size_t(qm.rows * qm.cols), 0);
  qm.scale.assign(size_t(qm.rows), 1.0f);
  std::mt19937 rng(7);
  for (int64_t r = 0; r < qm.rows; ++r) {  // nnz[r] distinct random columns of the first 2 nnz + 64
    std::vector<int> cols(size_t(2 * nnz[size_t(r)] + 64));  // (gaps far under 255: no bridges)
    for (size_t c = 0; c < cols.size(); ++c) cols[c] = int(c);
    std::shuffle(cols.begin(), cols.end(), rng);
    for (int k = 0; k < nnz[size_t(r)]; ++k)
      qm.q[size_t(r * qm.cols + cols[size_t(k)])] = int8_t(1 + k % 120);
  }
  auto enc = formats::encode_mdcsr(qm, false);
  ASSERT_TRUE(enc.is_ok());
  const core::SparseLayout s = enc->layout();
  std::vector<uint8_t> chunks;
  std::vector<uint16_t> bases;
  std::vector<uint32_t> ptr = {0};
  for (int64_t r = 0; r < qm.rows; ++r) {
    pack_device_row(s, r, chunks, bases);
    ptr.push_back(uint32_t(bases.size()));
  }
  const std::vector<uint32_t> want_chunks = {0, 1, 31, 32, 33, 70, 2};
  for (size_t r = 0; r < want_chunks.size(); ++r)
    ASSERT_EQ(ptr[r + 1] - ptr[r], want_chunks[r]) << "row " << r;
  const auto plain = chunks;
  const auto plain_bases = bases;
  int dealt = 0;
  for (int64_t r = 0; r < qm.rows; ++r) {
    const auto others = chunks;
    const auto other_bases = bases;
    dealt += formats::interleave_mdcsr_row(chunks.data(), bases.data(), ptr.data(), r, 4);
    for (size_t k = 0; k < bases.size(); ++k) {
      if (k >= ptr[size_t(r)] && k < ptr[size_t(r) + 1]) continue;
      ASSERT_EQ(bases[k], other_bases[k]) << "row " << r << " changed chunk " << k;
      for (int b = 0; b < 2 * C; ++b)
        ASSERT_EQ(chunks[k * 2 * C + size_t(b)], others[k * 2 * C + size_t(b)]);
    }
  }
  EXPECT_GT(dealt, 0);
  // the runs, found another way: row r's chunks k grouped by (k - group start) / 32
  for (int64_t r = 0; r < qm.rows; ++r) {
    const uint32_t g0 = ptr[size_t(r / 4 * 4)];
    std::vector<std::vector<uint32_t>> runs;
    for (uint32_t k = ptr[size_t(r)]; k < ptr[size_t(r) + 1]; ++k) {
      if (runs.empty() || (k - g0) / 32 != (runs.back().front() - g0) / 32) runs.emplace_back();
      runs.back().push_back(k);
    }
    for (const auto& run : runs) {
      const int m = int(run.size());
      // entry e of the plain run is at place e / m of chunk e % m (m = 1: where it was)
      for (int e = 0; e < m * C; ++e) {
        const auto want = device_entry(plain, plain_bases, run[size_t(e / C)], e % C);
        const auto got = device_entry(chunks, bases, run[size_t(e % m)], e / m);
        ASSERT_EQ(got, want) << "row " << r << ", run from chunk " << run[0] << " of " << m
                             << ", entry " << e;
      }
    }
  }
}

TEST(MdCsr, RejectsColsBeyondUint16Base) {
  QuantizedMatrix m;
  m.rows = 1;
  m.cols = 70000;
  m.q.assign(70000, 0);
  m.scale = {1.0f};
  EXPECT_FALSE(formats::encode_mdcsr(m).is_ok());
}

namespace {

struct Corrupt {
  const char* what;
  std::function<void(SparseArrays&)> edit;
  const char* expect;  // substring of the error
};

void expect_rejected(core::WeightType type, const Corrupt& c) {
  SCOPED_TRACE(c.what);
  auto enc = type == core::WeightType::kMdCsr ? formats::encode_mdcsr(edge_matrix(600))
                                              : formats::encode_bitmap_i8(edge_matrix(600));
  ASSERT_TRUE(enc.is_ok());
  SparseArrays a = *enc;
  c.edit(a);
  const core::SparseLayout layout = a.layout();
  formats::SparseLengths len{a.row_ptr.size(), a.row_scale.size(), a.values.size(), a.deltas.size(),
                             a.chunk_base.size(), a.masks.size()};
  const Status s = type == core::WeightType::kMdCsr ? formats::validate_mdcsr(layout, len, a.rows, a.cols, "f: tensor 'w'")
                                                    : formats::validate_bitmap_i8(layout, len, a.rows, a.cols, "f: tensor 'w'");
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find(c.expect), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("tensor 'w'"), std::string::npos) << s.message();
}

}  // namespace

TEST(MdCsr, ValidatorRejectsInconsistentArrays) {
  const std::vector<Corrupt> cases = {
      {"row_ptr decreases", [](SparseArrays& a) { a.row_ptr[2] = a.row_ptr[3] + 1; }, "decreases"},
      {"row_ptr does not start at 0", [](SparseArrays& a) { a.row_ptr[0] = 1; }, "row_ptr[0]"},
      {"row_ptr ends past the chunks", [](SparseArrays& a) { a.row_ptr.back() += 1; }, "chunk"},
      {"chunk base past cols", [](SparseArrays& a) { a.chunk_base[0] = 600; }, "column index reaches 600"},
      {"delta runs past the row", [](SparseArrays& a) { a.deltas[a.deltas.size() - 1] = 255; }, "column index reaches"},
      {"columns go back", [](SparseArrays& a) { a.chunk_base[a.row_ptr[7] + 1] = 0; }, "does not follow"},
      {"NaN scale", [](SparseArrays& a) { a.row_scale[3] = std::nanf(""); }, "row 3: scale"},
      {"values shorter than chunks", [](SparseArrays& a) { a.values.pop_back(); }, "values"},
  };
  for (const auto& c : cases) expect_rejected(core::WeightType::kMdCsr, c);
}

TEST(Bitmap, ValidatorRejectsInconsistentArrays) {
  const std::vector<Corrupt> cases = {
      {"row_ptr decreases", [](SparseArrays& a) { a.row_ptr[4] = a.row_ptr[5] + 1; }, "row"},
      {"row_ptr end != values", [](SparseArrays& a) { a.values.push_back(1); }, "row_ptr ends"},
      {"mask bit past cols", [](SparseArrays& a) { a.masks[9] |= uint64_t(1) << 63; }, "past cols"},
      {"popcount != row length", [](SparseArrays& a) { a.masks[0] |= 2; }, "masks mark"},
      {"masks too short", [](SparseArrays& a) { a.masks.pop_back(); }, "masks has"},
      {"inf scale", [](SparseArrays& a) { a.row_scale[0] = INFINITY; }, "row 0: scale"},
  };
  for (const auto& c : cases) expect_rejected(core::WeightType::kBitmapI8, c);
}
