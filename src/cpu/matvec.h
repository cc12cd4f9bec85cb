// Fast CPU matrix-vector products y = W x for every core::WeightType, reading the GGUF block
// layouts in place (no repacking). Batch-1 decode is bound by the bytes of W, so these kernels
// aim to run at the machine's read bandwidth: int8 dot products (AVX-512 VNNI, AVX2 fallback,
// scalar fallback) against x quantized once per step, f32 FMA for the float types.
// The plain oracle is formats::dequantize_row (see tests/test_matvec.cpp); threading is the
// caller's core::ThreadPool. The CPU backend (cpu_backend.*) decides what to call when.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>

#include "core/thread_pool.h"
#include "core/weight.h"

namespace pdvm::cpu {

// The input vector x, prepared once for every matrix that multiplies it:
//  * an f32 copy (the float-weight paths use it exactly);
//  * x quantized to int8 in blocks of 32 (Q8_0-style: scale s = max|x| / 127, q = round(x / s)),
//    plus a second int8 term for the residual: x ~= s * q + (s / 256) * q_lo, |error| <= s / 256
//    (about 2^-15 of the block's max|x|; one term alone is off by up to s / 2, which moved
//    SmolLM2's logits by ~3% and flipped greedy tokens). The quantized-weight kernels compute
//    256 * dot(w, q) + dot(w, q_lo) in int32 (two int8 dot products per weight vector, the
//    unpacking of the weights shared), exact, then scale by s / 256 in f32.
//  * per-block scale and scaled block sums of that two-term x (over 32 and over each 16), which
//    the quantized weight paths use for their offsets (Q4_0's -8, Q5_0's -16, Q4_1's and Q5_1's +m,
//    the K-quants' -min, Q6_K's -32).
// Memory is allocated only in the constructor; prepare() never allocates, so the decode loop does
// not either. Not thread-safe to prepare() while a matvec reads it; concurrent matvecs reading
// one prepared input are fine.
class PreparedInput {
 public:
  explicit PreparedInput(int64_t max_cols);

  // Copies and quantizes x[0, cols). cols <= max_cols. Single-threaded (a few us at 20k cols).
  void prepare(const float* x, int64_t cols);

