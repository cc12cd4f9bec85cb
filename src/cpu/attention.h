// The CPU fast path's attention and rope over an f32 KV cache, as free functions so the backend,
// its tests and bench_cpu_ops share them. The plain versions are in cpu/reference_kernels.h.
#pragma once

#include "core/config.h"
#include "core/thread_pool.h"

namespace pdvm::cpu {

struct AttentionShape {
  int n_heads = 0;
  int n_kv_heads = 0;  // query head h reads kv head h / (n_heads / n_kv_heads)
  int head_dim = 0;
  int kv_stride = 0;   // floats between one position's rows in the cache (n_kv_heads * head_dim)
};

// out[h] = softmax(q[h] . K[first..last] / sqrt(head_dim)) . V[first..last] for every query head,
// heads split across the pool's threads. scores: [pool.size()][scores_stride] floats of scratch.
// Reads: 2 * (last - first + 1) * n_kv_heads * head_dim * 4 B of cache (per query-head group:
// the group's heads re-read their kv head, mostly from L2). FLOPs: 4 * positions * n_heads * head_dim.
void attend_heads(const float* q, const float* k_layer, const float* v_layer, const AttentionShape& s,
                  int first, int last, float* scores, int scores_stride, float* out, core::ThreadPool& pool);

// Rotates the first 2 * half dims of each of n_heads heads to position pos, with inv_freq[half]
// precomputed (core::ModelConfig::rope_inv_freq), pairing dims by `style`.
void rope_f32(float* v, int n_heads, int head_dim, int half, core::RopeStyle style, const float* inv_freq, int pos);

}  // namespace pdvm::cpu
