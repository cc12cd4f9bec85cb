#include "cpu/reference_kernels.h"

#include <cmath>

#include <vector>

#include "formats/bitmap_i8.h"
#include "formats/mdcsr.h"
#include "formats/quant_blocks.h"

namespace pdvm::cpu::ref {

void rmsnorm(const float* x, const float* w, int n, float eps, float* out) {
  double ss = 0;
  for (int i = 0; i < n; ++i) ss += double(x[i]) * x[i];
  const double scale = 1.0 / std::sqrt(ss / n + eps);
  for (int i = 0; i < n; ++i) out[i] = float(x[i] * scale) * w[i];
}

// One row of w as f32: dense types through the block dequantizer, sparse types through their
// format's reference decoder (into int8 codes, then times the row scale).
static void dequantize_any_row(const core::Matrix& w, int64_t r, float* out) {
  if (!core::is_sparse(w.type)) return formats::dequantize_row(w.type, w.row(r), w.cols, out);
  // grows once per thread to the widest sparse matrix, then never again
  thread_local std::vector<int8_t> q;
  if (q.size() < size_t(w.cols)) q.resize(size_t(w.cols));
  const float scale = w.type == core::WeightType::kMdCsr ? formats::mdcsr_decode_row(w, r, q.data())
                                                         : formats::bitmap_i8_decode_row(w, r, q.data());
  for (int64_t c = 0; c < w.cols; ++c) out[c] = scale * q[size_t(c)];
}

void matvec(const core::Matrix& w, const float* x, float* y, float* row_scratch) {
  for (int64_t r = 0; r < w.rows; ++r) {
    dequantize_any_row(w, r, row_scratch);
    double acc = 0;
    for (int64_t c = 0; c < w.cols; ++c) acc += double(row_scratch[c]) * x[c];
    y[r] = float(acc);
  }
}

void rope(float* v, int n_heads, const core::ModelConfig& c, int pos) {
  const int half = c.rope_dim / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* head = v + size_t(h) * c.head_dim;
    for (int i = 0; i < half; ++i) {
      const double angle = double(pos) * c.rope_inv_freq(i);
      const double cs = std::cos(angle), sn = std::sin(angle);
      // kNeox pairs dim i with i + rope_dim/2 (rotate_half); kInterleaved pairs 2i with 2i+1.
      const int a = c.rope_style == core::RopeStyle::kNeox ? i : 2 * i;
      const int b = c.rope_style == core::RopeStyle::kNeox ? i + half : 2 * i + 1;
      const double x0 = head[a], x1 = head[b];
      head[a] = float(x0 * cs - x1 * sn);
      head[b] = float(x0 * sn + x1 * cs);
    }
  }
}

void attend_head(const float* q, const float* k_cache, const float* v_cache, int kv_stride,
                 int head_dim, int first, int last, float* scores, float* out) {
  const double scale = 1.0 / std::sqrt(double(head_dim));
  double max_score = -INFINITY;
  for (int p = first; p <= last; ++p) {
    const float* k = k_cache + size_t(p) * kv_stride;
    double s = 0;
    for (int d = 0; d < head_dim; ++d) s += double(q[d]) * k[d];
    s *= scale;
    scores[p - first] = float(s);
    max_score = std::max(max_score, s);
  }
  double sum = 0;
  for (int p = first; p <= last; ++p) sum += std::exp(double(scores[p - first]) - max_score);
  for (int d = 0; d < head_dim; ++d) {
    double acc = 0;
    for (int p = first; p <= last; ++p)
      acc += std::exp(double(scores[p - first]) - max_score) * v_cache[size_t(p) * kv_stride + d];
    out[d] = float(acc / sum);
  }
}

void swiglu(const float* gate, const float* up, int n, float* out) {
  for (int i = 0; i < n; ++i) {
    const double g = gate[i];
    out[i] = float(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

}  // namespace pdvm::cpu::ref
