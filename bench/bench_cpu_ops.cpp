// CPU fast-path kernels other than matvec: attention over an f32 KV cache per context length
// (SmolLM2-135M and Phi-4 head shapes), RMSNorm and RoPE. Bytes processed: the KV cache read
// (attention), the vector read + written (norm, rope), so the output reads in GB/s.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "cpu/attention.h"
#include "cpu/vec_ops.h"

namespace {

std::vector<float> random_vector(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

// args: positions, n_heads, n_kv_heads, head_dim
void BM_attention(benchmark::State& state) {
  const int positions = int(state.range(0));
  const pdvm::cpu::AttentionShape s{int(state.range(1)), int(state.range(2)), int(state.range(3)),
                                    int(state.range(2) * state.range(3))};
  pdvm::core::ThreadPool pool(2);
  const auto k = random_vector(size_t(positions) * s.kv_stride, 1), v = random_vector(k.size(), 2);
  const auto q = random_vector(size_t(s.n_heads) * s.head_dim, 3);
  std::vector<float> scores(size_t(pool.size()) * positions), out(q.size());
  for (auto _ : state) {
    pdvm::cpu::attend_heads(q.data(), k.data(), v.data(), s, 0, positions - 1, scores.data(), positions,
                            out.data(), pool);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(k.size() + v.size()) * 4);
}
BENCHMARK(BM_attention)
    ->ArgNames({"pos", "heads", "kv", "hd"})
    ->Args({128, 9, 3, 64})->Args({1024, 9, 3, 64})->Args({4096, 9, 3, 64})
    ->Args({1024, 40, 10, 128})->Args({4096, 40, 10, 128})
    ->UseRealTime();

void BM_rmsnorm(benchmark::State& state) {
  const int n = int(state.range(0));
  const auto x = random_vector(size_t(n), 4), w = random_vector(size_t(n), 5);
  std::vector<float> out(static_cast<size_t>(n));
  for (auto _ : state) {
    pdvm::cpu::rmsnorm_f32(x.data(), w.data(), n, 1e-5f, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * n * 12);
}
BENCHMARK(BM_rmsnorm)->Arg(576)->Arg(5120);

// args: n_heads, head_dim
void BM_rope(benchmark::State& state) {
  const int heads = int(state.range(0)), hd = int(state.range(1));
  auto v = random_vector(size_t(heads) * hd, 6);
  std::vector<float> inv_freq(size_t(hd / 2));
  for (int i = 0; i < hd / 2; ++i) inv_freq[size_t(i)] = std::pow(10000.0f, -2.0f * i / hd);
  int pos = 0;
  for (auto _ : state) {
    pdvm::cpu::rope_f32(v.data(), heads, hd, hd / 2, pdvm::core::RopeStyle::kNeox, inv_freq.data(), pos++ & 4095);
    benchmark::DoNotOptimize(v.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * heads * hd * 8);
}
BENCHMARK(BM_rope)->Args({9, 64})->Args({40, 128});

}  // namespace
