// Fast CPU matvec (src/cpu/matvec.*) against a plain reference written here: each row dequantized
// with formats::dequantize_row (the oracle), dotted with the f32 x in fp64. Every weight type,
// odd row counts, short and long rows, 1/2/3 threads, matvec / matvec_rows / matvec_multi.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"
#include "core/thread_pool.h"
#include "core/weight.h"
#include "cpu/matvec.h"
#include "formats/quant_blocks.h"

namespace pdvm::cpu {
namespace {

using core::Matrix;
using core::WeightType;

constexpr WeightType kAllTypes[] = {WeightType::kF32,  WeightType::kF16,  WeightType::kBF16,
                                    WeightType::kQ8_0, WeightType::kQ4_0, WeightType::kQ4_1,
                                    WeightType::kQ4_K, WeightType::kQ6_K, WeightType::kQ5_0,
                                    WeightType::kQ5_1, WeightType::kQ5_K};
constexpr double kUnitRoundoff = 1.0 / (1 << 24);  // f32

bool is_quantized(WeightType t) {
  return t != WeightType::kF32 && t != WeightType::kF16 && t != WeightType::kBF16;
}

// Byte ranges [begin, end) inside one block that hold codes (not scales), per quantized type.
std::pair<int, int> code_bytes(WeightType t) {
  switch (t) {
    case WeightType::kQ8_0: return {2, 34};
    case WeightType::kQ4_0: return {2, 18};
    case WeightType::kQ4_1: return {4, 20};
    case WeightType::kQ4_K: return {16, 144};
    case WeightType::kQ6_K: return {0, 192};  // ql and qh
    case WeightType::kQ5_0: return {2, 22};   // qh and qs
    case WeightType::kQ5_1: return {4, 24};
    case WeightType::kQ5_K: return {16, 176};
    default: return {0, 0};
  }
}

void put_f16(uint8_t* p, float v) {
  const uint16_t h = core::f32_to_f16(v);
  std::memcpy(p, &h, 2);
}

// Random valid blocks: random code bytes, random small f16 scales (GGUF-like magnitudes).
std::vector<uint8_t> random_matrix(WeightType t, int64_t rows, int64_t cols, std::mt19937& rng) {
  const size_t n = core::row_bytes(t, cols) * size_t(rows);
  std::vector<uint8_t> data(n);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f), mag(0.002f, 0.05f);
  const auto sign = [&] { return uni(rng) < 0 ? -1.0f : 1.0f; };
  if (!is_quantized(t)) {
    for (size_t i = 0; i < n / (t == WeightType::kF32 ? 4 : 2); ++i) {
      const float v = uni(rng);
      if (t == WeightType::kF32) std::memcpy(&data[4 * i], &v, 4);
      if (t == WeightType::kF16) put_f16(&data[2 * i], v);
      if (t == WeightType::kBF16) {
        const uint16_t b = core::f32_to_bf16(v);
        std::memcpy(&data[2 * i], &b, 2);
      }
    }
    return data;
  }
  for (auto& b : data) b = uint8_t(byte(rng));
  const size_t bb = size_t(core::weight_type_info(t).block_bytes);
  for (size_t off = 0; off < n; off += bb) {
    uint8_t* b = &data[off];
    const float d = sign() * mag(rng);
    switch (t) {
      case WeightType::kQ8_0:
      case WeightType::kQ4_0: put_f16(b, d); break;
      case WeightType::kQ4_1: put_f16(b, d); put_f16(b + 2, -8.0f * d * (0.5f + uni(rng) * 0.5f)); break;
      case WeightType::kQ4_K: put_f16(b, mag(rng) / 16); put_f16(b + 2, mag(rng) / 16); break;
      case WeightType::kQ6_K: put_f16(b + 208, mag(rng) / 16); break;
      case WeightType::kQ5_0: put_f16(b, d / 2); break;
      case WeightType::kQ5_1:
        put_f16(b, d / 2);
        put_f16(b + 2, -8.0f * d * (0.5f + uni(rng) * 0.5f));
        break;
      case WeightType::kQ5_K: put_f16(b, mag(rng) / 32); put_f16(b + 2, mag(rng) / 32); break;
      default: break;
    }
  }
  return data;
}

struct Reference {
  std::vector<double> y;    // fp64 dot of the dequantized row with the f32 x
  std::vector<double> tol;  // allowed |y_fast - y| per row
};

// Tolerance per row, a bound the kernels provably meet (so a real bug exceeds it):
//  * x quantization (quantized types only): x is rounded to two int8 terms per block of 32,
//    x ~= s_b q + s_b / 256 q_lo with s_b = max|x_b| / 127, so each x_c moves by at most
//    s_b / 512, or s_b / 256 where the residual's code is clamped to 127:
//    error <= sum_c |W_rc| s_b / 256. (One int8 term alone is off by up to s_b / 2: 128 x more.)
//  * f32 arithmetic: each partial sum lane adds about cols/8 terms, each term is a few roundings;
//    with the offset terms (Q4_0's -8d, Q5_0's -16d, Q4_1's and Q5_1's m, the K-quants' mins,
//    Q6_K's -32) the summed magnitudes
//    are sum_c (|W_rc| + 2 |offset_rc|) |x_c|. Bound: (cols/8 + 64) * 4u * that sum.
// For the float types only the second term applies (x is used exactly).
Reference reference(const Matrix& w, const std::vector<float>& x) {
  Reference ref;
  const int64_t cols = w.cols;
  std::vector<float> row(static_cast<size_t>(cols)), off(static_cast<size_t>(cols));
  std::vector<uint8_t> zero_codes(w.row_stride());
  std::vector<double> xstep(static_cast<size_t>(cols), 0.0);
  const bool quant = is_quantized(w.type);
  for (int64_t b = 0; quant && b < cols / 32; ++b) {
    double amax = 0;
    for (int l = 0; l < 32; ++l) amax = std::max(amax, std::fabs(double(x[size_t(b * 32 + l)])));
    for (int l = 0; l < 32; ++l) xstep[size_t(b * 32 + l)] = amax / 127.0 / 256.0;
  }
  const auto [cb, ce] = code_bytes(w.type);
  const size_t bb = size_t(core::weight_type_info(w.type).block_bytes);
  for (int64_t r = 0; r < w.rows; ++r) {
    formats::dequantize_row(w.type, w.row(r), cols, row.data());
    // The offset each weight carries: the row dequantized with every code byte zeroed.
    std::memcpy(zero_codes.data(), w.row(r), w.row_stride());
    for (size_t o = 0; quant && o < zero_codes.size(); o += bb) {
      std::memset(&zero_codes[o + size_t(cb)], 0, size_t(ce - cb));
    }
    if (quant) formats::dequantize_row(w.type, zero_codes.data(), cols, off.data());
    double dot = 0, qerr = 0, mag = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const double wc = row[size_t(c)], xc = x[size_t(c)];
      dot += wc * xc;
      qerr += std::fabs(wc) * xstep[size_t(c)];
      mag += (std::fabs(wc) + (quant ? 2 * std::fabs(double(off[size_t(c)])) : 0.0)) * std::fabs(xc);
    }
    ref.y.push_back(dot);
    ref.tol.push_back(qerr + (double(cols) / 8 + 64) * 4 * kUnitRoundoff * mag + 1e-30);
  }
  return ref;
}

