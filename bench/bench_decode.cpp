// One CPU decode step (Backend::execute_model) on synthetic models, with bytes processed taken
// from core/traffic.h so the output reads in GB/s, and "pct_ceiling" against the read ceiling
// measured in the same process. The end-to-end number is `pdvm bench`; this suite is for quick
// A/B runs of the CPU backend (`bench_decode --benchmark_filter=smollm2`).
#include <benchmark/benchmark.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "bench/harness.h"
#include "core/thread_pool.h"
#include "core/traffic.h"
#include "cpu/cpu_backend.h"
#include "cpu/read_bandwidth.h"
#include "model/synthetic.h"

namespace {

constexpr int kPositions = 64;  // steps cycle over positions [0, 64): KV read stays small

// Environment in the JSON/console context (commit, CPU, build), as llama-bench records it.
const bool kContextAdded = [] {
  benchmark::AddCustomContext("pdvm_commit", pdvm::bench::source_commit());
  benchmark::AddCustomContext("pdvm_cpu", pdvm::bench::cpu_model_name());
  benchmark::AddCustomContext("pdvm_build", pdvm::bench::build_description());
  return true;
}();

double ceiling_gbps() {
  static const double gbps = [] {
    pdvm::core::ThreadPool pool(0);
    return pdvm::cpu::measure_read_bandwidth(pool, size_t(256) << 20, 3).gbps;
  }();
  return gbps;
}

// Models are generated once per (shape, layers, format) and kept for the process.
const pdvm::core::Model* synthetic(const std::string& shape, int layers, const std::string& format,
                                   std::string& error) {
  static std::map<std::string, std::unique_ptr<pdvm::core::Model>> cache;
  const std::string key = shape + "/" + std::to_string(layers) + "/" + format;
  auto it = cache.find(key);
  if (it != cache.end()) return it->second.get();
  pdvm::bench::ShapeArgs a;
  a.shape = shape;
  a.layers = layers;
  a.layer_format = format;
  auto spec = pdvm::bench::make_synthetic_spec(a);
  if (!spec.is_ok()) { error = spec.status().message(); return nullptr; }
  auto model = pdvm::model::make_synthetic_model(*spec);
  if (!model.is_ok()) { error = model.status().message(); return nullptr; }
  return (cache[key] = std::make_unique<pdvm::core::Model>(std::move(model).value())).get();
}

void BM_decode_step(benchmark::State& state, const char* shape, int layers, const char* format) {
  std::string error;
  const pdvm::core::Model* model = synthetic(shape, layers, format, error);
  if (!model) { state.SkipWithError(error.c_str()); return; }
  pdvm::cpu::CpuOptions o;
  o.context = kPositions;
  auto backend = pdvm::cpu::make_cpu_backend(*model, o);
  if (!backend.is_ok()) { state.SkipWithError(backend.status().message().c_str()); return; }
  const auto traffic = pdvm::core::mean_token_traffic(model->config, pdvm::core::types_of(*model), 0,
                                                      kPositions, 4);
  int pos = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    auto logits = (*backend)->execute_model(int32_t(pos % model->config.vocab_size), pos);
    if (!logits.is_ok()) { state.SkipWithError(logits.status().message().c_str()); return; }
    benchmark::DoNotOptimize(logits.value().data());
    pos = (pos + 1) % kPositions;
  }
  // Wall time of the whole loop (the decode is multi-threaded: CPU time of this thread means little).
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double bytes = double(traffic.total_bytes());
  state.SetBytesProcessed(int64_t(bytes * double(state.iterations())));
  state.counters["MB_per_token"] = bytes / 1e6;
  const double tok_s = double(state.iterations()) / seconds;
  state.counters["tok_s"] = tok_s;
  state.counters["GBps"] = bytes * tok_s / 1e9;
  state.counters["ceiling_GBps"] = ceiling_gbps();
  state.counters["pct_ceiling"] = 100.0 * bytes * tok_s / (ceiling_gbps() * 1e9);
}

BENCHMARK_CAPTURE(BM_decode_step, smollm2_135m_q4_1, "smollm2-135m", 0, "q4_1")
    ->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();
BENCHMARK_CAPTURE(BM_decode_step, phi4_4layers_q8_0, "phi-4", 4, "q8_0")
    ->Unit(benchmark::kMillisecond)->MinTime(3.0)->UseRealTime();

}  // namespace
