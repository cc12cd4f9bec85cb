// The stages of one layer, as block-level __device__ functions shared by the per-op kernels (one
// stage per launch) and the fused layer kernel (all stages in one launch, grid barriers between).
// Each stage grid-strides over its work, so it is correct for any grid size.
#pragma once

#include <type_traits>

#include "cuda/attention.cuh"
#include "cuda/device_types.cuh"
#include "cuda/matvec.cuh"

namespace pdvm::cuda {

enum class Stage { kQkv, kAttention, kMerge, kWo, kFfnUp, kDown, kCount };

// ---- epilogues: what a warp does with its kRowsPerWarp finished rows (lane 0 writes) ---------
// preload(row0) runs before the warp's weight loads and returns what the epilogue reads from
// memory (x for a residual add, the rotary table for rope), so its round trip overlaps the matvec
// instead of adding one at the end of the stage (each warp's last group ends the stage).

// q/k rows: bias, then rotate the pair (2i, 2i+1) (adjacent by the upload's row order) and write
// q (f32) or K (f16, into the cache at pos); v rows: bias, write V.
struct QkvEpilogue {
  const StepState* s;
  const float* bias;
  int layer, pos;
  [[no_unique_address]] NormRed norm_red{};  // kNormAfter: the staging's `red` (norm_scale)
  struct Pre {
    float2 cs[kRowsPerWarp / 2];  // lane 0: (cos, sin) of each rotary pair, if q or k rows
  };
  __device__ Pre preload(int row0) const {
    Pre p{};
    const int hd = s->head_dim, rot = s->rope_dim;
    if ((threadIdx.x & 31) != 0 || row0 >= (s->n_heads + s->n_kv_heads) * hd) return p;
#pragma unroll
    for (int k = 0; k < kRowsPerWarp / 2; ++k) {
      const int local = row0 % hd + 2 * k;  // q and k row blocks are whole heads
      if (local < rot) p.cs[k] = s->rope[size_t(pos) * (rot >> 1) + (local >> 1)];
    }
    return p;
  }
  __device__ void operator()(int row0, const float (&acc)[kRowsPerWarp], const Pre& pre) const {
    if ((threadIdx.x & 31) != 0) return;
    const int hd = s->head_dim, q_rows = s->n_heads * hd, k_rows = s->n_kv_heads * hd;
    float v[kRowsPerWarp];
    const float sc = norm_scale(norm_red);
    // (not acc * sc with sc == 1 in the default build: with the bias that contracts to an FFMA)
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i)
      v[i] = (kNormAfter ? acc[i] * sc : acc[i]) + (bias != nullptr ? bias[row0 + i] : 0.0f);
    if (row0 >= q_rows + k_rows) {
      const int r = row0 - q_rows - k_rows;
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i)
        s->v_cache[v_index(*s, layer, r / hd, pos, r % hd + i)] = __float2half_rn(v[i]);
      return;
    }
    const bool is_q = row0 < q_rows;
    const int r = is_q ? row0 : row0 - q_rows, head = r / hd, local0 = r % hd;
    const int half_rot = s->rope_dim >> 1;
#pragma unroll
    for (int p = 0; p < kRowsPerWarp / 2; ++p) {
      const int local = local0 + 2 * p;
      const float a = v[2 * p], b = v[2 * p + 1];
      float ra = a, rb = b;
      int da = local, db = local + 1;
      if (local < s->rope_dim) {
        const int i = local >> 1;
        if (!s->rope_interleaved) { da = i; db = i + half_rot; }
        const float2 cs = pre.cs[p];
        ra = a * cs.x - b * cs.y;
        rb = b * cs.x + a * cs.y;
      }
      if (is_q) {
        s->q[head * hd + da] = ra;
        s->q[head * hd + db] = rb;
      } else {
        __half* dst = s->k_cache + kv_offset(*s, layer, head, pos);
        dst[da] = __float2half_rn(ra);
        dst[db] = __float2half_rn(rb);
      }
    }
  }
};

// x[row] += W row . staged: each row has one owning warp, so no atomics and no race.
struct ResidualEpilogue {
  float* x;
  int rows;
  using Pre = float;  // lane i < kRowsPerWarp: x[row0 + i]
  __device__ float preload(int row0) const {
    const int lane = threadIdx.x & 31;
    return lane < kRowsPerWarp && row0 + lane < rows ? x[row0 + lane] : 0.0f;
  }
  __device__ void operator()(int row0, const float (&acc)[kRowsPerWarp], float x0) const {
    const int lane = threadIdx.x & 31;
    if (lane < kRowsPerWarp && row0 + lane < rows) {
      float a = acc[0];
#pragma unroll
      for (int i = 1; i < kRowsPerWarp; ++i) if (lane == i) a = acc[i];
      x[row0 + lane] = x0 + a;
    }
  }
};