std::vector<float> random_x(int64_t cols, std::mt19937& rng) {
  std::uniform_real_distribution<float> uni(-2.0f, 2.0f);
  std::vector<float> x(static_cast<size_t>(cols));
  for (auto& v : x) v = uni(rng);
  return x;
}

void expect_close(const std::vector<float>& y, const Reference& ref, const std::string& what) {
  ASSERT_EQ(y.size(), ref.y.size());
  int bad = 0;
  for (size_t r = 0; r < y.size() && bad < 5; ++r) {
    const double err = std::fabs(double(y[r]) - ref.y[r]);
    if (!std::isfinite(y[r]) || !(err <= ref.tol[r])) {
      ADD_FAILURE() << what << " row " << r << ": got " << y[r] << ", reference " << ref.y[r]
                    << ", |err| " << err << " > tol " << ref.tol[r];
      ++bad;
    }
  }
}

constexpr float kPoison = std::numeric_limits<float>::quiet_NaN();

class MatvecTest : public ::testing::TestWithParam<WeightType> {};

TEST_P(MatvecTest, MatchesReferenceOnEveryShapeAndThreadCount) {
  const WeightType t = GetParam();
  const int block = core::weight_type_info(t).block_size;
  std::mt19937 rng(1234 + int(t));
  core::ThreadPool pools[3] = {core::ThreadPool(1), core::ThreadPool(2), core::ThreadPool(3)};
  // Q4_1's AVX-512 kernel reads groups of 16 blocks as 5 loads; 32..480 cover tails of 1, 2, 3, 7,
  // 8 and 15 blocks (1, 1, 1, 3, 3 and 5 masked loads).
  std::vector<int64_t> col_set = {32, 64, 96, 224, 256, 480, 576, 1536, 2816, 17920};
  if (block == 1) col_set.insert(col_set.end(), {1, 17, 33, 1000});
  PreparedInput x(17920);
  for (int64_t cols : col_set) {
    if (cols % block != 0) continue;
    for (int64_t rows : {1, 7, 111, 500}) {
      if (rows * cols > 500 * 4096 && rows != 7) continue;  // keep the suite fast
      const auto data = random_matrix(t, rows, cols, rng);
      const Matrix w{t, rows, cols, data.data()};
      const auto xv = random_x(cols, rng);
      x.prepare(xv.data(), cols);
      const Reference ref = reference(w, xv);
      const std::string shape = std::string(core::weight_type_name(t)) + " " +
                                std::to_string(rows) + "x" + std::to_string(cols);
      std::vector<float> y(static_cast<size_t>(rows));
      for (auto& pool : pools) {
        std::fill(y.begin(), y.end(), kPoison);
        matvec(w, x, y.data(), pool);
        expect_close(y, ref, shape + " threads " + std::to_string(pool.size()));
      }
      // matvec_rows writes exactly its range.
      const int64_t r0 = rows / 3, r1 = rows - rows / 4;
      std::fill(y.begin(), y.end(), kPoison);
      matvec_rows(w, x, y.data(), r0, r1);
      for (int64_t r = 0; r < rows; ++r) {
        if (r < r0 || r >= r1) {
          EXPECT_TRUE(std::isnan(y[size_t(r)])) << shape << " matvec_rows wrote row " << r;
        } else {
          const double err = std::fabs(double(y[size_t(r)]) - ref.y[size_t(r)]);
          EXPECT_LE(err, ref.tol[size_t(r)]) << shape << " matvec_rows row " << r;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, MatvecTest, ::testing::ValuesIn(kAllTypes),
                         [](const auto& info) { return std::string(core::weight_type_name(info.param)); });

// Several matrices of different types and heights sharing one input, in one parallel region.
TEST(MatvecMulti, MatchesReferenceAcrossMixedJobs) {
  std::mt19937 rng(99);
  const int64_t cols = 512;
  const WeightType types[] = {WeightType::kQ4_1, WeightType::kQ4_K, WeightType::kF32,
                              WeightType::kQ8_0, WeightType::kQ6_K, WeightType::kQ5_K,
                              WeightType::kQ5_0, WeightType::kQ5_1};
  const int64_t heights[] = {576, 1, 111, 17, 64, 33, 5, 70};
  constexpr int kJobs = int(std::size(types));
  std::vector<std::vector<uint8_t>> data;
  std::vector<Matrix> mats;
  for (int i = 0; i < kJobs; ++i) data.push_back(random_matrix(types[i], heights[i], cols, rng));
  for (int i = 0; i < kJobs; ++i)
    mats.push_back({types[i], heights[i], cols, data[size_t(i)].data()});
  const auto xv = random_x(cols, rng);
  PreparedInput x(cols);
  x.prepare(xv.data(), cols);
  std::vector<std::vector<float>> ys(kJobs);
  std::vector<MatvecJob> jobs;
  for (int i = 0; i < kJobs; ++i) {
    ys[size_t(i)].assign(size_t(heights[i]), kPoison);
    jobs.push_back({&mats[size_t(i)], ys[size_t(i)].data()});
  }
  for (int threads : {1, 2, 3}) {
    core::ThreadPool pool(threads);
    for (auto& y : ys) std::fill(y.begin(), y.end(), kPoison);
    matvec_multi(jobs, x, pool);
    for (int i = 0; i < kJobs; ++i) {
      expect_close(ys[size_t(i)], reference(mats[size_t(i)], xv),
                   "multi job " + std::to_string(i) + " threads " + std::to_string(threads));
    }
  }
}

// A zero input (every x block's scale is 0) gives exactly zero, never 0/0.
TEST(Matvec, ZeroInputGivesZero) {
  std::mt19937 rng(5);
  core::ThreadPool pool(2);
  for (WeightType t : kAllTypes) {
    const auto data = random_matrix(t, 33, 512, rng);
    const Matrix w{t, 33, 512, data.data()};
    const std::vector<float> zeros(512, 0.0f);
    PreparedInput x(1024);
    x.prepare(zeros.data(), 512);
    std::vector<float> y(33, kPoison);
    matvec(w, x, y.data(), pool);
    for (float v : y) EXPECT_EQ(v, 0.0f) << core::weight_type_name(t);
  }
}

// The prepared two-term int8 copy reproduces x within s / 256 (s / 512 but for clamped
// residuals), its re-ordered copies agree with it, and its sums are those of the two-term values.
TEST(PreparedInput, QuantizesWithinAFineStep) {
  std::mt19937 rng(7);
  const auto xv = random_x(100, rng);  // not a multiple of 32: the tail block is zero-padded
  PreparedInput x(128);
  x.prepare(xv.data(), 100);
  ASSERT_EQ(x.cols(), 100);
  int clamped = 0;
  for (int b = 0; b < 4; ++b) {
    const float s = x.q8_scale()[b], f = x.q8_fine_scale()[b];
    EXPECT_EQ(f, s / 256.0f);
    double sum = 0, sum_lo = 0;
    for (int l = 0; l < 32; ++l) {
      const int c = 32 * b + l;
      const float want = c < 100 ? xv[size_t(c)] : 0.0f;
      const double got = double(x.q8()[c]) * s + double(x.q8_lo()[c]) * f;
      EXPECT_LE(std::fabs(x.q8()[c] * s - want), s * 0.5f * 1.0001f + 1e-12f) << c;
      EXPECT_LE(std::fabs(got - want), f * 1.0001 + 1e-12) << c;
      if (std::fabs(got - want) > f * 0.5001) ++clamped;
      EXPECT_LE(std::abs(int(x.q8_lo()[c])), 127) << c;
      EXPECT_EQ(x.f32()[c], want);
      EXPECT_EQ(int(x.u8()[c]), x.q8()[c] + 128);
      EXPECT_EQ(int(x.u8_lo()[c]), x.q8_lo()[c] + 128);
      // q8_nibble_pairs: per pair of blocks a[0:16], b[0:16], a[16:32], b[16:32].
      const int pair = b / 2 * 64 + (l / 16) * 32 + (b % 2) * 16 + l % 16;
      EXPECT_EQ(x.q8_nibble_pairs()[pair], x.q8()[c]);
      EXPECT_EQ(x.q8_lo_nibble_pairs()[pair], x.q8_lo()[c]);
      // q4_1_stream: value l % 16 of block b sits under stream byte 20 b + 4 + l % 16.
      const int sb = 20 * b + 4 + l % 16;
      const int8_t* at = x.q4_1_stream() + sb / 64 * 256 + sb % 64;
      EXPECT_EQ(at[l < 16 ? 0 : 64], x.q8()[c]);
      EXPECT_EQ(at[l < 16 ? 128 : 192], x.q8_lo()[c]);
      sum += got;
      if (l < 16) sum_lo += got;
    }
    EXPECT_NEAR(x.q8_scaled_sum32()[b], sum, 1e-5 * s * 32);
    EXPECT_NEAR(x.q8_scaled_sum16()[2 * b], sum_lo, 1e-5 * s * 16);
  }
  EXPECT_LE(clamped, 2);  // only values within float rounding of a half step clamp
  // Header bytes of the Q4_1 stream are zero: x must contribute nothing under d and m.
  for (int b = 0; b < 16; ++b) {
    for (int k = 0; k < 4; ++k) {
      const int sb = 20 * b + k;
      for (int part = 0; part < 4; ++part) EXPECT_EQ(x.q4_1_stream()[sb / 64 * 256 + part * 64 + sb % 64], 0);
    }
  }
}

}  // namespace
}  // namespace pdvm::cpu
