// Test helper: the CPU backend's reference kernels (fp64 sums over decoded weights) against its
// fast kernels on one model, for tests that check a weight format end to end.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/model.h"
#include "cpu/cpu_backend.h"

namespace pdvm::test {

// Decodes `steps` tokens ((pos * 37 + 1) % token_mod at position pos) with both kernel sets and
// sets *max_err = max |fast - reference| and *max_abs = max |reference| over every logit. Fails
// the calling test (fatally: check HasFatalFailure) on a backend error or a non-finite fast logit.
inline void reference_vs_fast_logits(const core::Model& m, int steps, int token_mod, double* max_err,
                                     double* max_abs) {
  std::vector<std::vector<float>> logits[2];
  for (int k = 0; k < 2; ++k) {
    cpu::CpuOptions co;
    co.kernels = k == 0 ? cpu::CpuKernels::kReference : cpu::CpuKernels::kFast;
    co.context = 16;
    auto b = cpu::make_cpu_backend(m, co);
    ASSERT_TRUE(b.is_ok()) << b.status().message();
    for (int pos = 0; pos < steps; ++pos) {
      auto l = (*b)->execute_model((pos * 37 + 1) % token_mod, pos);
      ASSERT_TRUE(l.is_ok()) << l.status().message();
      logits[k].emplace_back(l->begin(), l->end());
    }
  }
  *max_abs = 0;
  *max_err = 0;
  for (size_t p = 0; p < logits[0].size(); ++p)
    for (size_t i = 0; i < logits[0][p].size(); ++i) {
      ASSERT_TRUE(std::isfinite(logits[1][p][i]));
      *max_abs = std::max(*max_abs, double(std::fabs(logits[0][p][i])));
      *max_err = std::max(*max_err, double(std::fabs(logits[0][p][i] - logits[1][p][i])));
    }
}

}  // namespace pdvm::test