  int64_t cols() const { return cols_; }
  int64_t max_cols() const { return max_cols_; }
  // Every array below is padded with zeros (codes 0, scales 0) to P = round_up(cols, 512), i.e.
  // whole groups of 16 blocks of 32; all are 64-byte aligned.
  // [P] f32 copy of x.
  const float* f32() const { return f32_.get(); }
  // [P] int8 codes, x[c] ~= q8()[c] * q8_scale()[c / 32] (the first term alone: within half a
  // step, what single-term int8 consumers such as cpu/spmv.cpp read).
  const int8_t* q8() const { return q8_.get(); }
  // [P] the residual's int8 codes (|q| <= 127): x[c] ~= q8()[c] * q8_scale()[b] + q8_lo()[c] *
  // q8_fine_scale()[b], b = c / 32.
  const int8_t* q8_lo() const { return q8_lo_.get(); }
  // [P] the codes of each pair of blocks (2k, 2k+1) re-ordered as 16 codes each of
  // (2k)[0:16], (2k+1)[0:16], (2k)[16:32], (2k+1)[16:32]: the order in which one 256-bit load of
  // two Q4 blocks' packed nibbles unpacks (low nibbles, then high nibbles).
  const int8_t* q8_nibble_pairs() const { return q8_pairs_.get(); }
  const int8_t* q8_lo_nibble_pairs() const { return q8_lo_pairs_.get(); }  // the same for q8_lo()
  // [P] the codes offset to unsigned, q8() + 128, for vpdpbusd against signed Q8_0 weights.
  const uint8_t* u8() const { return u8_.get(); }
  const uint8_t* u8_lo() const { return u8_lo_.get(); }  // q8_lo() + 128
  // [P / 512 * 1280] x laid out along Q4_1's byte stream, for the AVX-512 kernel that multiplies
  // whole 64-byte loads of a Q4_1 row (20-byte blocks: 4 header bytes, 16 code bytes; 16 blocks
  // = 5 loads). Per group of 16 blocks and per load z (0..4): 4 x 64 bytes, the x value under
  // each row byte's low nibble (first term), high nibble (first term), low (residual), high
  // (residual); 0 under header bytes. See rows_q4_1_stream in matvec_precise.cpp.
  const int8_t* q4_1_stream() const { return q41_stream_.get(); }
  // [P / 32]: dequantization scale s of each block of 32 (first term).
  const float* q8_scale() const { return scale_.get(); }
  // [P / 32]: s / 256, the residual's scale and the scale of the combined int32 dot products.
  const float* q8_fine_scale() const { return fine_scale_.get(); }
  // [P / 32]: sum of the block's 32 two-term values (s * sum q + s / 256 * sum q_lo).
  const float* q8_scaled_sum32() const { return sum32_.get(); }
  // [P / 16]: the same sum over each half block of 16 (Q6_K's unit).
  const float* q8_scaled_sum16() const { return sum16_.get(); }
  // x as one int16 per element with ONE scale for the whole vector (cpu/spmv.cpp's MdCSR kernel,
  // whose byte picks mix columns of different 32-blocks in one vpdpbusd lane):
  // x[c] ~= x16_scale() * (256 * (x16_hi()[c] - 128) + (x16_lo()[c] - 128)), |error| <= scale / 2
  // = max|x| / 65278. Both bytes are biased by 128 (unsigned, for vpdpbusd); padded with the code
  // of 0 to P + kX16Slack bytes, so a 128-byte window at any column < cols stays inside.
  static constexpr int64_t kX16Slack = 128;
  const uint8_t* x16_hi() const { return x16_hi_.get(); }
  const uint8_t* x16_lo() const { return x16_lo_.get(); }
  float x16_scale() const { return x16_scale_; }

 private:
  struct FreeDeleter { void operator()(void* p) const { std::free(p); } };
  template <typename T> using Buffer = std::unique_ptr<T[], FreeDeleter>;

  int64_t max_cols_ = 0;
  int64_t cols_ = 0;
  Buffer<float> f32_;
  Buffer<int8_t> q8_;
  Buffer<int8_t> q8_lo_;
  Buffer<int8_t> q8_pairs_;
  Buffer<int8_t> q8_lo_pairs_;
  Buffer<uint8_t> u8_;
  Buffer<uint8_t> u8_lo_;
  Buffer<int8_t> q41_stream_;
  Buffer<float> scale_;
  Buffer<float> fine_scale_;
  Buffer<float> sum32_;
  Buffer<float> sum16_;
  Buffer<uint8_t> x16_hi_;
  Buffer<uint8_t> x16_lo_;
  float x16_scale_ = 0;
};

// y[r] = sum_c W[r][c] * x[c] for every row r, rows split across the pool's threads.
// Requires w.cols == x.cols() and y holding w.rows floats; y must not alias the input.
void matvec(const core::Matrix& w, const PreparedInput& x, float* y, core::ThreadPool& pool);

// Several matrices that share one input (q, k, v; gate, up) in ONE parallel region: one pool
// sync instead of one per matrix. Work is split by weight bytes across all jobs together.
struct MatvecJob {
  const core::Matrix* w;
  float* y;
};
void matvec_multi(std::span<const MatvecJob> jobs, const PreparedInput& x, core::ThreadPool& pool);

// Single-threaded y[r] for r in [row_begin, row_end) (y indexed by absolute row): the per-thread
// body of the calls above, for backends that run their own fused parallel regions.
void matvec_rows(const core::Matrix& w, const PreparedInput& x, float* y, int64_t row_begin,
                 int64_t row_end);

// Which instruction set the kernels were compiled for: "avx512-vnni", "avx2" or "scalar".
const char* matvec_isa();

}  // namespace pdvm::cpu
