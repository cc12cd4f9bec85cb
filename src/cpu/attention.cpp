#include "cpu/attention.h"

#include <algorithm>
#include <cmath>

#include "cpu/vec_ops.h"

namespace pdvm::cpu {

void attend_heads(const float* q_all, const float* k_layer, const float* v_layer, const AttentionShape& s,
                  int first, int last, float* scores_all, int scores_stride, float* out_all,
                  core::ThreadPool& pool) {
  const int hd = s.head_dim, group = s.n_heads / s.n_kv_heads;
  const float scale = 1.0f / std::sqrt(float(hd));
  pool.run([&](int t, int nt) {
    float* scores = scores_all + size_t(t) * size_t(scores_stride);
    for (int h = t; h < s.n_heads; h += nt) {
      const float* q = q_all + size_t(h) * hd;
      const float* k = k_layer + size_t(h / group) * hd;
      const float* v = v_layer + size_t(h / group) * hd;
      float max_score = -INFINITY;
      for (int p = first; p <= last; ++p) {
        const float sc = dot_f32(q, k + size_t(p) * s.kv_stride, hd) * scale;
        scores[p - first] = sc;
        max_score = std::max(max_score, sc);
      }
      const float sum = exp_shift_sum_f32(scores, last - first + 1, max_score);
      float* out = out_all + size_t(h) * hd;
      std::fill(out, out + hd, 0.0f);
      const float inv_sum = 1.0f / sum;
      for (int p = first; p <= last; ++p)
        axpy_f32(scores[p - first] * inv_sum, v + size_t(p) * s.kv_stride, out, hd);
    }
  });
}

void rope_f32(float* v, int n_heads, int head_dim, int half, core::RopeStyle style, const float* inv_freq, int pos) {
  const bool neox = style == core::RopeStyle::kNeox;
  for (int i = 0; i < half; ++i) {
    const float angle = float(pos) * inv_freq[i];
    const float cs = std::cos(angle), sn = std::sin(angle);
    const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
    for (int h = 0; h < n_heads; ++h) {
      float* head = v + size_t(h) * head_dim;
      const float x0 = head[a], x1 = head[b];
      head[a] = x0 * cs - x1 * sn;
      head[b] = x0 * sn + x1 * cs;
    }
  }
}

}  // namespace pdvm::cpu
