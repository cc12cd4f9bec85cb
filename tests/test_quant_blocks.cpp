// formats::dequantize_row against the `gguf` Python package's numpy dequantization
// (gguf.quants.dequantize) of random blocks of every type pdvm runs. The fixture
// tests/data/quant/quant_blocks.gguf is written by scripts/make_quant_fixtures.py with gguf-py's
// own writer: for each type, "<type>.raw" (2 rows x 512 columns of random blocks) and
// "<type>.expected" (F32, the reference output).
//
// Tolerance: none, bitwise equality (the inputs hold no NaN). Both sides evaluate the same f32
// expressions in the same order (f16 scale -> f32, then d * q, d * q + m, (d * sc) * q - m1),
// each correctly rounded. FMA contraction cannot change the result either: every product that
// feeds an add is exact in f32 (an f16 scale has 11 significant bits, times a 4- to 8-bit
// integer is at most 19 bits; Q5_K's (d * sc) * q is 11 + 6 + 5 = 22 bits), so fusing it rounds
// nothing away. Checked: exact with GCC 12
// -O2 and clang 14 -O3 -march=native, also with -ffp-contract=fast (clang emits vfmadd here).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <ostream>
#include <vector>

#include "core/half.h"
#include "formats/gguf.h"
#include "formats/quant_blocks.h"

