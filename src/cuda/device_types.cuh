// Plain structs shared by the host code and the kernels: a repacked weight matrix, one layer's
// device weights, and the step state (activations, KV cache, tables). Passed to kernels by value;
// everything they point to is allocated once at construction.
#pragma once

#include <cuda_fp16.h>

#include <cstddef>
#include <cstdint>

namespace pdvm::cuda {

// Device weight layouts (repacked at upload from the GGUF blocks so each lane issues 16-byte
// loads of values alone, and scales sit in their own array):
//   kF32/kF16/kBF16: the row as is.
//   kQ8_0: int8 values [rows][cols]; half scales [rows][cols/32].
//   kQ4_0: the 16 qs bytes of each block [rows][cols/2] (one 16-byte load = one block: weight j
//          is the low nibble of byte j, weight j+16 the high nibble); half scales [rows][cols/32].
//   kQ4_1: like kQ4_0, scales are half2 (d, m) [rows][cols/32].
//   kMdCsr: chunks [n_chunks][32 B] (16 int8 values, then their 16 column deltas); f32 row scales
//          in `scales`; u16 chunk bases in `bases`; u32 chunk row pointers [rows+1] in `row_ptr`
//          (sparse_matvec.cuh). row_bytes is 0.
//   kI8Row: int8 values [rows][cols] (as kQ8_0); f32 row scales [rows] in `scales`.
//   kBitmapI8: chunks [n_chunks][16 B] of int8 values, each chunk two halves of 8 (zero-padded);
//          u16 column of each chunk's first value in `bases`; u32 chunk row pointers [rows+1] in
//          `row_ptr`; `scales` holds the f32 row scales [rows] and then, from word
//          bitmap_masks_offset(rows), the row masks as u32 words [rows][cols/32] (+2 words of
//          zeros), bit-reversed: bit 31 of word w is column 32w (bitmap_matvec.cuh). row_bytes 0.
//   kQ8_16: int8 codes [rows][cols] (as kQ8_0); half2 (scale, offset) per 16 codes
//          [rows][cols/16], w = scale * q + offset, the offset non-zero only in the first 16 of
//          each 32 (it multiplies the block's sum of x). What Q5_0, Q5_1, Q5_K, Q6_K, and fused
//          matrices that mix block types (Q4_K_M's q|k|v), are converted into
//          (formats::split_row_int8); a matrix all Q4_K becomes kQ4_1 (same split: a 6-bit scale
//          and min per 32).
enum class Fmt : int { kF32, kF16, kBF16, kQ8_0, kQ4_0, kQ4_1, kMdCsr, kI8Row, kBitmapI8, kQ8_16 };

// kBitmapI8: where the masks start in `scales`, in 4-byte words (16-byte aligned). The masks
// share the scales' pointer so that DevMatrix (token mode keeps 256 layers of them in the 64 KB
// constant bank) does not grow.
__host__ __device__ constexpr int bitmap_masks_offset(int rows) { return (rows + 3) & ~3; }

struct DevMatrix {
  const uint8_t* w = nullptr;    // [rows][row_bytes]
  const void* scales = nullptr;  // see Fmt; null for dense
  int rows = 0, cols = 0;
  int row_bytes = 0;             // multiple of 16
  Fmt fmt = Fmt::kF32;
  const uint16_t* bases = nullptr;   // kMdCsr, kBitmapI8 only
  const uint32_t* row_ptr = nullptr; // kMdCsr, kBitmapI8 only
};

// One layer, with q/k/v fused into one matrix and gate/up interleaved into another:
//  qkv rows: [n_heads*head_dim q | n_kv*head_dim k | n_kv*head_dim v]; within each q and k head
//    the rotary pairs are adjacent rows (2i, 2i+1), so the warp that computes a pair rotates it.
//  gate_up rows: gate row i at 2i, up row i at 2i+1, so one warp outputs silu(gate)*up.
struct DevLayer {
  DevMatrix qkv, wo, gate_up, down;
  const float* attn_norm = nullptr;  // [d_model]
  const float* ffn_norm = nullptr;   // [d_model]
  const float* qkv_bias = nullptr;   // [qkv rows] in qkv row order, or null
};

// Which weight formats a kernel instance holds code for (bit 1 << f per Fmt f). Every kernel that
// runs a layer's matvecs has an all-formats instance, and one per sparse format: a launch starts
// with cold instruction caches, and the all-formats stages cost MdCSR and bitmap_i8 layers 1-3 us
// each in layer_kernel over the same stages inside the token kernel (docs/notes-cuda.md, Rounds 9
// and 11). The sparse-only instances hold a quarter of the instructions (SASS, sm_90a: layer_kernel
// 9.5k / 10.6k against 38.4k, the per-op matvec kernels 1.2-2.2k against 6.6-10.6k). The fused
// kernels also have dense instances (kCodeFmts, kFloatFmts below; Round 14).
using FmtSet = unsigned;
__host__ __device__ constexpr FmtSet fmt_bit(Fmt f) { return 1u << unsigned(f); }
constexpr FmtSet kAllFmts = 0xffffffffu;
constexpr FmtSet kMdCsrFmts = fmt_bit(Fmt::kMdCsr);
constexpr FmtSet kBitmapFmts = fmt_bit(Fmt::kBitmapI8);
// The fused kernels only (kernels.cu, kDenseInstances; kernel_fmts is the per-op kernels' choice
// and their fallback): the dense formats in two sets, those whose matvec
// multiplies the input's int8 codes and the float ones
constexpr FmtSet kCodeFmts = fmt_bit(Fmt::kQ8_0) | fmt_bit(Fmt::kQ4_0) | fmt_bit(Fmt::kQ4_1) |
                             fmt_bit(Fmt::kI8Row) | fmt_bit(Fmt::kQ8_16);
constexpr FmtSet kFloatFmts = fmt_bit(Fmt::kF32) | fmt_bit(Fmt::kF16) | fmt_bit(Fmt::kBF16);
inline FmtSet layer_fmts(const DevLayer& L) {
  return fmt_bit(L.qkv.fmt) | fmt_bit(L.wo.fmt) | fmt_bit(L.gate_up.fmt) | fmt_bit(L.down.fmt);
}
// The instance that runs layers whose matrices use the formats `used`.
inline FmtSet kernel_fmts(FmtSet used) {
  return used == kMdCsrFmts || used == kBitmapFmts ? used : kAllFmts;
}

struct StepState {
  int* step = nullptr;       // [2] token, pos: device memory, so one captured graph serves all steps
  float* x = nullptr;        // [d_model] residual stream (the hidden state)
  float* q = nullptr;        // [n_heads*head_dim] rotated queries
  float* attn = nullptr;     // [n_heads*head_dim] attention output
  float* act = nullptr;      // [d_ff] silu(gate)*up
  float* part = nullptr;     // [n_heads][n_chunks_max][head_dim+4]: acc[head_dim], m, l, pad
  float* logits = nullptr;   // [vocab]
  int* argmax = nullptr;     // [1]
  // token mode: each block's argmax candidate over its slice of the logits ([kMaxGrid] each)
  float* amax_v = nullptr;
  int* amax_i = nullptr;
  // KV cache, f16. K [n_layers][n_kv_heads][ctx][head_dim]: a position's head is 256 contiguous
  // bytes (head_dim 128), read in coalesced 16-byte pieces, and a chunk of positions is one
  // contiguous range. V the same, or in position pairs with v_pairs (v_index).
  __half* k_cache = nullptr;
  __half* v_cache = nullptr;
  const float2* rope = nullptr;  // [ctx][rope_dim/2] (cos, sin), computed on the host in double
  unsigned* barrier = nullptr;   // grid barrier: a 64-bit arrival counter (GridBarrier), 8-aligned
  // PDVM_CUDA_STAGE_TIMER builds only: token mode's globaltimer marks
  // [n_layers][kStageMarks][grid blocks] (stage_timer.h)
  unsigned long long* stage_t = nullptr;
  int d_model = 0, d_ff = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, rope_dim = 0;
  // attention chunks: at most attn_chunk positions, at least attn_min_chunk (unless capped), at
  // most n_chunks_max of them (s.part's capacity); see attn_plan
  int ctx = 0, window = 0, attn_chunk = 0, attn_min_chunk = 0, n_chunks_max = 0, vocab = 0;
  int rope_interleaved = 0;
  // 1: the tensor-core attention (attend_chunk_mma: head_dim 128, GQA groups of <= 8) runs,
  // and V is stored in position pairs (v_index); 0: the CUDA-core attention, V as K
  int v_pairs = 0;
  float eps = 1e-5f, attn_scale = 1.0f;
};

constexpr int kMaxGrid = 4096;  // blocks of a persistent grid (amax_v/amax_i capacity)

__host__ __device__ inline size_t kv_offset(const StepState& s, int layer, int kv_head, int pos) {
  return ((size_t(layer) * s.n_kv_heads + kv_head) * s.ctx + pos) * s.head_dim;
}

// Context positions the V cache holds per head: ctx rounded up to even (a whole last pair).
__host__ __device__ constexpr int v_ctx(int ctx) { return (ctx + 1) & ~1; }

// V[layer][kv_head][pos][d]. With v_pairs the layout is [layer][kv_head][pos/2][head_dim][2]:
// positions 2i and 2i+1 of one dim are one 32-bit word, which is the tensor cores' A fragment of
// V^T (two consecutive positions of one dim), so a lane reads 4 dims of a pair in one 16-byte load.
__host__ __device__ inline size_t v_index(const StepState& s, int layer, int kv_head, int pos, int d) {
  if (!s.v_pairs) return kv_offset(s, layer, kv_head, pos) + d;
  const size_t pair = (size_t(layer) * s.n_kv_heads + kv_head) * (v_ctx(s.ctx) / 2) + (pos >> 1);
  return (pair * s.head_dim + d) * 2 + (pos & 1);
}

}  // namespace pdvm::cuda
