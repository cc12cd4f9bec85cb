// Google Benchmark for the compressed-format kernels (cpu/spmv.h) through cpu::matvec with 2
// threads, on the Phi-4 matrix shapes: dense int8 rows vs MdCSR vs bitmap at 30-80% sparsity.
// Counters: GBps = bytes of the format read per second (what the ceiling bounds), pct_ceiling =
// GBps / measure_read_bandwidth (same pool, same process), bytes_per_weight, and Gweights_ps =
// rows * cols / time: the effective speed of the product, comparable across formats (a format
// "wins" when its Gweights_ps beats int8's). Matrices are rotated among copies totalling >= 256 MB
// so every byte comes from DRAM, as in a decode step.
#include <benchmark/benchmark.h>

#include <memory>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "cpu/matvec.h"
#include "cpu/read_bandwidth.h"
#include "cpu/spmv.h"
#include "formats/bitmap_i8.h"
#include "formats/int8_rows.h"
#include "formats/mdcsr.h"

namespace {

using pdvm::core::Matrix;
using pdvm::core::WeightType;

constexpr size_t kUncachedBytes = size_t(256) << 20;  // 8x the 32 MB L3
constexpr int kThreads = 2;

pdvm::core::ThreadPool& pool(int threads = kThreads) {
  // 1 thread: the kernel's per-core cost; its CPU time is meaningful even when other processes
  // share the 2 cores (the 2-thread cases' real time then is not).
  static pdvm::core::ThreadPool one(1), two(2);
  return threads == 1 ? one : two;
}

double ceiling_gbps() {
  static const double gbps = pdvm::cpu::measure_read_bandwidth(pool(), size_t(512) << 20, 5).gbps;
  return gbps;
}

pdvm::formats::QuantizedMatrix random_pruned(int64_t rows, int64_t cols, double sparsity) {
  pdvm::formats::QuantizedMatrix m;
  m.rows = rows;
  m.cols = cols;
  m.q.resize(size_t(rows * cols));
  m.scale.assign(size_t(rows), 0.01f);
  uint64_t s = 0x9E3779B97F4A7C15ull;
  const auto keep_below = uint64_t((1.0 - sparsity) * 65536.0);
  for (auto& q : m.q) {
    s ^= s << 13; s ^= s >> 7; s ^= s << 17;
    const int v = int((s >> 20) % 255) - 127;
    q = (s & 0xFFFF) < keep_below ? int8_t(v == 0 ? 1 : v) : int8_t(0);
  }
  return m;
}

// One encoded matrix: owns its bytes / arrays and the layout its Matrix points at.
struct Encoded {
  std::vector<uint8_t> dense;
  pdvm::formats::SparseArrays arrays;
  std::unique_ptr<pdvm::core::SparseLayout> layout;
  Matrix m;
};

std::unique_ptr<Encoded> encode(const pdvm::formats::QuantizedMatrix& q, WeightType t) {
  auto e = std::make_unique<Encoded>();
  if (t == WeightType::kI8Row) {
    e->dense = pdvm::formats::encode_i8_rows(q);
    e->m = {t, q.rows, q.cols, e->dense.data()};
    return e;
  }
  auto r = t == WeightType::kMdCsr ? pdvm::formats::encode_mdcsr(q) : pdvm::formats::encode_bitmap_i8(q);
  if (!r.is_ok()) return nullptr;
  e->arrays = std::move(*r);
  e->layout = std::make_unique<pdvm::core::SparseLayout>(e->arrays.layout());
  e->m = e->arrays.matrix(e->layout.get());
  return e;
}

void BM_spmv(benchmark::State& state, WeightType t, int64_t rows, int64_t cols, double sparsity, int threads) {
  const auto q = random_pruned(rows, cols, sparsity);
  std::vector<std::unique_ptr<Encoded>> copies;
  copies.push_back(encode(q, t));
  if (!copies[0]) { state.SkipWithError("encode failed"); return; }
  const size_t n_bytes = copies[0]->m.n_bytes();
  const size_t n_copies = std::max<size_t>(2, (kUncachedBytes + n_bytes - 1) / n_bytes);
  while (copies.size() < n_copies) copies.push_back(encode(q, t));
  std::vector<float> xv(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; ++c) xv[size_t(c)] = float(c % 17) * 0.1f - 0.8f;
  pdvm::cpu::PreparedInput x(cols);
  x.prepare(xv.data(), cols);
  std::vector<float> y(static_cast<size_t>(rows));
  const double ceiling = ceiling_gbps();
  size_t i = 0;
  for (auto _ : state) {
    pdvm::cpu::matvec(copies[i]->m, x, y.data(), pool(threads));
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
    if (++i == copies.size()) i = 0;
  }
  const double weights = double(rows) * double(cols);
  state.counters["GBps"] = benchmark::Counter(double(n_bytes) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["Gweights_ps"] = benchmark::Counter(weights / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["bytes_per_weight"] = double(n_bytes) / weights;
  state.counters["ceiling_GBps"] = ceiling;
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(n_bytes));
  state.SetLabel(std::string(pdvm::cpu::spmv_isa()) + " " + std::to_string(threads) + "T");
}

void register_all() {
  struct Shape { const char* name; int64_t rows, cols; };
  const Shape shapes[] = {{"phi4_qkvo_5120x5120", 5120, 5120},
                          {"phi4_kv_1280x5120", 1280, 5120},
                          {"phi4_gate_up_17920x5120", 17920, 5120},
                          {"phi4_down_5120x17920", 5120, 17920}};
  for (int threads : {kThreads, 1})
    for (const Shape& s : shapes) {
      if (threads == 1 && s.rows != 5120) continue;  // per-core cost: the two 5120-row shapes
      const std::string suffix = threads == 1 ? "/1T" : "";
      benchmark::RegisterBenchmark((std::string("i8_row/") + s.name + suffix).c_str(), BM_spmv, WeightType::kI8Row,
                                   s.rows, s.cols, 0.0, threads)
          ->Unit(benchmark::kMicrosecond)->UseRealTime()->MinTime(0.3);
      for (auto t : {WeightType::kMdCsr, WeightType::kBitmapI8})
        for (int pct : {30, 50, 70, 80}) {
          const std::string name = std::string(pdvm::core::weight_type_name(t)) + "/" + s.name + "/sparsity" +
                                   std::to_string(pct) + suffix;
          benchmark::RegisterBenchmark(name.c_str(), BM_spmv, t, s.rows, s.cols, pct / 100.0, threads)
              ->Unit(benchmark::kMicrosecond)->UseRealTime()->MinTime(0.3);
        }
    }
}

const bool kRegistered = (register_all(), true);

}  // namespace
