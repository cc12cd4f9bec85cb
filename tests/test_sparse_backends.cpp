// The reference CPU backend runs compressed models too (its row decoder handles the sparse
// formats), and agrees with the fast backend on them: int8 rows, MdCSR and bitmap at 0% and 50%
// sparsity. Tolerance 2e-4 * max|logit|: the fast path's two-term int8 activations (see
// test_model_smollm2.cpp) against fp64 sums over the same int8 weights.
#include <gtest/gtest.h>

#include <cmath>

#include "cpu_kernel_parity.h"
#include "model/convert.h"
#include "model/load.h"

using namespace pdvm;

class SparseBackends : public ::testing::TestWithParam<std::tuple<model::CompressFormat, double>> {};

TEST_P(SparseBackends, ReferenceAgreesWithFast) {
  auto src = model::load_model(std::string(PDVM_TEST_DATA) + "/fixtures/llama");
  ASSERT_TRUE(src.is_ok()) << src.status().message();
  model::ConvertOptions o;
  o.format = std::get<0>(GetParam());
  o.sparsity = std::get<1>(GetParam());
  auto m = model::compress_model(src->model, o, nullptr);
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  double max_err = 0, max_abs = 0;
  test::reference_vs_fast_logits(*m, 12, 300, &max_err, &max_abs);
  if (HasFatalFailure()) return;
  EXPECT_LE(max_err / max_abs, 2e-4);
}

INSTANTIATE_TEST_SUITE_P(
    Formats, SparseBackends,
    ::testing::Values(std::make_tuple(model::CompressFormat::kI8Row, 0.0),
                      std::make_tuple(model::CompressFormat::kMdCsr, 0.0),
                      std::make_tuple(model::CompressFormat::kMdCsr, 0.5),
                      std::make_tuple(model::CompressFormat::kBitmapI8, 0.5)));
