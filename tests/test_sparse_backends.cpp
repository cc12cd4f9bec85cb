// The reference CPU backend runs compressed models too (its row decoder handles the sparse
// formats), and agrees with the fast backend on them: int8 rows, MdCSR and bitmap at 0% and 50%
// sparsity. Tolerance 2e-4 * max|logit|: the fast path's two-term int8 activations (see
// test_model_smollm2.cpp) against fp64 sums over the same int8 weights.
#include <gtest/gtest.h>

#include <cmath>

#include "cpu/cpu_backend.h"
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
  std::vector<std::vector<float>> logits[2];
  for (int k = 0; k < 2; ++k) {
    cpu::CpuOptions co;
    co.kernels = k == 0 ? cpu::CpuKernels::kReference : cpu::CpuKernels::kFast;
    co.context = 16;
    auto b = cpu::make_cpu_backend(*m, co);
    ASSERT_TRUE(b.is_ok()) << b.status().message();
    for (int pos = 0; pos < 12; ++pos) {
      auto l = (*b)->execute_model((pos * 37 + 1) % 300, pos);
      ASSERT_TRUE(l.is_ok()) << l.status().message();
      logits[k].emplace_back(l->begin(), l->end());
    }
  }
  double max_abs = 0, max_err = 0;
  for (size_t p = 0; p < logits[0].size(); ++p)
    for (size_t i = 0; i < logits[0][p].size(); ++i) {
      ASSERT_TRUE(std::isfinite(logits[1][p][i]));
      max_abs = std::max(max_abs, double(std::fabs(logits[0][p][i])));
      max_err = std::max(max_err, double(std::fabs(logits[0][p][i] - logits[1][p][i])));
    }
  EXPECT_LE(max_err / max_abs, 2e-4);
}

INSTANTIATE_TEST_SUITE_P(
    Formats, SparseBackends,
    ::testing::Values(std::make_tuple(model::CompressFormat::kI8Row, 0.0),
                      std::make_tuple(model::CompressFormat::kMdCsr, 0.0),
                      std::make_tuple(model::CompressFormat::kMdCsr, 0.5),
                      std::make_tuple(model::CompressFormat::kBitmapI8, 0.5)));
