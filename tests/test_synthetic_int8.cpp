// Synthetic models in pdvm's int8 formats (i8_row, mdcsr, bitmap_i8): every layer row keeps
// round((1 - sparsity) * cols) weights (counted through the formats' reference decoders), the
// validators accept the arrays, the weights have std ~ 1/sqrt(cols), the bytes do not depend on
// the thread count, and the CPU reference and fast backends agree on the logits.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <tuple>
#include <vector>

#include "cpu_kernel_parity.h"
#include "cpu/cpu_backend.h"
#include "formats/bitmap_i8.h"
#include "formats/int8_rows.h"
#include "formats/mdcsr.h"
#include "model/synthetic.h"

namespace pdvm::model {
namespace {

using core::WeightType;

// A small custom shape: d_model 256, d_ff 416 (not a multiple of 64, so w_down's rows end in a
// partial bitmap group), 4/2 heads of 64, 2 layers, q8_0 embedding and LM head.
SyntheticSpec small_spec(WeightType t, double sparsity, int threads = 0) {
  SyntheticSpec s = parse_shape("smollm2-135m").value();
  core::ModelConfig& c = s.config;
  c.d_model = 256; c.d_ff = 416; c.n_heads = 4; c.n_kv_heads = 2; c.head_dim = 64; c.rope_dim = 64;
  c.n_layers = 2; c.vocab_size = 384; c.tie_embeddings = false;
  s.shape = "custom";
  s.layer_type = t;
  s.head_type = WeightType::kQ8_0;
  s.sparsity = sparsity;
  s.threads = threads;
  return s;
}

std::vector<const core::Matrix*> layer_matrices(const core::Model& m) {
  std::vector<const core::Matrix*> v;
  for (const auto& l : m.layers)
    for (const auto* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) v.push_back(w);
  return v;
}

// Row r as int8 + scale through the format's reference decoder (dequantize for i8_row's bytes).
float decode_row(const core::Matrix& w, int64_t r, std::vector<int8_t>& q) {
  q.assign(size_t(w.cols), 0);
  switch (w.type) {
    case WeightType::kMdCsr: return formats::mdcsr_decode_row(w, r, q.data());
    case WeightType::kBitmapI8: return formats::bitmap_i8_decode_row(w, r, q.data());
    default: {
      float scale;
      std::memcpy(&scale, w.row(r), 4);
      std::memcpy(q.data(), w.row(r) + 4, size_t(w.cols));
      return scale;
    }
  }
}

// The array lengths a layout implies, checked against its byte total (which the builder computed
// from the real array sizes), then handed to the validator.
Status validate(const core::Matrix& w) {
  if (w.type == WeightType::kI8Row) return formats::validate_i8_rows(w.data, w.n_bytes(), w.rows, w.cols, "w");
  const core::SparseLayout& s = *w.sparse;
  const bool md = w.type == WeightType::kMdCsr;
  formats::SparseLengths len;
  len.row_ptr = size_t(w.rows) + 1;
  len.row_scale = size_t(w.rows);
  len.values = size_t(s.n_values);
  len.deltas = md ? size_t(s.n_values) : 0;
  len.chunk_base = md ? size_t(s.row_ptr[w.rows]) : 0;
  len.masks = md ? 0 : size_t(w.rows * formats::bitmap_groups(w.cols));
  const size_t bytes = len.row_ptr * 4 + len.row_scale * 4 + len.values + len.deltas + len.chunk_base * 2 + len.masks * 8;
  if (bytes != s.n_bytes) return Status(StatusCode::kInternal, "layout bytes " + std::to_string(s.n_bytes) +
                                                                   " != arrays " + std::to_string(bytes));
  return md ? formats::validate_mdcsr(s, len, w.rows, w.cols, "w") : formats::validate_bitmap_i8(s, len, w.rows, w.cols, "w");
}

class SyntheticInt8 : public testing::TestWithParam<std::tuple<WeightType, double>> {};

TEST_P(SyntheticInt8, KeptFractionValidatorsAndStatistics) {
  const auto [type, sparsity] = GetParam();
  size_t last_done = 0, total = 0;
  auto m = make_synthetic_model(small_spec(type, sparsity), [&](size_t done, size_t t) {
    EXPECT_GE(done, last_done);
    last_done = done;
    total = t;
  });
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  EXPECT_EQ(last_done, total);
  EXPECT_EQ(m->tok_embd.type, WeightType::kQ8_0);
  EXPECT_EQ(m->output.type, WeightType::kQ8_0);
  std::vector<int8_t> q;
  for (const core::Matrix* w : layer_matrices(*m)) {
    ASSERT_EQ(w->type, type);
    const Status v = validate(*w);
    ASSERT_TRUE(v.is_ok()) << v.message();
    int64_t kept_total = 0;
    double s2 = 0, s1 = 0;
    for (int64_t r = 0; r < w->rows; ++r) {
      const float scale = decode_row(*w, r, q);
      ASSERT_TRUE(std::isfinite(scale) && scale > 0) << r;
      int64_t kept = 0;
      for (int8_t x : q) {
        kept += x != 0;
        EXPECT_NE(x, -128);
        s1 += double(scale) * x;
        s2 += double(scale) * x * double(scale) * x;
      }
      kept_total += kept;
      // exactly round((1 - s) * cols): within 1/cols of the target fraction
      ASSERT_LE(std::fabs(double(kept) / double(w->cols) - (1.0 - sparsity)), 1.0 / double(w->cols))
          << "row " << r << " of a [" << w->rows << ", " << w->cols << "] matrix keeps " << kept;
    }
    if (w->sparse) {
      EXPECT_EQ(w->sparse->n_nonzero, kept_total);
    }
    const double n = double(w->rows) * double(w->cols);
    const double sd = std::sqrt(s2 / n - (s1 / n) * (s1 / n)), want = 1.0 / std::sqrt(double(w->cols));
    EXPECT_NEAR(sd, want, 0.1 * want);
    EXPECT_LT(std::fabs(s1 / n), 0.05 * want);
  }
}

// Same seed -> identical arrays with 1 and 2 threads; another seed -> different ones.
TEST_P(SyntheticInt8, DeterministicWhateverTheThreads) {
  const auto [type, sparsity] = GetParam();
  auto a = make_synthetic_model(small_spec(type, sparsity, 1));
  auto b = make_synthetic_model(small_spec(type, sparsity, 2));
  auto other = small_spec(type, sparsity, 2);
  other.seed += 1;
  auto c = make_synthetic_model(other);
  ASSERT_TRUE(a.is_ok() && b.is_ok() && c.is_ok());
  const auto wa = layer_matrices(*a), wb = layer_matrices(*b), wc = layer_matrices(*c);
  bool any_differs = false;
  for (size_t i = 0; i < wa.size(); ++i) {
    ASSERT_EQ(wa[i]->n_bytes(), wb[i]->n_bytes()) << i;
    if (!wa[i]->sparse) {
      EXPECT_EQ(std::memcmp(wa[i]->data, wb[i]->data, wa[i]->n_bytes()), 0) << i;
      any_differs |= std::memcmp(wa[i]->data, wc[i]->data, wa[i]->n_bytes()) != 0;
      continue;
    }
    const core::SparseLayout &x = *wa[i]->sparse, &y = *wb[i]->sparse;
    ASSERT_EQ(x.n_values, y.n_values);
    const int64_t rows = wa[i]->rows;
    EXPECT_EQ(std::memcmp(x.row_ptr, y.row_ptr, size_t(rows + 1) * 4), 0) << i;
    EXPECT_EQ(std::memcmp(x.row_scale, y.row_scale, size_t(rows) * 4), 0) << i;
    EXPECT_EQ(std::memcmp(x.values, y.values, size_t(x.n_values)), 0) << i;
    if (x.deltas) {
      EXPECT_EQ(std::memcmp(x.deltas, y.deltas, size_t(x.n_values)), 0) << i;
      EXPECT_EQ(std::memcmp(x.chunk_base, y.chunk_base, size_t(x.row_ptr[rows]) * 2), 0) << i;
    } else {
      EXPECT_EQ(std::memcmp(x.masks, y.masks, size_t(rows * formats::bitmap_groups(wa[i]->cols)) * 8), 0) << i;
    }
    const core::SparseLayout& z = *wc[i]->sparse;
    any_differs |= std::memcmp(x.row_scale, z.row_scale, size_t(rows) * 4) != 0;
  }
  EXPECT_TRUE(any_differs);
}

// The CPU reference backend (fp64 sums over the decoded int8 rows) against the fast one, as
// test_sparse_backends.cpp does for converted models: 2e-4 * max|logit|.
TEST_P(SyntheticInt8, ReferenceBackendAgreesWithFast) {
  const auto [type, sparsity] = GetParam();
  auto m = make_synthetic_model(small_spec(type, sparsity));
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  double max_err = 0, max_abs = 0;
  test::reference_vs_fast_logits(*m, 6, 384, &max_err, &max_abs);
  if (HasFatalFailure()) return;
  ASSERT_GT(max_abs, 0.0);
  EXPECT_LE(max_err / max_abs, 2e-4);
}

INSTANTIATE_TEST_SUITE_P(
    Formats, SyntheticInt8,
    testing::Values(std::make_tuple(WeightType::kI8Row, 0.0), std::make_tuple(WeightType::kMdCsr, 0.3),
                    std::make_tuple(WeightType::kMdCsr, 0.5), std::make_tuple(WeightType::kMdCsr, 0.7),
                    std::make_tuple(WeightType::kBitmapI8, 0.3), std::make_tuple(WeightType::kBitmapI8, 0.5),
                    std::make_tuple(WeightType::kBitmapI8, 0.7)),
    [](const auto& info) {
      return std::string(core::weight_type_name(std::get<0>(info.param))) + "_" +
             std::to_string(int(std::lround(100 * std::get<1>(info.param))));
    });

TEST(SyntheticInt8Errors, SparsityOutOfRangeOrForADenseType) {
  for (double bad : {1.0, 1.5, -0.1}) {
    auto m = make_synthetic_model(small_spec(WeightType::kMdCsr, bad));
    ASSERT_FALSE(m.is_ok()) << bad;
    EXPECT_NE(m.status().message().find("[0, 1)"), std::string::npos) << m.status().message();
  }
  for (WeightType dense : {WeightType::kBF16, WeightType::kI8Row}) {
    auto m = make_synthetic_model(small_spec(dense, 0.5));
    ASSERT_FALSE(m.is_ok());
    EXPECT_NE(m.status().message().find("sparse types"), std::string::npos) << m.status().message();
  }
  auto head = small_spec(WeightType::kBitmapI8, 0.5);
  head.head_type = WeightType::kMdCsr;
  auto m = make_synthetic_model(head);
  ASSERT_FALSE(m.is_ok());
  EXPECT_NE(m.status().message().find("LM head"), std::string::npos) << m.status().message();
}

}  // namespace
}  // namespace pdvm::model
