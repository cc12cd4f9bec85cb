// Google Benchmark for the compressed-format kernels (cpu/spmv.h) through cpu::matvec with 2
// threads, on the Phi-4 matrix shapes: dense int8 rows vs MdCSR vs bitmap at 30-80% sparsity.
// Counters: GBps = bytes of the format read per second (what the ceiling bounds: every array the
// kernel reads, i.e. Matrix::n_bytes(): values, deltas, chunk bases, masks, row pointers, scales),
// ceiling_GBps = cpu::measure_read_bandwidth with the case's own pool (same thread count) measured
// right before AND right after the case's timed loop, the higher of the two (the machine is shared
// and its bandwidth moves by +-20% from minute to minute, so only a back-to-back ceiling makes a
// fair ratio), pct_ceiling = GBps / ceiling_GBps, bytes_per_weight, and Gweights_ps = rows * cols /
// time: the effective speed of the product, comparable across formats (a format "wins" when its
// Gweights_ps beats int8's). Matrices are rotated among copies totalling >= 256 MB (8x the 32 MB L3)
// so every byte comes from DRAM, as in a decode step.
#include <benchmark/benchmark.h>

#include <time.h>

#include <algorithm>
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

double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// 256 MiB (8x L3), best of 3 passes: ~0.2 s with the buffer's first touch.
double ceiling_gbps(int threads) {
  return pdvm::cpu::measure_read_bandwidth(pool(threads), kUncachedBytes, 3).gbps;
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

// A copy of an encoded matrix (its arrays duplicated: distinct memory, same contents).
std::unique_ptr<Encoded> clone(const Encoded& src) {
  auto e = std::make_unique<Encoded>();
  e->dense = src.dense;
  e->arrays = src.arrays;
  if (src.layout) {
    e->layout = std::make_unique<pdvm::core::SparseLayout>(e->arrays.layout());
    e->m = e->arrays.matrix(e->layout.get());
  } else {
    e->m = src.m;
    e->m.data = e->dense.data();
  }
  return e;
}

// The copies of the case being run, kept across the runner's calls of one case (it calls the
// function again to settle the iteration count; re-encoding 256 MB each time took minutes).
struct Copies {
  WeightType t{};
  int64_t rows = 0, cols = 0;
  double sparsity = -1;
  std::vector<std::unique_ptr<Encoded>> v;
};

// resident: one copy only, so a small matrix stays in L2 and the case measures the kernel's
// per-core instruction cost, not DRAM.
const std::vector<std::unique_ptr<Encoded>>& copies_for(WeightType t, int64_t rows, int64_t cols, double sparsity,
                                                        bool resident) {
  static Copies c;
  if (c.t == t && c.rows == rows && c.cols == cols && c.sparsity == sparsity && !c.v.empty() &&
      (c.v.size() == 1) == resident)
    return c.v;
  c.v.clear();
  c.t = t, c.rows = rows, c.cols = cols, c.sparsity = sparsity;
  auto first = encode(random_pruned(rows, cols, sparsity), t);
  if (!first) return c.v;
  const size_t n_bytes = first->m.n_bytes();
  const size_t n_copies = resident ? 1 : std::max<size_t>(2, (kUncachedBytes + n_bytes - 1) / n_bytes);
  c.v.push_back(std::move(first));
  while (c.v.size() < n_copies) c.v.push_back(clone(*c.v[0]));
  return c.v;
}

void BM_spmv(benchmark::State& state, WeightType t, int64_t rows, int64_t cols, double sparsity, int threads,
             bool resident) {
  const auto& copies = copies_for(t, rows, cols, sparsity, resident);
  if (copies.empty()) { state.SkipWithError("encode failed"); return; }
  const size_t n_bytes = copies[0]->m.n_bytes();
  std::vector<float> xv(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; ++c) xv[size_t(c)] = float(c % 17) * 0.1f - 0.8f;
  pdvm::cpu::PreparedInput x(cols);
  x.prepare(xv.data(), cols);
  std::vector<float> y(static_cast<size_t>(rows));
  const double ceiling_before = resident ? 0 : ceiling_gbps(threads);
  size_t i = 0;
  const double cpu0 = thread_cpu_seconds();
  for (auto _ : state) {
    pdvm::cpu::matvec(copies[i]->m, x, y.data(), pool(threads));
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
    if (++i == copies.size()) i = 0;
  }
  const double cpu_s = thread_cpu_seconds() - cpu0;
  // After the loop the timer is stopped: this second reading is not timed.
  const double ceiling = resident ? 0 : std::max(ceiling_before, ceiling_gbps(threads));
  const double weights = double(rows) * double(cols);
  state.counters["GBps"] = benchmark::Counter(double(n_bytes) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["Gweights_ps"] = benchmark::Counter(weights / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["bytes_per_weight"] = double(n_bytes) / weights;
  // 1 thread: the pool runs the kernel on this thread, so bytes / this thread's CPU time is the
  // kernel's rate even while other processes take turns on the core (real time then is not).
  if (threads == 1) state.counters["GBps_cpu"] = double(n_bytes) * double(state.iterations()) / 1e9 / cpu_s;
  if (!resident) {
    state.counters["ceiling_GBps"] = ceiling;
    state.counters["pct_ceiling"] = benchmark::Counter(100.0 * double(n_bytes) / 1e9 / ceiling,
                                                       benchmark::Counter::kIsIterationInvariantRate);
  }
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
                                   s.rows, s.cols, 0.0, threads, false)
          ->Unit(benchmark::kMicrosecond)->UseRealTime()->MinTime(0.3);
      for (auto t : {WeightType::kMdCsr, WeightType::kBitmapI8})
        for (int pct : {30, 50, 70, 80}) {
          const std::string name = std::string(pdvm::core::weight_type_name(t)) + "/" + s.name + "/sparsity" +
                                   std::to_string(pct) + suffix;
          benchmark::RegisterBenchmark(name.c_str(), BM_spmv, t, s.rows, s.cols, pct / 100.0, threads, false)
              ->Unit(benchmark::kMicrosecond)->UseRealTime()->MinTime(0.3);
        }
    }
}

// Per-core kernel cost: 64 x 5120 (at most 330 KB in any format here) stays in the 1 MB L2, one
// thread. GBps there is what one core can decode; the DRAM cases above need about half the 2-thread
// ceiling from each core. 16 x 17920 (at most 290 KB) does the same for Phi-4's down shape, whose x
// copies no longer fit the 32 KB L1 (x16 codes: 35 KB).
void register_resident() {
  struct Shape { int64_t rows, cols; };
  for (const Shape sh : {Shape{64, 5120}, Shape{16, 17920}}) {
    const std::string shape = "l2_resident_" + std::to_string(sh.rows) + "x" + std::to_string(sh.cols);
    benchmark::RegisterBenchmark(("i8_row/" + shape + "/1T").c_str(), BM_spmv, WeightType::kI8Row, sh.rows, sh.cols,
                                 0.0, 1, true)
        ->Unit(benchmark::kMicrosecond)->UseRealTime()->MinTime(0.3);
    for (auto t : {WeightType::kMdCsr, WeightType::kBitmapI8})
      for (int pct : {30, 50, 70, 80}) {
        const std::string name = std::string(pdvm::core::weight_type_name(t)) + "/" + shape + "/sparsity" +
                                 std::to_string(pct) + "/1T";
        benchmark::RegisterBenchmark(name.c_str(), BM_spmv, t, sh.rows, sh.cols, pct / 100.0, 1, true)
            ->Unit(benchmark::kMicrosecond)->UseRealTime()->MinTime(0.3);
      }
  }
}

const bool kRegistered = (register_all(), register_resident(), true);

}  // namespace