namespace pdvm::formats {
namespace {

using core::WeightType;

const char* kFixture = PDVM_TEST_DATA "/quant/quant_blocks.gguf";

struct Case {
  WeightType type;
  const char* name;  // tensor name prefix in the fixture
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class DequantizeRow : public testing::TestWithParam<Case> {};

TEST_P(DequantizeRow, MatchesGgufPy) {
  const Case c = GetParam();
  auto f = GgufFile::open(kFixture);
  ASSERT_TRUE(f.is_ok()) << f.status().message() << " (run scripts/make_quant_fixtures.py)";
  const GgufTensorInfo* raw = f->find(std::string(c.name) + ".raw");
  const GgufTensorInfo* expected = f->find(std::string(c.name) + ".expected");
  ASSERT_NE(raw, nullptr);
  ASSERT_NE(expected, nullptr);
  ASSERT_EQ(raw->weight_type, c.type);
  ASSERT_EQ(expected->weight_type, WeightType::kF32);
  ASSERT_EQ(raw->dims.size(), 2u);
  ASSERT_EQ(raw->dims, expected->dims);
  const int64_t cols = raw->dims[0], rows = raw->dims[1];
  ASSERT_EQ(raw->n_bytes, size_t(rows) * core::row_bytes(c.type, cols));

  int64_t n_nonzero = 0;
  std::vector<float> out(size_t(cols) + 1);
  for (int64_t r = 0; r < rows; ++r) {
    out[size_t(cols)] = -12345.0f;  // guard: nothing written past the row
    dequantize_row(c.type, raw->data + size_t(r) * core::row_bytes(c.type, cols), cols,
                   out.data());
    EXPECT_EQ(out[size_t(cols)], -12345.0f);
    for (int64_t i = 0; i < cols; ++i) {
      float want;
      std::memcpy(&want, expected->data + 4 * size_t(r * cols + i), 4);
      const float got = out[size_t(i)];
      ASSERT_FALSE(std::isnan(want)) << "fixture holds a NaN at row " << r << " col " << i;
      n_nonzero += want != 0.0f;
      ASSERT_EQ(core::f32_to_bits(got), core::f32_to_bits(want))
          << c.name << " row " << r << " col " << i << ": got " << got << ", gguf-py gives "
          << want;
    }
  }
  // The fixture must exercise something: most outputs are non-zero.
  EXPECT_GT(n_nonzero, rows * cols / 2);
}

INSTANTIATE_TEST_SUITE_P(
    AllTypes, DequantizeRow,
    testing::Values(Case{WeightType::kF32, "f32"}, Case{WeightType::kF16, "f16"},
                    Case{WeightType::kBF16, "bf16"}, Case{WeightType::kQ8_0, "q8_0"},
                    Case{WeightType::kQ4_0, "q4_0"}, Case{WeightType::kQ4_1, "q4_1"},
                    Case{WeightType::kQ4_K, "q4_k"}, Case{WeightType::kQ6_K, "q6_k"},
                    Case{WeightType::kQ5_0, "q5_0"}, Case{WeightType::kQ5_1, "q5_1"},
                    Case{WeightType::kQ5_K, "q5_k"}),
    [](const testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

// split_row_int8 (the CUDA upload's source for K-quants and mixed fused matrices) against the
// same gguf-py reference: scale * q + offset must give its floats bit for bit (same products,
// see the file comment), and the offsets must be equal over each 32 weights (the GPU applies
// one per 32 with the block's sum of x).
class SplitRowInt8 : public testing::TestWithParam<Case> {};

TEST_P(SplitRowInt8, MatchesGgufPy) {
  const Case c = GetParam();
  ASSERT_TRUE(has_int8_codes(c.type));
  auto f = GgufFile::open(kFixture);
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  const GgufTensorInfo* raw = f->find(std::string(c.name) + ".raw");
  const GgufTensorInfo* expected = f->find(std::string(c.name) + ".expected");
  ASSERT_NE(raw, nullptr);
  ASSERT_NE(expected, nullptr);
  const int64_t cols = raw->dims[0], rows = raw->dims[1];
  std::vector<int8_t> q(static_cast<size_t>(cols));
  std::vector<float> scale(size_t(cols / 16) + 1), offset(size_t(cols / 16) + 1);
  int64_t n_nonzero_q = 0;
  for (int64_t r = 0; r < rows; ++r) {
    scale.back() = offset.back() = -12345.0f;  // guard: nothing written past the row
    split_row_int8(c.type, raw->data + size_t(r) * core::row_bytes(c.type, cols), cols, q.data(),
                   scale.data(), offset.data());
    EXPECT_EQ(scale.back(), -12345.0f);
    EXPECT_EQ(offset.back(), -12345.0f);
    for (int64_t g = 0; g + 1 < cols / 16; g += 2)
      ASSERT_EQ(offset[size_t(g)], offset[size_t(g + 1)]) << c.name << " row " << r << " group " << g;
    for (int64_t i = 0; i < cols; ++i) {
      float want;
      std::memcpy(&want, expected->data + 4 * size_t(r * cols + i), 4);
      const float got = scale[size_t(i / 16)] * float(q[size_t(i)]) + offset[size_t(i / 16)];
      n_nonzero_q += q[size_t(i)] != 0;
      ASSERT_EQ(got, want) << c.name << " row " << r << " col " << i << ": q " << int(q[size_t(i)])
                           << " scale " << scale[size_t(i / 16)] << " offset "
                           << offset[size_t(i / 16)];
    }
  }
  EXPECT_GT(n_nonzero_q, rows * cols / 2);
}

INSTANTIATE_TEST_SUITE_P(
    BlockTypes, SplitRowInt8,
    testing::Values(Case{WeightType::kQ8_0, "q8_0"}, Case{WeightType::kQ4_0, "q4_0"},
                    Case{WeightType::kQ4_1, "q4_1"}, Case{WeightType::kQ4_K, "q4_k"},
                    Case{WeightType::kQ6_K, "q6_k"}, Case{WeightType::kQ5_0, "q5_0"},
                    Case{WeightType::kQ5_1, "q5_1"}, Case{WeightType::kQ5_K, "q5_k"}),
    [](const testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

TEST(QuantBlocks, Int8CodesOnlyForBlockTypes) {
  for (auto t : {WeightType::kF32, WeightType::kF16, WeightType::kBF16, WeightType::kI8Row,
                 WeightType::kMdCsr, WeightType::kBitmapI8})
    EXPECT_FALSE(has_int8_codes(t)) << core::weight_type_name(t);
}

TEST(QuantBlocks, FixtureCoversEveryWeightType) {
  auto f = GgufFile::open(kFixture);
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  for (int t = 0; t <= int(WeightType::kQ5_K); ++t) {
    const auto type = WeightType(t);
    bool found = false;
    for (const auto& info : f->tensors()) found |= info.name.ends_with(".raw") && info.weight_type == type;
    EXPECT_TRUE(found) << core::weight_type_name(type);
  }
}

TEST(QuantBlocks, GgmlIdsMatchWeightTypes) {
  for (int t = 0; t <= int(WeightType::kQ5_K); ++t) {
    const auto type = WeightType(t);
    const uint32_t id = ggml_type_from_weight_type(type);
    EXPECT_EQ(weight_type_from_ggml(id), type);
    const auto info = ggml_type_info(id);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->block_size, core::weight_type_info(type).block_size);
    EXPECT_EQ(info->block_bytes, core::weight_type_info(type).block_bytes);
  }
}

}  // namespace
}  // namespace pdvm::formats
