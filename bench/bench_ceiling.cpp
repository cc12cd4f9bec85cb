// The machine's read-bandwidth ceiling (cpu::measure_read_bandwidth) for 1 and 2 threads and a few
// buffer sizes: the denominator of every "% of ceiling" the CPU benchmarks and the CLI report.
#include <benchmark/benchmark.h>

#include "core/thread_pool.h"
#include "cpu/read_bandwidth.h"

namespace {

void BM_read_bandwidth(benchmark::State& state) {
  const int threads = int(state.range(0));
  const size_t n_bytes = size_t(state.range(1)) << 20;
  pdvm::core::ThreadPool pool(threads);
  pdvm::cpu::ReadBandwidth best{};
  for (auto _ : state) {
    const auto r = pdvm::cpu::measure_read_bandwidth(pool, n_bytes, 5);
    if (r.gbps > best.gbps) best = r;
    state.SetIterationTime(r.best_ms / 1e3);
  }
  state.counters["GBps"] = best.gbps;
  state.counters["MB"] = double(best.n_bytes) / 1e6;
  state.counters["best_ms"] = best.best_ms;
}

// threads x MiB: 256 MiB and 1 GiB are DRAM (L3 is 32 MB); 16 MiB shows the L3 rate for contrast.
BENCHMARK(BM_read_bandwidth)
    ->Args({1, 1024})->Args({2, 1024})->Args({2, 256})->Args({2, 16})
    ->UseManualTime()->Iterations(2)->Unit(benchmark::kMillisecond);

}  // namespace
