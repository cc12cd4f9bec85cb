// Sampler: greedy is argmax; the filters keep what they promise; the draw follows the
// softmax (chi-square bound); the same seed gives the same tokens.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include "generate/sampler.h"

using namespace pdvm::generate;

namespace {
std::vector<float> random_logits(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::vector<float> l(static_cast<size_t>(n));
  for (auto& v : l) v = nd(rng);
  return l;
}
}  // namespace

TEST(Sampler, GreedyIsArgmax) {
  for (uint64_t s = 0; s < 20; ++s) {
    auto l = random_logits(1000, s);
    SamplerOptions o;
    o.temperature = 0;
    Sampler sm(1000, o);
    EXPECT_EQ(sm.sample(l, {}), int32_t(std::max_element(l.begin(), l.end()) - l.begin()));
  }
}

TEST(Sampler, SameSeedSameTokens) {
  auto l = random_logits(500, 7);
  SamplerOptions o;
  o.seed = 1234;
  Sampler a(500, o), b(500, o);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.sample(l, {}), b.sample(l, {}));
}

TEST(Sampler, TopKOneIsGreedy) {
  auto l = random_logits(300, 3);
  SamplerOptions o;
  o.top_k = 1;
  o.temperature = 1.5f;
  Sampler sm(300, o);
  const int32_t best = int32_t(std::max_element(l.begin(), l.end()) - l.begin());
  for (int i = 0; i < 50; ++i) EXPECT_EQ(sm.sample(l, {}), best);
}

TEST(Sampler, DrawFollowsSoftmax) {
  // 8 tokens, temperature 1, no filters: frequencies within a chi-square bound of softmax.
  const std::vector<float> l = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f, 1.5f, -1.0f, 0.2f};
  SamplerOptions o;
  o.temperature = 1.0f; o.top_k = 0; o.top_p = 1.0f; o.min_p = 0.0f; o.seed = 99;
  Sampler sm(8, o);
  const int n = 40000;
  std::vector<int> count(8, 0);
  for (int i = 0; i < n; ++i) count[size_t(sm.sample(l, {}))]++;
  double z = 0;
  for (float v : l) z += std::exp(v);
  double chi2 = 0;
  for (int i = 0; i < 8; ++i) {
    const double e = n * std::exp(l[size_t(i)]) / z;
    chi2 += (count[size_t(i)] - e) * (count[size_t(i)] - e) / e;
  }
  EXPECT_LT(chi2, 24.3);  // 7 degrees of freedom, p = 0.001
}

TEST(Sampler, MinPAndTopPDropTheTail) {
  const std::vector<float> l = {5.0f, 4.9f, 0.0f, -3.0f, -3.0f};
  SamplerOptions o;
  o.temperature = 1.0f; o.top_k = 0; o.top_p = 1.0f; o.min_p = 0.1f; o.seed = 5;
  Sampler sm(5, o);
  for (int i = 0; i < 2000; ++i) EXPECT_LT(sm.sample(l, {}), 2);
  o.min_p = 0; o.top_p = 0.5f;
  Sampler sp(5, o);
  for (int i = 0; i < 2000; ++i) EXPECT_EQ(sp.sample(l, {}), 0);  // p(0) = 0.52 >= 0.5
}

TEST(Sampler, RepeatPenaltyDemotesSeenTokens) {
  const std::vector<float> l = {2.0f, 1.9f, -1.0f};
  SamplerOptions o;
  o.temperature = 0; o.repeat_penalty = 1.5f;
  Sampler sm(3, o);
  const int32_t recent[] = {0};
  EXPECT_EQ(sm.sample(l, recent), 1);  // 2.0 / 1.5 < 1.9
  EXPECT_EQ(sm.sample(l, {}), 0);      // no history: unchanged
}

TEST(Sampler, RejectsBadOptions) {
  SamplerOptions o;
  o.top_p = 0;
  EXPECT_FALSE(validate(o).is_ok());
  o = {};
  o.min_p = 2;
  EXPECT_FALSE(validate(o).is_ok());
  o = {};
  o.repeat_penalty = 0;
  EXPECT_FALSE(validate(o).is_ok());
  EXPECT_TRUE(validate(SamplerOptions{}).is_ok());
}
