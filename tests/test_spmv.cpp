// The compressed-format kernels (cpu/spmv.h), reached through cpu::matvec (threaded) and
// matvec_rows, against a plain fp64 reference on the decoded matrix, on many shapes and
// sparsities including empty rows, full rows, gaps of 255/256, a single column and odd sizes.
// cols = 40000 takes the bitmap kernel's path without per-call group tables (they hold 32768 cols);
// cols = 5120 and 17920 (multiples of 512) put MdCSR windows against the end of x's padding.
//
// References and tolerances: the int8 kernels (i8_row, bitmap) multiply by x's two-term int8
// codes (x ~= s q + s/256 q_lo, see cpu/matvec.h), so their reference uses that same quantized x
// in fp64: the only difference left is f32 accumulation order, bounded by
// 1e-5 * sum_c |w_c x_c| + 1e-6. A looser check against the unquantized x (the true product)
// bounds the int8 x error: |err| <= sum_c |w_c| * fine_scale_c / 2. MdCSR multiplies by x as
// whole-vector int16 codes (x16_*, one scale S; chunks with a gap of 128+ columns by x's f32 copy),
// so its reference is the f32 x with the bound 1e-5 * sum_c |w_c x_c| + 1e-6 + sum_c |w_c| * S / 2.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string_view>

#include "core/thread_pool.h"
#include "cpu/matvec.h"
#include "cpu/spmv.h"
#include "formats/bitmap_i8.h"
#include "formats/int8_rows.h"
#include "formats/mdcsr.h"

using namespace pdvm;
using core::WeightType;

namespace {

// rows x cols zeros with room for the row scales
formats::QuantizedMatrix zero_matrix(int64_t rows, int64_t cols) {
  formats::QuantizedMatrix m;
  m.rows = rows;
  m.cols = cols;
  m.q.assign(size_t(rows * cols), 0);
  m.scale.resize(size_t(rows));
  return m;
}

formats::QuantizedMatrix make_matrix(int64_t rows, int64_t cols, double sparsity, uint32_t seed, bool edges) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::uniform_int_distribution<int> v(-128, 127);
  formats::QuantizedMatrix m = zero_matrix(rows, cols);
  for (int64_t r = 0; r < rows; ++r) {
    m.scale[size_t(r)] = float(0.001 + 0.01 * u(rng));
    for (int64_t c = 0; c < cols; ++c)
      if (u(rng) >= sparsity) m.q[size_t(r * cols + c)] = int8_t(v(rng));
  }
  if (edges && rows >= 4) {
    int8_t* q0 = m.q.data();
    for (int64_t c = 0; c < cols; ++c) q0[c] = 0;                              // row 0 empty
    for (int64_t c = 0; c < cols; ++c) m.q[size_t(cols + c)] = int8_t(1 + c % 120);  // row 1 full
    int8_t* q2 = m.q.data() + 2 * cols;                               // row 2: gaps 255, 256
    for (int64_t c = 0; c < cols; ++c) q2[c] = 0;
    for (int64_t c : {int64_t(0), int64_t(255), int64_t(511), int64_t(1022)})
      if (c < cols) q2[c] = -128;
    int8_t* q3 = m.q.data() + 3 * cols;                               // row 3: last column only
    for (int64_t c = 0; c < cols; ++c) q3[c] = 0;
    q3[cols - 1] = 127;
  }
  return m;
}

// y_ref[r] = scale_r * sum_c q[r][c] * xv[c] in fp64; also sum |terms| for the tolerance.
void reference(const formats::QuantizedMatrix& m, const std::vector<double>& xv, std::vector<double>& y,
               std::vector<double>& mag) {
  y.assign(size_t(m.rows), 0);
  mag.assign(size_t(m.rows), 0);
  for (int64_t r = 0; r < m.rows; ++r) {
    double s = 0, a = 0;
    for (int64_t c = 0; c < m.cols; ++c) {
      const double t = double(m.q[size_t(r * m.cols + c)]) * xv[size_t(c)];
      s += t;
      a += std::fabs(t);
    }
    y[size_t(r)] = double(m.scale[size_t(r)]) * s;
    mag[size_t(r)] = double(m.scale[size_t(r)]) * a;
  }
}