// gate/up interleaved rows: act[row/2] = silu(gate) * up.
struct SiluMulEpilogue {
  float* act;
  int d_ff;
  [[no_unique_address]] NormRed norm_red{};  // kNormAfter: the staging's `red` (norm_scale)
  using Pre = int;  // nothing to read
  __device__ int preload(int) const { return 0; }
  __device__ void operator()(int row0, const float (&acc)[kRowsPerWarp], int) const {
    if ((threadIdx.x & 31) != 0) return;
    const float sc = norm_scale(norm_red);
#pragma unroll
    for (int p = 0; p < kRowsPerWarp / 2; ++p) {
      const int i = row0 / 2 + p;
      if (i < d_ff) {
        const float g = acc[2 * p] * sc, u = acc[2 * p + 1] * sc;
        act[i] = g / (1.0f + __expf(-g)) * u;
      }
    }
  }
};

// A layer's matvec epilogue chosen at run time: QkvEpilogue (kWithQkv only), ResidualEpilogue or
// SiluMulEpilogue. The sparse instances run a layer's matvec stages through one call site
// (layer_matvec_stage), so their matvec's code is held once, not three or four times.
template <bool kWithQkv>
struct LayerEpilogue {
  enum Kind { kQkv, kResidual, kSilu } kind;
  QkvEpilogue qkv;
  ResidualEpilogue res;
  float* act;
  int d_ff;
  // without qkv, the residual's x alone (3 registers fewer across the matvec: the 4-stage loop
  // made MdCSR's token kernel spill 16 B, +0.02-0.04 ms per token)
  using Pre = std::conditional_t<kWithQkv, QkvEpilogue::Pre, float>;
  __device__ Pre preload(int row0) const {
    if constexpr (kWithQkv) {
      if (kind == kQkv) return qkv.preload(row0);
      Pre p{};
      if (kind == kResidual) p.cs[0].x = res.preload(row0);
      return p;
    } else {
      return kind == kResidual ? res.preload(row0) : 0.0f;
    }
  }
  __device__ void operator()(int row0, const float (&acc)[kRowsPerWarp], const Pre& pre) const {
    if constexpr (kWithQkv) {
      if (kind == kQkv) {
        qkv(row0, acc, pre);
        return;
      }
    }
    if (kind == kSilu) {
      SiluMulEpilogue{act, d_ff, qkv.norm_red}(row0, acc, 0);
    } else if constexpr (kWithQkv) {
      res(row0, acc, pre.cs[0].x);
    } else {
      res(row0, acc, pre);
    }
  }
};

struct StoreEpilogue {
  float* out;
  int rows;
  [[no_unique_address]] NormRed norm_red{};  // kNormAfter: the staging's `red` (norm_scale)
  using Pre = int;  // nothing to read
  __device__ int preload(int) const { return 0; }
  __device__ void operator()(int row0, const float (&acc)[kRowsPerWarp], int) const {
    const int lane = threadIdx.x & 31;
    if (lane < kRowsPerWarp && row0 + lane < rows) {
      float a = acc[0];
#pragma unroll
      for (int i = 1; i < kRowsPerWarp; ++i) if (lane == i) a = acc[i];
      out[row0 + lane] = a * norm_scale(norm_red);
    }
  }
};

// ---- stages -------------------------------------------------------------------------------
// `smem` is the block's dynamic shared memory (staged vector or attention scratch), `red` kWarps+1
// floats for block reductions.

// RMSNorm(x) -> qkv matvec -> bias, rope; q to s.q, K and V of `pos` into the cache.
// kPaired false: the per-op kernel (matvec_rows_warp)
template <bool kPaired = true, FmtSet kFmts = kAllFmts>
__device__ inline void qkv_stage(const StepState& s, const DevLayer& L, int layer, int pos,
                                 float* smem, float* red) {
  stage_input(smem, s.x, s.d_model, L.attn_norm, s.eps, red, L.qkv);
  matvec_stage<kPaired, kFmts>(L.qkv, smem, QkvEpilogue{&s, L.qkv_bias, layer, pos, red});
}

