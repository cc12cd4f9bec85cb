// Synthetic models: named shapes, the --layers override, determinism per seed, and the weight
// statistics the backends' tests rely on (dequantized std ~ 1/sqrt(cols), norms ~ 1), checked
// through formats::dequantize_row on small shapes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "formats/quant_blocks.h"
#include "model/synthetic.h"

namespace pdvm::model {
namespace {

using core::WeightType;

TEST(Synthetic, NamedShapes) {
  auto phi = parse_shape("phi-4");
  ASSERT_TRUE(phi.is_ok());
  const core::ModelConfig& c = phi->config;
  EXPECT_EQ(c.vocab_size, 100352);
  EXPECT_EQ(c.d_model, 5120);
  EXPECT_EQ(c.n_layers, 40);
  EXPECT_EQ(c.n_heads, 40);
  EXPECT_EQ(c.n_kv_heads, 10);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.d_ff, 17920);
  EXPECT_FLOAT_EQ(c.rope_theta, 250000.0f);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-5f);
  EXPECT_FALSE(c.tie_embeddings);
  EXPECT_TRUE(c.validate().is_ok());
  for (const auto& name : known_shapes()) {
    auto s = parse_shape(name);
    ASSERT_TRUE(s.is_ok()) << name;
    EXPECT_TRUE(s->config.validate().is_ok()) << name;
    EXPECT_EQ(s->shape, name);
  }
  auto llama = parse_shape("llama-3-8b");
  EXPECT_EQ(llama->config.rope_scaling.type, core::RopeScalingType::kLlama3);
  EXPECT_TRUE(parse_shape("smollm2-135m")->config.tie_embeddings);
}

TEST(Synthetic, UnknownShapeListsKnownOnes) {
  auto s = parse_shape("gpt-5");
  ASSERT_FALSE(s.is_ok());
  for (const auto& name : known_shapes())
    EXPECT_NE(s.status().message().find(name), std::string::npos) << s.status().message();
  EXPECT_NE(s.status().message().find("gpt-5"), std::string::npos);
}

SyntheticSpec small_spec(WeightType t, int layers = 2) {
  SyntheticSpec s = parse_shape("smollm2-135m").value();
  s.config.n_layers = layers;
  s.config.vocab_size = 512;  // keep the test small: the embedding is vocab x d_model
  s.layer_type = t;
  s.head_type = t;
  if (core::weight_type_info(t).block_size == 256) {  // K-quants: rows of whole 256-blocks
    s.config.d_model = 512;
    s.config.d_ff = 1536;
    s.config.n_heads = 8;
    s.config.n_kv_heads = 2;
  }
  return s;
}

double row_std(const core::Matrix& m, int64_t r0, int64_t n_rows, double* mean_out) {
  std::vector<float> row(size_t(m.cols));
  double s = 0, s2 = 0;
  for (int64_t r = r0; r < r0 + n_rows; ++r) {
    formats::dequantize_row(m.type, m.row(r), m.cols, row.data());
    for (float v : row) {
      EXPECT_TRUE(std::isfinite(v));
      s += v;
      s2 += double(v) * v;
    }
  }
  const double n = double(n_rows) * double(m.cols);
  *mean_out = s / n;
  return std::sqrt(s2 / n - (s / n) * (s / n));
}

class SyntheticFormat : public testing::TestWithParam<WeightType> {};

