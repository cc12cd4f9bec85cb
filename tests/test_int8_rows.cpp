// Dense int8 rows (formats/int8_rows.h): the quantizer's error bound, the kI8Row layout read back
// by the reference dequantizer, and validation of bad scales.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "formats/int8_rows.h"
#include "formats/quant_blocks.h"

using namespace pdvm;

TEST(Int8Rows, QuantizeErrorWithinHalfStep) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int64_t cols : {1, 7, 64, 513}) {
    std::vector<float> w(static_cast<size_t>(cols));
    for (auto& v : w) v = nd(rng);
    std::vector<int8_t> q(static_cast<size_t>(cols));
    const float s = formats::quantize_row_i8(w.data(), cols, q.data());
    float amax = 0;
    for (float v : w) amax = std::max(amax, std::fabs(v));
    EXPECT_FLOAT_EQ(s, amax / 127.0f);
    for (int64_t c = 0; c < cols; ++c) {
      EXPECT_LE(std::fabs(w[size_t(c)] - s * q[size_t(c)]), s * 0.5f * 1.0001f) << "col " << c;
      EXPECT_GE(q[size_t(c)], -127);
    }
  }
}

TEST(Int8Rows, ZeroRowHasZeroScale) {
  std::vector<float> w(10, 0.0f);
  std::vector<int8_t> q(10, 5);
  EXPECT_EQ(formats::quantize_row_i8(w.data(), 10, q.data()), 0.0f);
  for (int8_t v : q) EXPECT_EQ(v, 0);
}

TEST(Int8Rows, EncodeThenDequantizeRowIsExact) {
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> ud(-2, 2);
  const int64_t rows = 5, cols = 37;
  std::vector<float> w(size_t(rows * cols));
  for (auto& v : w) v = ud(rng);
  const auto qm = formats::quantize_matrix_i8(w.data(), rows, cols);
  const auto bytes = formats::encode_i8_rows(qm);
  ASSERT_EQ(bytes.size(), size_t(rows) * size_t(cols + 4));
  EXPECT_EQ(core::row_bytes(core::WeightType::kI8Row, cols), size_t(cols + 4));
  EXPECT_TRUE(formats::validate_i8_rows(bytes.data(), bytes.size(), rows, cols, "t").is_ok());
  std::vector<float> out(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    formats::dequantize_row(core::WeightType::kI8Row, bytes.data() + size_t(r) * size_t(cols + 4), cols, out.data());
    for (int64_t c = 0; c < cols; ++c)
      EXPECT_EQ(out[size_t(c)], qm.scale[size_t(r)] * float(qm.q[size_t(r * cols + c)]));
  }
}

TEST(Int8Rows, ValidationRejectsBadScalesAndSizes) {
  formats::QuantizedMatrix qm;
  qm.rows = 3;
  qm.cols = 4;
  qm.q.assign(12, 1);
  qm.scale = {1.0f, 2.0f, 3.0f};
  auto bytes = formats::encode_i8_rows(qm);
  const float nan = std::nanf("");
  std::memcpy(bytes.data() + 8, &nan, 4);  // row 1's scale
  const Status s = formats::validate_i8_rows(bytes.data(), bytes.size(), 3, 4, "m.pdvm: tensor 'x'");
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("row 1"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("tensor 'x'"), std::string::npos) << s.message();
  EXPECT_FALSE(formats::validate_i8_rows(bytes.data(), bytes.size() - 1, 3, 4, "t").is_ok());
}