// qm through the kernel of `type` against the references above; x ~ N(0, 1), times x_outlier at
// every 97th column (activations with a few large channels: the whole-vector x16 scale of MdCSR
// then follows the outliers).
// align: MdCSR's window alignment (formats::encode_mdcsr); off, the kernel's fallback paths run.
void check_matrix(WeightType type, const formats::QuantizedMatrix& qm, uint32_t seed, core::ThreadPool& pool,
                  float x_outlier = 1.0f, bool align = true) {
  const int64_t rows = qm.rows, cols = qm.cols;
  std::vector<uint8_t> dense;
  formats::SparseArrays arrays;
  core::SparseLayout layout;
  core::Matrix w;
  if (type == WeightType::kI8Row) {
    dense = formats::encode_i8_rows(qm);
    w = {WeightType::kI8Row, rows, cols, dense.data()};
  } else {
    auto enc = type == WeightType::kMdCsr ? formats::encode_mdcsr(qm, align) : formats::encode_bitmap_i8(qm);
    ASSERT_TRUE(enc.is_ok());
    arrays = std::move(*enc);
    layout = arrays.layout();
    w = arrays.matrix(&layout);
  }
  std::mt19937 rng(seed + 1000);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> x(static_cast<size_t>(cols));
  for (auto& v : x) v = nd(rng);
  for (size_t c = 0; c < x.size(); c += 97) x[c] *= x_outlier;
  cpu::PreparedInput px(cols);
  px.prepare(x.data(), cols);
  std::vector<double> xq(static_cast<size_t>(cols)), xf(static_cast<size_t>(cols)), xerr(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; ++c) {
    xq[size_t(c)] = double(px.q8()[c]) * double(px.q8_scale()[c / 32]) +
                    double(px.q8_lo()[c]) * double(px.q8_fine_scale()[c / 32]);
    xf[size_t(c)] = double(x[size_t(c)]);
    xerr[size_t(c)] = type == WeightType::kMdCsr ? double(px.x16_scale()) * 0.5
                                                 : double(px.q8_fine_scale()[c / 32]) * 0.5;
  }
  // The AVX-512 kernels multiply x's two-term int8 codes (MdCSR: its 16-bit codes); the scalar
  // fallbacks of non-AVX-512 builds (e.g. PDVM_NATIVE=OFF) multiply x in f32.
  const bool scalar = std::string_view(cpu::spmv_isa()) == "scalar";
  const bool uses_q8 = type != WeightType::kMdCsr && !scalar;
  std::vector<double> y_ref, mag, y_true, mag_true, err_bound, dummy;
  reference(qm, uses_q8 ? xq : xf, y_ref, mag);
  reference(qm, xf, y_true, mag_true);
  {
    formats::QuantizedMatrix absm = qm;
    for (auto& q : absm.q) q = int8_t(q == -128 ? 127 : std::abs(q));  // |q| (127 for -128: scaled below)
    reference(absm, xerr, err_bound, dummy);
  }
  std::vector<float> y(size_t(rows), NAN), y_rows(size_t(rows), NAN);
  cpu::matvec(w, px, y.data(), pool);
  cpu::matvec_rows(w, px, y_rows.data(), 0, rows);
  for (int64_t r = 0; r < rows; ++r) {
    const double tol = 1e-5 * mag[size_t(r)] + 1e-6 + (uses_q8 ? 0.0 : err_bound[size_t(r)] * 128.0 / 127.0);
    ASSERT_NEAR(y[size_t(r)], y_ref[size_t(r)], tol) << "row " << r;
    ASSERT_EQ(y[size_t(r)], y_rows[size_t(r)]) << "row " << r << ": threaded and single-thread differ";
    const double true_tol = err_bound[size_t(r)] * 128.0 / 127.0 + tol;
    ASSERT_NEAR(y[size_t(r)], y_true[size_t(r)], true_tol) << "row " << r << " vs unquantized x";
  }
}

void check(WeightType type, int64_t rows, int64_t cols, double sparsity, uint32_t seed, core::ThreadPool& pool) {
  SCOPED_TRACE(testing::Message() << core::weight_type_name(type) << " " << rows << "x" << cols << " sparsity "
                                  << sparsity);
  check_matrix(type, make_matrix(rows, cols, sparsity, seed, true), seed, pool);
}