TEST_P(SyntheticFormat, WeightStatistics) {
  auto spec = small_spec(GetParam());
  size_t last_done = 0, total = 0;
  auto m = make_synthetic_model(spec, [&](size_t done, size_t t) {
    EXPECT_GE(done, last_done);
    last_done = done;
    total = t;
  });
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  EXPECT_EQ(last_done, total);
  ASSERT_EQ(m->layers.size(), 2u);
  const core::ModelConfig& c = m->config;
  // layer matrices: std within 10% of 1/sqrt(cols), mean near 0 (relative to the std)
  for (const core::Matrix* w : {&m->layers[1].wq, &m->layers[0].w_down, &m->layers[0].wo}) {
    EXPECT_EQ(w->type, GetParam());
    double mean = 0;
    const double sd = row_std(*w, 0, std::min<int64_t>(w->rows, 64), &mean);
    const double want = 1.0 / std::sqrt(double(w->cols));
    EXPECT_NEAR(sd, want, 0.1 * want) << core::weight_type_name(GetParam());
    EXPECT_LT(std::fabs(mean), 0.15 * want);  // q4_0 values are -8..7: mean -0.5 d
  }
  for (float g : m->layers[0].attn_norm) EXPECT_NEAR(g, 1.0f, 0.1001f);
  EXPECT_EQ(int(m->output_norm.size()), c.d_model);
  EXPECT_EQ(m->output.data, m->tok_embd.data);  // smollm2 is tied
  EXPECT_GE(m->storage.size(), 1u + 7 * 2);
}

INSTANTIATE_TEST_SUITE_P(Types, SyntheticFormat,
                         testing::Values(WeightType::kF32, WeightType::kF16, WeightType::kBF16,
                                         WeightType::kQ8_0, WeightType::kQ4_0, WeightType::kQ4_1,
                                         WeightType::kQ4_K, WeightType::kQ6_K, WeightType::kQ5_0,
                                         WeightType::kQ5_1, WeightType::kQ5_K),
                         [](const auto& info) { return std::string(core::weight_type_name(info.param)); });

TEST(Synthetic, DeterministicPerSeedWhateverTheThreads) {
  auto a_spec = small_spec(WeightType::kQ4_1, 1);
  a_spec.threads = 1;
  auto b_spec = a_spec;
  b_spec.threads = 3;
  auto a = make_synthetic_model(a_spec), b = make_synthetic_model(b_spec);
  ASSERT_TRUE(a.is_ok() && b.is_ok());
  const core::Matrix& wa = a->layers[0].w_gate;
  const core::Matrix& wb = b->layers[0].w_gate;
  ASSERT_EQ(wa.n_bytes(), wb.n_bytes());
  EXPECT_EQ(std::memcmp(wa.data, wb.data, wa.n_bytes()), 0);
  auto c_spec = a_spec;
  c_spec.seed += 1;
  auto c = make_synthetic_model(c_spec);
  ASSERT_TRUE(c.is_ok());
  EXPECT_NE(std::memcmp(wa.data, c->layers[0].w_gate.data, wa.n_bytes()), 0);
}

TEST(Synthetic, LayersOverrideAndOwnership) {
  core::Model keep;
  {
    auto spec = small_spec(WeightType::kQ8_0, 3);
    auto m = make_synthetic_model(spec);
    ASSERT_TRUE(m.is_ok());
    keep = std::move(m).value();
  }
  ASSERT_EQ(keep.layers.size(), 3u);
  EXPECT_EQ(keep.config.n_layers, 3);
  // the spec is gone; the Model's storage still holds the bytes (ASan would flag a dangling view)
  double mean = 0;
  EXPECT_GT(row_std(keep.layers[2].w_up, 0, 4, &mean), 0.0);
  EXPECT_EQ(keep.weight_bytes_per_token() > 0, true);
}

TEST(Synthetic, RejectsUnsupportedTypesAndBadConfigs) {
  auto spec = small_spec(WeightType::kQ8_0);
  spec.layer_type = WeightType::kQ4_K;  // SmolLM2's 576-wide rows are not whole 256-blocks
  auto m = make_synthetic_model(spec);
  ASSERT_FALSE(m.is_ok());
  EXPECT_NE(m.status().message().find("not a multiple"), std::string::npos) << m.status().message();
  spec.layer_type = WeightType::kQ5_K;
  auto m5 = make_synthetic_model(spec);
  ASSERT_FALSE(m5.is_ok());
  EXPECT_NE(m5.status().message().find("not a multiple"), std::string::npos)
      << m5.status().message();
  auto bad = small_spec(WeightType::kQ8_0);
  bad.config.n_layers = 0;
  EXPECT_FALSE(make_synthetic_model(bad).is_ok());
}

}  // namespace
}  // namespace pdvm::model
