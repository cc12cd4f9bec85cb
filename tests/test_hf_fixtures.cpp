// The CPU backend against Hugging Face transformers: tiny random models of every supported
// architecture and layout (tests/data/fixtures, made by scripts/make_hf_fixtures.py), logits at
// every position of a fixed token sequence.
//
// Tolerances, as max|pdvm - hf| / max|hf logit| over all positions:
//  - reference kernels: 1e-4 (issue requirement; both sides compute in f32 from the same weights,
//    pdvm sums in f64, so the gap is f32 rounding of ~100-term sums: ~1e-6 in practice);
//  - fast kernels, float weights: 1e-4 (f32 FMA sums in another order);
//  - fast kernels, quantized weights: 2e-4, because the fast path quantizes each activation to
//    two int8 terms per block of 32 (x ~= s q + s/256 q_lo: error up to 1/65024 of the block's
//    max per element, accumulated over layers); measured 3.9e-5 .. 5.9e-5 on the 6 quantized
//    fixtures (15:40 UTC 2026-11-24), so ~3x margin. (With single-term int8 x it was 3e-2.)
//    Plus top-1 agreement wherever HF's top-2 gap exceeds that tolerance.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cpu/cpu_backend.h"
#include "model/load.h"

namespace fs = std::filesystem;
using namespace pdvm;

namespace {

struct Fixture {
  std::string name;
  std::string model_path;
  std::vector<int32_t> tokens;
  std::vector<float> logits;  // [positions][vocab]
  int vocab = 0;
  bool quantized = false;
};

std::vector<std::string> fixture_names() {
  std::vector<std::string> names;
  const fs::path root = fs::path(PDVM_TEST_DATA) / "fixtures";
  if (!fs::exists(root)) return names;
  for (const auto& e : fs::directory_iterator(root))
    if (fs::exists(e.path() / "expected.json")) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

Fixture read_fixture(const std::string& name) {
  Fixture f;
  f.name = name;
  const fs::path dir = fs::path(PDVM_TEST_DATA) / "fixtures" / name;
  std::ifstream in(dir / "expected.json");
  const auto j = nlohmann::json::parse(in);
  f.tokens = j.at("tokens").get<std::vector<int32_t>>();
  const auto shape = j.at("logits_shape").get<std::vector<int>>();
  f.vocab = shape.at(1);
  f.model_path = j.at("format") == "gguf" ? (dir / j.at("model_file").get<std::string>()).string() : dir.string();
  const std::string wt = j.value("weights_dtype", "float32");
  f.quantized = wt.rfind("q", 0) == 0 || wt.rfind("Q", 0) == 0 || wt.find("mixed") != std::string::npos;
  std::ifstream bin(dir / j.at("logits_file").get<std::string>(), std::ios::binary);
  f.logits.resize(size_t(shape[0]) * size_t(shape[1]));
  bin.read(reinterpret_cast<char*>(f.logits.data()), std::streamsize(f.logits.size() * 4));
  EXPECT_EQ(size_t(shape[0]), f.tokens.size());
  return f;
}

void check_backend(const Fixture& f, cpu::CpuKernels kernels, double tol) {
  auto loaded = model::load_model(f.model_path);
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();
  ASSERT_EQ(loaded->model.config.vocab_size, f.vocab);
  cpu::CpuOptions o;
  o.kernels = kernels;
  o.context = int(f.tokens.size());
  o.threads = 2;
  auto backend = cpu::make_cpu_backend(loaded->model, o);
  ASSERT_TRUE(backend.is_ok()) << backend.status().message();
  double max_abs_ref = 0, max_err = 0;
  for (float v : f.logits) max_abs_ref = std::max(max_abs_ref, double(std::fabs(v)));
  int top1_mismatch = 0;
  for (size_t pos = 0; pos < f.tokens.size(); ++pos) {
    auto logits = (*backend)->execute_model(f.tokens[pos], int32_t(pos));
    ASSERT_TRUE(logits.is_ok()) << logits.status().message();
    const float* ref = f.logits.data() + pos * size_t(f.vocab);
    int best = 0, best_ref = 0;
    for (int i = 0; i < f.vocab; ++i) {
      ASSERT_TRUE(std::isfinite((*logits)[size_t(i)])) << "pos " << pos << " id " << i;
      max_err = std::max(max_err, double(std::fabs((*logits)[size_t(i)] - ref[i])));
      if ((*logits)[size_t(i)] > (*logits)[size_t(best)]) best = i;
      if (ref[i] > ref[best_ref]) best_ref = i;
    }
    float second = -INFINITY;
    for (int i = 0; i < f.vocab; ++i) if (i != best_ref) second = std::max(second, ref[i]);
    if (best != best_ref && (ref[best_ref] - second) > tol * max_abs_ref) {
      ++top1_mismatch;
      ADD_FAILURE() << f.name << " pos " << pos << ": top-1 " << best << " vs HF " << best_ref;
    }
  }
  EXPECT_LE(max_err / max_abs_ref, tol) << f.name << ": max|diff| " << max_err << " max|logit| " << max_abs_ref;
  EXPECT_EQ(top1_mismatch, 0);
  std::printf("[ fixture ] %-22s %-9s rel err %.2e (tol %.0e)\n", f.name.c_str(),
              kernels == cpu::CpuKernels::kReference ? "reference" : "fast", max_err / max_abs_ref, tol);
}

class HfFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(HfFixture, ReferenceMatchesTransformers) {
  check_backend(read_fixture(GetParam()), cpu::CpuKernels::kReference, 1e-4);
}

TEST_P(HfFixture, FastMatchesTransformers) {
  const Fixture f = read_fixture(GetParam());
  check_backend(f, cpu::CpuKernels::kFast, f.quantized ? 2e-4 : 1e-4);
}

INSTANTIATE_TEST_SUITE_P(All, HfFixture, ::testing::ValuesIn(fixture_names()),
                         [](const auto& info) { return info.param; });

TEST(HfFixtures, ArePresent) { EXPECT_GE(fixture_names().size(), 6u); }

}  // namespace