// Rows whose density changes along the row, in runs of 40-400 columns, from full to one entry per
// 300 columns, plus single gaps of 127-129 and 255-257 columns: within one row (encoded without
// window alignment), groups of 4 chunks that fit the row's shared window, groups that only fit
// one window per chunk, and chunks with an offset >= 128 (the gathered ones) all occur, at every
// share mode the row's mean span picks.
formats::QuantizedMatrix make_mixed_matrix(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::uniform_int_distribution<int> v(-127, 127), run(40, 400), pick(0, 7);
  const double keep[] = {1.0, 0.9, 0.7, 0.5, 0.35, 0.2, 0.05, 1.0 / 300};
  formats::QuantizedMatrix m = zero_matrix(rows, cols);
  for (int64_t r = 0; r < rows; ++r) {
    m.scale[size_t(r)] = float(0.001 + 0.01 * u(rng));
    // Rows differ in their mix, so their mean span (and so the kernel's share mode) differs too.
    const int bias = int(r % 4);
    for (int64_t c = 0; c < cols;) {
      const int64_t end = std::min<int64_t>(cols, c + run(rng));
      const double p = keep[std::min(7, pick(rng) + bias)];
      for (; c < end; ++c)
        if (u(rng) < p) m.q[size_t(r * cols + c)] = int8_t(v(rng) == 0 ? 1 : v(rng));
      if (u(rng) < 0.3) c += std::uniform_int_distribution<int>(127, 129)(rng) - 1;  // gaps 127..129
      else if (u(rng) < 0.15) c += std::uniform_int_distribution<int>(255, 257)(rng) - 1;
    }
  }
  return m;
}

}  // namespace

TEST(Spmv, MdCsrMixedSpansWithinRows) {
  core::ThreadPool pool(2);
  uint32_t seed = 500;
  for (int64_t cols : {300, 1536, 5120, 17920})
    for (float outlier : {1.0f, 100.0f}) {
      SCOPED_TRACE(testing::Message() << "mixed " << cols << " cols, outlier x" << outlier);
      // unaligned (the encoding of older files): every fallback path; aligned: the encoder's own
      check_matrix(WeightType::kMdCsr, make_mixed_matrix(24, cols, seed), seed, pool, outlier, false);
      if (HasFatalFailure()) return;
      check_matrix(WeightType::kMdCsr, make_mixed_matrix(24, cols, seed), seed, pool, outlier, true);
      ++seed;
      if (HasFatalFailure()) return;
    }
}

TEST(Spmv, AllFormatsManyShapesAndSparsities) {
  core::ThreadPool pool(2);
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{4, 1},   {5, 3},    {4, 64},   {7, 65},   {16, 96},
                                                           {33, 200}, {9, 511}, {64, 576}, {5, 1025}, {40, 1536},
                                                           {4, 5120}, {3, 17920}, {2, 40000},
                                                           {19, 9000}};  // wide rows: 8-, 2- and 1-row passes
  uint32_t seed = 1;
  for (auto type : {WeightType::kI8Row, WeightType::kMdCsr, WeightType::kBitmapI8})
    for (auto [rows, cols] : shapes)
      for (double s : {0.0, 0.3, 0.5, 0.7, 0.9, 1.0}) {
        if (type == WeightType::kI8Row && s > 0.0 && s < 0.9) continue;  // dense: sparsity is just zeros
        check(type, rows, cols, s, seed++, pool);
        if (HasFatalFailure()) return;
      }
}

TEST(Spmv, MatvecMultiMixesFormats) {
  core::ThreadPool pool(2);
  const int64_t cols = 320;
  const auto a = make_matrix(48, cols, 0.5, 11, false);
  const auto b = make_matrix(17, cols, 0.7, 12, false);
  auto md = formats::encode_mdcsr(a);
  auto bm = formats::encode_bitmap_i8(b);
  ASSERT_TRUE(md.is_ok() && bm.is_ok());
  const auto la = md->layout(), lb = bm->layout();
  const core::Matrix wa = md->matrix(&la), wb = bm->matrix(&lb);
  std::vector<float> x(cols);
  for (int64_t c = 0; c < cols; ++c) x[size_t(c)] = float(std::sin(0.1 * double(c)));
  cpu::PreparedInput px(cols);
  px.prepare(x.data(), cols);
  std::vector<float> ya(48), yb(17), ya1(48), yb1(17);
  const cpu::MatvecJob jobs[] = {{&wa, ya.data()}, {&wb, yb.data()}};
  cpu::matvec_multi(jobs, px, pool);
  cpu::matvec_rows(wa, px, ya1.data(), 0, 48);
  cpu::matvec_rows(wb, px, yb1.data(), 0, 17);
  EXPECT_EQ(ya, ya1);
  EXPECT_EQ(yb, yb1);
}
