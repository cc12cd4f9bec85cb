// The CUDA backend against the CPU backend's reference kernels (cpu::CpuKernels::kReference: f32
// weights as dequantized, fp64 sums), in every CUDA mode (ops, layer, token):
//  1. the tiny HF / GGUF fixtures of tests/data/fixtures (formats the CUDA backend supports; the
//     others are skipped with the construction's message), logits at every position;
//  2. synthetic SmolLM2-shaped models (2 layers, random weights) per weight format, and such models
//     converted by the converter to pdvm's int8 formats (mdcsr and bitmap_i8 at several
//     sparsities, i8_row);
//  3. the default model (SmolLM2-135M-Instruct Q4_1): 64 greedy tokens for two prompts of
//     tests/data/smollm2_reference.json must be equal. Skipped without the model file.
// Skips (with the reason) without a GPU.
//
// Tolerance, max over positions of the relative L2 error of the logits, per weight format: 2e-3
// for all (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q6_K, i8_row, mdcsr, bitmap_i8).
// Both backends read the same weight values, so the format adds no error (q5_0 / q5_1 reach the GPU
// as q8_16 with their own f16 d and m, exactly), except q4_K / q6_K, whose scales and offsets the
// GPU upload rounds to f16 (<= 2^-11 relative per block; the Q4_K_M fixture measured 1.4e-3 on the
// H100). What differs otherwise is f32 accumulation on the GPU (~1e-6), __expf, and the GPU's f16
// KV cache (each K/V element rounded to 11 bits: ~1e-4 relative per element, which attention and
// the residual stream carry to ~1e-4..1e-3 on the logits). A wrong index, missing write (the CUDA
// outputs are NaN-poisoned) or wrong rotation gives O(1) errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "cpu/cpu_backend.h"
#include "model/convert.h"
#include "model/load.h"
#include "model/synthetic.h"
#if defined(PDVM_HAVE_CUDA)
#include "cuda/cuda_backend.h"
#endif

namespace fs = std::filesystem;

