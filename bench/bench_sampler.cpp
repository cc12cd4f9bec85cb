// The sampler over a 100k vocabulary (Phi-4's 100352): greedy argmax, and the default chain
// (repetition penalty, top-k, top-p, min-p, temperature, draw). Bytes processed = the logits read
// once (vocab x 4 B), so GB/s shows how far each path is from a single streaming pass.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "generate/sampler.h"

namespace {

constexpr int kVocab = 100352;

std::vector<float> random_logits() {
  std::mt19937 rng(42);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> v(kVocab);
  for (float& x : v) x = dist(rng);
  return v;
}

void BM_sampler(benchmark::State& state, pdvm::generate::SamplerOptions o) {
  const std::vector<float> logits = random_logits();
  std::vector<int32_t> recent(64);
  for (size_t i = 0; i < recent.size(); ++i) recent[i] = int32_t(i * 1543 % kVocab);
  pdvm::generate::Sampler sampler(kVocab, o);
  for (auto _ : state) benchmark::DoNotOptimize(sampler.sample(logits, recent));
  state.SetBytesProcessed(int64_t(state.iterations()) * kVocab * int64_t(sizeof(float)));
}

pdvm::generate::SamplerOptions greedy() {
  pdvm::generate::SamplerOptions o;
  o.temperature = 0;
  return o;
}
pdvm::generate::SamplerOptions defaults() { return {}; }
pdvm::generate::SamplerOptions penalty() {
  pdvm::generate::SamplerOptions o;
  o.repeat_penalty = 1.1f;
  return o;
}
pdvm::generate::SamplerOptions top_p_only() {
  pdvm::generate::SamplerOptions o;
  o.top_k = 0;   // the whole vocabulary goes through top-p: the slow path
  o.min_p = 0;
  return o;
}

BENCHMARK_CAPTURE(BM_sampler, greedy, greedy())->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_sampler, default_chain, defaults())->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_sampler, repeat_penalty, penalty())->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_sampler, top_p_full_vocab, top_p_only())->Unit(benchmark::kMicrosecond);

void BM_argmax(benchmark::State& state) {
  const std::vector<float> logits = random_logits();
  for (auto _ : state) benchmark::DoNotOptimize(pdvm::generate::argmax(logits));
  state.SetBytesProcessed(int64_t(state.iterations()) * kVocab * int64_t(sizeof(float)));
}
BENCHMARK(BM_argmax)->Unit(benchmark::kMicrosecond);

}  // namespace
