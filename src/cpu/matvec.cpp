// matvec entry points: PreparedInput (x copied and quantized once per step), the row split across
// threads, and the dispatch to the per-type row kernels in matvec_kernels.cpp.
#include "cpu/matvec.h"

#include <algorithm>
#include <cstring>
#include <new>

#include "cpu/matvec_kernels.h"
#include "pdvm/status.h"

namespace pdvm::cpu {
namespace {

constexpr int64_t kXBlock = 32;  // x is quantized in blocks of 32, the unit of every GGUF type
// Buffers are padded with zeros to whole groups of 16 blocks, so the AVX-512 kernels can read
// 16 blocks' scales and sums (one zmm) at a time without a tail case.
constexpr int64_t kXPad = 16 * kXBlock;
// q4_1_stream(): per group of 16 blocks, 5 loads of 64 row bytes, 4 x 64 bytes of x per load.
constexpr int64_t kQ41GroupStreamBytes = 5 * 4 * 64;
// Threads split rows at multiples of 16: 16 f32 outputs fill one 64-byte cache line, so two
// threads never write the same line of y (no false sharing).
constexpr int64_t kRowGrain = 16;

template <typename T>
T* alloc_aligned(int64_t n) {
  // aligned_alloc wants a size that is a multiple of the alignment.
  const size_t bytes = (size_t(std::max<int64_t>(n, 1)) * sizeof(T) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, bytes);
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0, bytes);
  return static_cast<T*>(p);
}

detail::RowKernel kernel_for(core::WeightType type) {
  const detail::RowKernel precise = detail::precise_row_kernel(type);
  return precise != nullptr ? precise : detail::row_kernel(type);
}

void check_shapes(const core::Matrix& w, const PreparedInput& x, const float* y) {
  PDVM_ASSERT(w.data != nullptr || w.rows == 0);
  PDVM_ASSERT(y != nullptr || w.rows == 0);
  PDVM_ASSERT(w.cols == x.cols());
}

// First row of thread t's share when `rows` rows are split into n_threads ranges of whole grains
// weighted by position `num / den` of the work; shared by matvec and matvec_multi so adjacent
// threads agree on every boundary.
int64_t split_row(int64_t rows, int64_t num, int64_t den) {
  if (num <= 0) return 0;
  if (num >= den) return rows;
  const int64_t grains = (rows + kRowGrain - 1) / kRowGrain;
  // num/den of the grains, rounded to nearest; computed in double: num * grains may overflow.
  const auto g = int64_t(double(grains) * double(num) / double(den) + 0.5);
  return std::min(rows, g * kRowGrain);
}

}  // namespace

PreparedInput::PreparedInput(int64_t max_cols) : max_cols_(max_cols) {
  PDVM_ASSERT(max_cols >= 0);
  const int64_t padded = (max_cols + kXPad - 1) / kXPad * kXPad;
  f32_.reset(alloc_aligned<float>(padded));
  q8_.reset(alloc_aligned<int8_t>(padded));
  q8_lo_.reset(alloc_aligned<int8_t>(padded));
  q8_pairs_.reset(alloc_aligned<int8_t>(padded));
  q8_lo_pairs_.reset(alloc_aligned<int8_t>(padded));
  u8_.reset(alloc_aligned<uint8_t>(padded));
  u8_lo_.reset(alloc_aligned<uint8_t>(padded));
  // Zeroed here once: prepare() writes only the bytes under codes, header bytes stay 0.
  q41_stream_.reset(alloc_aligned<int8_t>(padded / kXPad * kQ41GroupStreamBytes));
  scale_.reset(alloc_aligned<float>(padded / kXBlock));
  fine_scale_.reset(alloc_aligned<float>(padded / kXBlock));
  sum32_.reset(alloc_aligned<float>(padded / kXBlock));
  sum16_.reset(alloc_aligned<float>(padded / 16));
  x16_hi_.reset(alloc_aligned<uint8_t>(padded + kX16Slack));
  x16_lo_.reset(alloc_aligned<uint8_t>(padded + kX16Slack));
}