namespace pdvm {
namespace {

// The test data folder: $PDVM_TEST_DATA when set (binaries built on one machine and run from
// another checkout, as on the GPU machine), else the source tree's, fixed at build time.
std::filesystem::path test_data() {
  if (const char* e = std::getenv("PDVM_TEST_DATA"); e != nullptr && *e != '\0') return e;
  return PDVM_TEST_DATA;
}

using core::WeightType;

[[maybe_unused]] double tolerance_for(WeightType t) {
  switch (t) {
    case WeightType::kF32:
    case WeightType::kF16:
    case WeightType::kBF16: return 2e-3;
    default: return 2e-3;  // q8_0, q4_0, q4_1, q5_0, q5_1, i8_row, mdcsr, bitmap_i8: same weights
                           // on both sides; q4_K, q6_K: f16-rounded scales on the GPU (see above)
  }
}

[[maybe_unused]] double rel_l2(std::span<const float> got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    const double d = double(got[i]) - double(want[i]);
    num += d * d;
    den += double(want[i]) * double(want[i]);
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

[[maybe_unused]] int argmax_of(std::span<const float> v) {
  return int(std::max_element(v.begin(), v.end()) - v.begin());
}

// top-1 minus top-2 of v
[[maybe_unused]] float margin_of(std::span<const float> v) {
  float a = -INFINITY, b = -INFINITY;
  for (float x : v) {
    if (x > a) { b = a; a = x; } else if (x > b) { b = x; }
  }
  return a - b;
}

#if defined(PDVM_HAVE_CUDA)
constexpr cuda::Mode kModes[] = {cuda::Mode::kOps, cuda::Mode::kLayer, cuda::Mode::kToken};

// Runs `tokens` through the CPU reference and through every CUDA mode; checks the logits at every
// position (rel L2 <= tol) and top-1 wherever the CPU's top-1/top-2 margin exceeds tol * rms.
void compare_on(const core::Model& model, const std::vector<int32_t>& tokens, double tol,
                const std::string& what) {
  const int n = int(tokens.size());
  cpu::CpuOptions co;
  co.kernels = cpu::CpuKernels::kReference;
  co.context = n;
  auto cpu_be = cpu::make_cpu_backend(model, co);
  ASSERT_TRUE(cpu_be.is_ok()) << cpu_be.status().message();
  std::vector<std::vector<float>> ref(static_cast<size_t>(n));
  for (int p = 0; p < n; ++p) {
    auto lg = (*cpu_be)->execute_model(tokens[size_t(p)], p);
    ASSERT_TRUE(lg.is_ok()) << lg.status().message();
    ref[size_t(p)].assign(lg->begin(), lg->end());
  }
  for (cuda::Mode mode : kModes) {
    SCOPED_TRACE(std::string(what) + " " + cuda::mode_name(mode));
    cuda::CudaOptions opt;
    opt.mode = mode;
    opt.context = n;
    opt.attn_chunk = 8;  // several chunks even on short sequences: the merge path runs
    auto made = cuda::make_cuda_backend(model, opt);
    if (!made.is_ok() && made.status().code() == StatusCode::kUnsupported)
      GTEST_SKIP() << what << ": " << made.status().message();
    ASSERT_TRUE(made.is_ok()) << made.status().message();
    auto* be = dynamic_cast<cuda::CudaBackend*>(made->get());
    ASSERT_NE(be, nullptr);
    double worst = 0;
    for (int p = 0; p < n; ++p) {
      ASSERT_TRUE(be->poison_scratch().is_ok());
      auto lg = be->execute_model(tokens[size_t(p)], p);
      ASSERT_TRUE(lg.is_ok()) << lg.status().message();
      const auto& want = ref[size_t(p)];
      const double err = rel_l2(*lg, want);
      worst = std::max(worst, err);
      EXPECT_LE(err, tol) << what << " pos " << p;
      double rms = 0;
      for (float v : want) rms += double(v) * v;
      rms = std::sqrt(rms / double(want.size()));
      auto am = be->argmax();
      ASSERT_TRUE(am.is_ok());
      if (margin_of(want) > tol * rms) {
        EXPECT_EQ(*am, argmax_of(want)) << what << " pos " << p;
      }
    }
    std::printf("[ vs cpu ] %-28s %-5s worst rel L2 logits %.2e (tol %.0e)\n", what.c_str(),
                cuda::mode_name(mode), worst, tol);
    std::fflush(stdout);
  }
}

bool have_gpu(std::string* why) {
  auto n = cuda::cuda_device_count();
  if (!n.is_ok()) *why = n.status().message();
  return n.is_ok();
}
#endif

// ---- 1. fixtures ---------------------------------------------------------------------------

std::vector<std::string> fixture_names() {
  std::vector<std::string> names;
  const fs::path root = test_data() / "fixtures";
  if (!fs::exists(root)) return names;
  for (const auto& e : fs::directory_iterator(root))
    if (fs::exists(e.path() / "expected.json")) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

class CudaVsCpuFixture : public testing::TestWithParam<std::string> {};

TEST_P(CudaVsCpuFixture, LogitsMatchCpuReference) {
#if !defined(PDVM_HAVE_CUDA)
  GTEST_SKIP() << "built without CUDA (nvcc not found at configure time)";
#else
  std::string why;
  if (!have_gpu(&why)) GTEST_SKIP() << why;
  const fs::path dir = test_data() / "fixtures" / GetParam();
  std::ifstream in(dir / "expected.json");
  const auto j = nlohmann::json::parse(in);
  const auto tokens = j.at("tokens").get<std::vector<int32_t>>();
  const std::string path =
      j.at("format") == "gguf" ? (dir / j.at("model_file").get<std::string>()).string() : dir.string();
  auto loaded = model::load_model(path);
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();
  const WeightType t = loaded->model.layers.at(0).wq.type;
  compare_on(loaded->model, tokens, tolerance_for(t),
             GetParam() + " (" + std::string(core::weight_type_name(t)) + ")");
#endif
}

INSTANTIATE_TEST_SUITE_P(All, CudaVsCpuFixture, testing::ValuesIn(fixture_names()),
                         [](const testing::TestParamInfo<std::string>& i) { return i.param; });

// ---- 2. synthetic models ---------------------------------------------------------------------

// A smollm2-shaped synthetic model with 2 layers (random weights of the given types), and 20
// random tokens from the same seed: the inputs of the synthetic and MdCSR cases below.
[[maybe_unused]] Result<core::Model> small_synthetic(WeightType layer, WeightType head, uint64_t seed) {
  PDVM_ASSIGN_OR_RETURN(model::SyntheticSpec spec, model::parse_shape("smollm2-135m"));
  spec.config.n_layers = 2;
  spec.layer_type = layer;
  spec.head_type = head;
  spec.seed = seed;
  return model::make_synthetic_model(spec);
}
[[maybe_unused]] std::vector<int32_t> random_tokens(uint64_t seed, int vocab) {
  std::mt19937 rng{uint32_t(seed)};
  std::vector<int32_t> tokens(20);
  for (auto& t : tokens) t = int32_t(rng() % uint32_t(vocab));
  return tokens;
}

class CudaVsCpuSynthetic : public testing::TestWithParam<WeightType> {};

TEST_P(CudaVsCpuSynthetic, LogitsMatchCpuReference) {
#if !defined(PDVM_HAVE_CUDA)
  GTEST_SKIP() << "built without CUDA (nvcc not found at configure time)";
#else
  std::string why;
  if (!have_gpu(&why)) GTEST_SKIP() << why;
  const uint64_t seed = std::random_device{}();
  auto model = small_synthetic(GetParam(), GetParam(), seed);
  ASSERT_TRUE(model.is_ok()) << model.status().message();
  const auto tokens = random_tokens(seed, model->config.vocab_size);
  compare_on(*model, tokens, tolerance_for(GetParam()),
             "synthetic " + std::string(core::weight_type_name(GetParam())));
#endif
}

INSTANTIATE_TEST_SUITE_P(Formats, CudaVsCpuSynthetic,
                         testing::Values(WeightType::kBF16, WeightType::kF16, WeightType::kQ8_0,
                                         WeightType::kQ4_0, WeightType::kQ4_1, WeightType::kQ5_0,
                                         WeightType::kQ5_1),
                         [](const testing::TestParamInfo<WeightType>& i) {
                           return std::string(core::weight_type_name(i.param));
                         });

// ---- 2b. converted (pruned + int8) models: MdCSR, bitmap_i8 and i8_row on the GPU --------------

// A synthetic smollm2-shaped model (2 layers, bf16 layers, q8_0 head, fresh seed) converted by
// compress_model to `format` at `sparsity` (magnitude pruning): both sides read the same int8
// values, chunks, masks and padding, so the gap is f32 order and the GPU's f16 KV cache.
// The bitmap cases cover the device chunking (halves cut by 32-column windows, zero padding)
// at 0% (no padding), 50% (rare) and 70% sparsity (~10% of the chunks cut).
[[maybe_unused]] void compare_converted([[maybe_unused]] model::CompressFormat format,
                                        [[maybe_unused]] WeightType want,
                                        [[maybe_unused]] double sparsity) {
#if !defined(PDVM_HAVE_CUDA)
  GTEST_SKIP() << "built without CUDA (nvcc not found at configure time)";
#else
  std::string why;
  if (!have_gpu(&why)) GTEST_SKIP() << why;
  const uint64_t seed = std::random_device{}();
  auto dense = small_synthetic(WeightType::kBF16, WeightType::kQ8_0, seed);
  ASSERT_TRUE(dense.is_ok()) << dense.status().message();
  model::ConvertOptions opt;
  opt.format = format;
  opt.sparsity = sparsity;
  auto converted = model::compress_model(*dense, opt, nullptr);
  ASSERT_TRUE(converted.is_ok()) << converted.status().message();
  ASSERT_EQ(converted->layers.at(0).w_down.type, want);
  ASSERT_EQ(converted->layers.at(1).wq.type, want);
  const auto tokens = random_tokens(seed, converted->config.vocab_size);
  compare_on(*converted, tokens, tolerance_for(want),
             std::string(core::weight_type_name(want)) + " sparsity " + std::to_string(sparsity) +
                 " seed " + std::to_string(seed));
#endif
}

class CudaVsCpuMdCsr : public testing::TestWithParam<double> {};

TEST_P(CudaVsCpuMdCsr, LogitsMatchCpuReference) {
  compare_converted(model::CompressFormat::kMdCsr, WeightType::kMdCsr, GetParam());
}

[[maybe_unused]] std::string sparsity_name(const testing::TestParamInfo<double>& i) {
  // snprintf: GCC 12 -O3 warns (-Wrestrict, a false positive) on "s" + to_string
  char name[16];
  std::snprintf(name, sizeof name, "s%d", int(i.param * 100 + 0.5));
  return std::string(name);
}

INSTANTIATE_TEST_SUITE_P(Sparsity, CudaVsCpuMdCsr, testing::Values(0.0, 0.5, 0.7), sparsity_name);

class CudaVsCpuBitmap : public testing::TestWithParam<double> {};

TEST_P(CudaVsCpuBitmap, LogitsMatchCpuReference) {
  compare_converted(model::CompressFormat::kBitmapI8, WeightType::kBitmapI8, GetParam());
}

INSTANTIATE_TEST_SUITE_P(Sparsity, CudaVsCpuBitmap, testing::Values(0.0, 0.5, 0.7), sparsity_name);

TEST(CudaVsCpuI8Row, LogitsMatchCpuReference) {
  compare_converted(model::CompressFormat::kI8Row, WeightType::kI8Row, 0.0);
}

// The synthetic generator's bitmap_i8 and i8_row layers (what `pdvm bench --format` runs): every
// row keeps exactly round((1 - s) * cols) random columns, so at 80% sparsity most chunk halves
// are cut by their 32-column window (the padding path).
class CudaVsCpuSyntheticInt8 : public testing::TestWithParam<std::pair<WeightType, double>> {};

TEST_P(CudaVsCpuSyntheticInt8, LogitsMatchCpuReference) {
#if !defined(PDVM_HAVE_CUDA)
  GTEST_SKIP() << "built without CUDA (nvcc not found at configure time)";
#else
  std::string why;
  if (!have_gpu(&why)) GTEST_SKIP() << why;
  const auto [type, sparsity] = GetParam();
  const uint64_t seed = std::random_device{}();
  auto parsed = model::parse_shape("smollm2-135m");
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().message();
  model::SyntheticSpec spec = *parsed;
  spec.config.n_layers = 2;
  spec.layer_type = type;
  spec.head_type = WeightType::kQ8_0;
  spec.sparsity = sparsity;
  spec.seed = seed;
  auto model = model::make_synthetic_model(spec);
  ASSERT_TRUE(model.is_ok()) << model.status().message();
  const auto tokens = random_tokens(seed, model->config.vocab_size);
  compare_on(*model, tokens, tolerance_for(type),
             "synthetic " + std::string(core::weight_type_name(type)) + " sparsity " +
                 std::to_string(sparsity));
#endif
}

INSTANTIATE_TEST_SUITE_P(
    Formats, CudaVsCpuSyntheticInt8,
    testing::Values(std::pair{WeightType::kI8Row, 0.0}, std::pair{WeightType::kBitmapI8, 0.7},
                    std::pair{WeightType::kBitmapI8, 0.8}),
    [](const testing::TestParamInfo<std::pair<WeightType, double>>& i) {
      char name[32];
      std::snprintf(name, sizeof name, "%s_s%d",
                    std::string(core::weight_type_name(i.param.first)).c_str(),
                    int(i.param.second * 100 + 0.5));
      return std::string(name);
    });

// ---- 3. the default model: greedy tokens -------------------------------------------------------

[[maybe_unused]] std::string model_path() {
  if (const char* e = std::getenv("PDVM_MODEL"); e && *e) return e;
  return (fs::path(PDVM_SOURCE_DIR) / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf").string();
}

// Greedy decoding: the prompt, then n_new tokens, each the argmax of the last logits.
// margins (optional) gets the top-1/top-2 margin of the logits that chose each new token.
template <class Step>
[[maybe_unused]] std::vector<int32_t> greedy(const std::vector<int32_t>& prompt, int n_new, Step step,
                            std::vector<float>* margins) {
  std::vector<int32_t> out;
  int pos = 0;
  int32_t next = 0;
  for (int32_t t : prompt) next = step(t, pos++, margins);
  for (int i = 0; i < n_new; ++i) {
    out.push_back(next);
    if (i + 1 < n_new) next = step(next, pos++, margins);
  }
  return out;
}

TEST(CudaVsCpuSmolLM2, GreedyTokensEqualCpuReference) {
#if !defined(PDVM_HAVE_CUDA)
  GTEST_SKIP() << "built without CUDA (nvcc not found at configure time)";
#else
  std::string why;
  if (!have_gpu(&why)) GTEST_SKIP() << why;
  const std::string path = model_path();
  if (!fs::exists(path)) GTEST_SKIP() << "model not found at " << path << " (set PDVM_MODEL)";
  auto loaded = model::load_model(path);
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();
  std::ifstream in(test_data() / "smollm2_reference.json");
  const auto ref = nlohmann::json::parse(in);
  constexpr int kNew = 64;
  for (int pi = 0; pi < 2; ++pi) {
    const auto& p = ref.at("prompts").at(size_t(pi));
    const auto prompt = p.at("prompt_ids").get<std::vector<int32_t>>();
    const int ctx = int(prompt.size()) + kNew;
    cpu::CpuOptions co;
    co.kernels = cpu::CpuKernels::kReference;
    co.context = ctx;
    auto cpu_be = cpu::make_cpu_backend(loaded->model, co);
    ASSERT_TRUE(cpu_be.is_ok()) << cpu_be.status().message();
    std::vector<float> margins;
    const auto want = greedy(prompt, kNew, [&](int32_t t, int pos, std::vector<float>* m) {
      auto lg = (*cpu_be)->execute_model(t, pos);
      if (!lg.is_ok()) return int32_t(-1);
      m->push_back(margin_of(*lg));
      return int32_t(argmax_of(*lg));
    }, &margins);
    const float min_margin = *std::min_element(margins.begin() + long(prompt.size()) - 1, margins.end());
    for (cuda::Mode mode : kModes) {
      cuda::CudaOptions opt;
      opt.mode = mode;
      opt.context = ctx;
      auto made = cuda::make_cuda_backend(loaded->model, opt);
      ASSERT_TRUE(made.is_ok()) << made.status().message();
      auto* be = dynamic_cast<cuda::CudaBackend*>(made->get());
      ASSERT_NE(be, nullptr);
      const auto got = greedy(prompt, kNew, [&](int32_t t, int pos, std::vector<float>*) {
        if (!be->decode_step(t, pos).is_ok()) return int32_t(-1);
        auto am = be->argmax();
        return am.is_ok() ? *am : int32_t(-1);
      }, nullptr);
      size_t same = 0;
      while (same < got.size() && got[same] == want[same]) ++same;
      std::printf("[ smollm2 ] prompt %-5s %-5s greedy tokens equal to the CPU reference: %zu/%d "
                  "(smallest CPU top-1/top-2 margin over the generated steps %.3f)\n",
                  p.at("kind").get<std::string>().c_str(), cuda::mode_name(mode), same, kNew,
                  double(min_margin));
      std::fflush(stdout);
      EXPECT_EQ(got, want) << "prompt " << pi << " mode " << cuda::mode_name(mode)
                           << ": first difference at new token " << same;
    }
  }
#endif
}

}  // namespace
}  // namespace pdvm