// Partial attention for every item (chunk, kv head, query heads: attn_plan), one warp each; with
// a single chunk the warp writes the normalised output and the merge stage is skipped.
__device__ inline void attention_stage(const StepState& s, int layer, int pos, float* smem) {
  const AttnPlan p = attn_plan(s, pos);
  const int group = s.n_heads / s.n_kv_heads;
  const int n_items = s.n_kv_heads * p.n_chunks * p.n_sub_items;
  float* qs = smem + (threadIdx.x >> 5) * attention_warp_floats(s.head_dim);
  for (int it = (threadIdx.x >> 5) * gridDim.x + blockIdx.x; it < n_items; it += gridDim.x * kWarps) {
    const int pair = it / p.n_sub_items, g0 = (it % p.n_sub_items) * p.g_step;
    const int j = pair / s.n_kv_heads, t0 = p.t0 + j * p.chunk, n = min(p.chunk, p.t0 + p.n - t0);
    if (s.v_pairs) {  // whole groups (g0 == 0), tensor cores
      attend_chunk_mma<128>(s, layer, pair % s.n_kv_heads, t0, n, j, p.n_chunks, qs);
    } else {
      attend_chunk_warp(s, layer, pair % s.n_kv_heads, t0, n, j, p.n_chunks, g0,
                        min(p.g_step, group - g0), qs);
    }
  }
}

// One block per query head combines its chunks (nothing to do with a single chunk).
__device__ inline void merge_stage(const StepState& s, int pos, float* smem) {
  const AttnPlan p = attn_plan(s, pos);
  if (p.n_chunks == 1) return;
  for (int h = blockIdx.x; h < s.n_heads; h += gridDim.x) merge_head_block(s, h, p.n_chunks, smem);
}

// The three matvec stages are forced inline: with every format's matvec in them nvcc stops
// inlining them into the fused kernels (ptxas then lists them as functions), and the calls
// spill (16-192 B in token_kernel; docs/notes-cuda.md, Round 7).

// x += Wo . attn
template <bool kPaired = true, FmtSet kFmts = kAllFmts>
__device__ __forceinline__ void wo_stage(const StepState& s, const DevLayer& L, float* smem,
                                         float* red) {
  stage_input(smem, s.attn, s.n_heads * s.head_dim, nullptr, 0.0f, red, L.wo);
  matvec_stage<kPaired, kFmts>(L.wo, smem, ResidualEpilogue{s.x, s.d_model});
}

// act = silu(W_gate . n) * (W_up . n), n = RMSNorm(x)
template <bool kPaired = true, FmtSet kFmts = kAllFmts>
__device__ __forceinline__ void ffn_up_stage(const StepState& s, const DevLayer& L, float* smem,
                                             float* red) {
  stage_input(smem, s.x, s.d_model, L.ffn_norm, s.eps, red, L.gate_up);
  matvec_stage<kPaired, kFmts>(L.gate_up, smem, SiluMulEpilogue{s.act, s.d_ff, red});
}

// x += W_down . act
template <bool kPaired = true, FmtSet kFmts = kAllFmts>
__device__ __forceinline__ void down_stage(const StepState& s, const DevLayer& L, float* smem,
                                           float* red) {
  stage_input(smem, s.act, s.d_ff, nullptr, 0.0f, red, L.down);
  matvec_stage<kPaired, kFmts>(L.down, smem, ResidualEpilogue{s.x, s.d_model});
}

// Stage k of {qkv, wo, ffn_up, down} (k = 0..3) through one call site: the same work as
// qkv_stage, wo_stage, ffn_up_stage and down_stage, with the input, norm, matrix and epilogue
// chosen at run time (kWithQkv false: k = 1..3 only).
template <FmtSet kFmts, bool kWithQkv>
__device__ __forceinline__ void layer_matvec_stage(const StepState& s, const DevLayer& L, int layer,
                                                   int pos, int k, float* smem, float* red) {
  const DevMatrix& m = k == 0 ? L.qkv : k == 1 ? L.wo : k == 2 ? L.gate_up : L.down;
  const float* src = k == 0 || k == 2 ? s.x : k == 1 ? s.attn : s.act;
  const int n = k == 1 ? s.n_heads * s.head_dim : k == 3 ? s.d_ff : s.d_model;
  const float* norm = k == 0 ? L.attn_norm : k == 2 ? L.ffn_norm : nullptr;
  stage_input(smem, src, n, norm, norm != nullptr ? s.eps : 0.0f, red, m);
  using Epi = LayerEpilogue<kWithQkv>;
  const Epi epi{k == 0 ? Epi::kQkv : k == 2 ? Epi::kSilu : Epi::kResidual,
                QkvEpilogue{&s, L.qkv_bias, layer, pos, red}, ResidualEpilogue{s.x, s.d_model},
                s.act, s.d_ff};
  matvec_stage<true, kFmts>(m, smem, epi);
}

// logits = W_out . RMSNorm(x)
template <bool kPaired = true>
__device__ inline void head_stage(const StepState& s, const float* out_norm, const DevMatrix& out,
                                  float* smem, float* red) {
  stage_input(smem, s.x, s.d_model, out_norm, s.eps, red, out);
  matvec_stage<kPaired>(out, smem, StoreEpilogue{s.logits, s.vocab, red});
}

}  // namespace pdvm::cuda