void PreparedInput::prepare(const float* x, int64_t cols) {
  PDVM_ASSERT(cols >= 0 && cols <= max_cols_);
  cols_ = cols;
  const int64_t padded = (cols + kXPad - 1) / kXPad * kXPad;
  std::memcpy(f32_.get(), x, size_t(cols) * sizeof(float));
  // Zero the padding so it quantizes to zero codes, zero scales and zero sums.
  std::fill(f32_.get() + cols, f32_.get() + padded, 0.0f);
  detail::quantize_x_two_term(f32_.get(), padded / kXBlock, q8_.get(), q8_lo_.get(), scale_.get(),
                              fine_scale_.get(), sum32_.get(), sum16_.get());
  // The re-arranged copies the AVX-512 kernels read (see q8_nibble_pairs(), u8(), q4_1_stream()).
  const auto pairs = [&](const int8_t* q, int8_t* out_base) {
    for (int64_t p = 0; p < padded; p += 2 * kXBlock) {
      const int8_t* a = q + p;        // block 2k
      const int8_t* b = a + kXBlock;  // block 2k+1
      int8_t* out = out_base + p;
      std::memcpy(out, a, 16);
      std::memcpy(out + 16, b, 16);
      std::memcpy(out + 32, a + 16, 16);
      std::memcpy(out + 48, b + 16, 16);
    }
  };
  pairs(q8_.get(), q8_pairs_.get());
  pairs(q8_lo_.get(), q8_lo_pairs_.get());
  for (int64_t c = 0; c < padded; ++c) {
    u8_[c] = uint8_t(q8_[c]) ^ 0x80u;
    u8_lo_[c] = uint8_t(q8_lo_[c]) ^ 0x80u;
  }
  // Whole-vector int16 codes (x16_hi/lo): v = round(x / s) in [-32639, 32639] with s = max|x| /
  // 32639 (127 * 257), split as v = 256 * hi + lo with hi = (v + 128) >> 8 in [-127, 127] and lo
  // in [-128, 127]. |x| compared as integer bits (monotonic for non-NaN floats) so the loops
  // vectorize. Cost: bench_matvec prepare/5120 10.7 -> 11.6 us CPU, /17920 36.8 -> 40.6 (load ~3.4).
  {
    uint32_t max_bits = 0;
    for (int64_t c = 0; c < cols; ++c) {
      uint32_t b;
      std::memcpy(&b, f32_.get() + c, 4);
      max_bits = std::max(max_bits, b & 0x7FFFFFFFu);
    }
    float max_abs;
    std::memcpy(&max_abs, &max_bits, 4);
    constexpr float kV = 127 * 257;
    x16_scale_ = max_abs > 0 ? max_abs / kV : 0.0f;
    const float inv = max_abs > 0 ? kV / max_abs : 0.0f;
    const float* xf = f32_.get();
    uint8_t* hi = x16_hi_.get();
    uint8_t* lo = x16_lo_.get();
    for (int64_t c = 0; c < padded + kX16Slack; ++c) {
      const float t = c < padded ? xf[c] * inv : 0.0f;
      const int v = std::clamp(int(t + (t >= 0 ? 0.5f : -0.5f)), -32639, 32639);  // round half away
      const int h = (v + 128) >> 8;
      hi[c] = uint8_t(h + 128);
      lo[c] = uint8_t(v - 256 * h + 128);
    }
  }
  // Block b = 16 g + k of x sits under stream bytes 20 k + 4 .. 20 k + 19 of group g's 320.
  for (int64_t b = 0; b < padded / kXBlock; ++b) {
    int8_t* group = q41_stream_.get() + b / 16 * kQ41GroupStreamBytes;
    const int8_t* hi = q8_.get() + b * kXBlock;
    const int8_t* lo = q8_lo_.get() + b * kXBlock;
    for (int l = 0; l < 16; ++l) {
      const int64_t s = 20 * (b % 16) + 4 + l;  // stream byte within the group
      int8_t* at = group + s / 64 * 256 + s % 64;
      at[0] = hi[l];
      at[64] = hi[l + 16];
      at[128] = lo[l];
      at[192] = lo[l + 16];
    }
  }
}

void matvec_rows(const core::Matrix& w, const PreparedInput& x, float* y, int64_t row_begin,
                 int64_t row_end) {
  check_shapes(w, x, y);
  PDVM_ASSERT(0 <= row_begin && row_begin <= row_end && row_end <= w.rows);
  if (row_begin == row_end) return;
  kernel_for(w.type)(w, x, y, row_begin, row_end);
}

void matvec(const core::Matrix& w, const PreparedInput& x, float* y, core::ThreadPool& pool) {
  check_shapes(w, x, y);
  const auto kernel = kernel_for(w.type);
  pool.run([&](int t, int nt) {
    const int64_t r0 = split_row(w.rows, t, nt), r1 = split_row(w.rows, t + 1, nt);
    if (r0 < r1) kernel(w, x, y, r0, r1);
  });
}

void matvec_multi(std::span<const MatvecJob> jobs, const PreparedInput& x, core::ThreadPool& pool) {
  // Each job occupies a span [offset, offset + bytes) of one line of total weight bytes; thread t
  // takes bytes [total * t / nt, total * (t + 1) / nt) of that line, rounded to row grains.
  int64_t total = 0;
  for (const auto& job : jobs) {
    check_shapes(*job.w, x, job.y);
    total += int64_t(job.w->n_bytes());
  }
  if (total == 0) return;
  pool.run([&](int t, int nt) {
    const int64_t lo = total * t / nt, hi = total * (t + 1) / nt;
    int64_t offset = 0;
    for (const auto& job : jobs) {
      const core::Matrix& w = *job.w;
      const auto bytes = int64_t(w.n_bytes());
      const int64_t r0 = split_row(w.rows, lo - offset, bytes);
      const int64_t r1 = split_row(w.rows, hi - offset, bytes);
      if (r0 < r1) kernel_for(w.type)(w, x, job.y, r0, r1);
      offset += bytes;
    }
  });
}

const char* matvec_isa() { return detail::isa_name(); }

}  // namespace pdvm::cpu
