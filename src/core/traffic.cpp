// traffic.cpp: bytes and FLOPs per decode step from shapes and types (see traffic.h).
#include "core/traffic.h"

#include <algorithm>

namespace pdvm::core {

ModelTypes uniform_types(const ModelConfig& c, WeightType layer_type, WeightType head_type) {
  ModelTypes t;
  LayerTypes l;
  l.wq = l.wk = l.wv = l.wo = l.w_gate = l.w_up = l.w_down = layer_type;
  t.layers.assign(size_t(std::max(c.n_layers, 0)), l);
  t.tok_embd = t.output = head_type;
  return t;
}

ModelTypes types_of(const Model& m) {
  ModelTypes t;
  for (const auto& w : m.layers)
    t.layers.push_back({w.wq.type, w.wk.type, w.wv.type, w.wo.type, w.w_gate.type, w.w_up.type,
                        w.w_down.type});
  t.tok_embd = m.tok_embd.type;
  t.output = m.output.type;
  return t;
}

size_t matrix_bytes(WeightType type, int64_t rows, int64_t cols) {
  return size_t(rows) * row_bytes(type, cols);
}

size_t layer_weight_bytes(const ModelConfig& c, const LayerTypes& t) {
  const int64_t d = c.d_model, q_dim = int64_t(c.n_heads) * c.head_dim,
                kv_dim = int64_t(c.n_kv_heads) * c.head_dim, ff = c.d_ff;
  size_t n = matrix_bytes(t.wq, q_dim, d) + matrix_bytes(t.wk, kv_dim, d) +
             matrix_bytes(t.wv, kv_dim, d) + matrix_bytes(t.wo, d, q_dim) +
             matrix_bytes(t.w_gate, ff, d) + matrix_bytes(t.w_up, ff, d) +
             matrix_bytes(t.w_down, d, ff);
  n += size_t(2 * d) * sizeof(float);                                   // attn_norm, ffn_norm
  if (c.qkv_bias) n += size_t(q_dim + 2 * kv_dim) * sizeof(float);  // bq, bk, bv
  return n;
}

int64_t attended_positions(const ModelConfig& c, int64_t pos) {
  const int64_t first = c.sliding_window > 0 ? std::max<int64_t>(0, pos - c.sliding_window + 1) : 0;
  return pos - first + 1;
}

size_t kv_read_bytes(const ModelConfig& c, int64_t pos, int kv_elem_bytes) {
  const int64_t kv_dim = int64_t(c.n_kv_heads) * c.head_dim;
  return size_t(c.n_layers) * size_t(attended_positions(c, pos)) * size_t(2 * kv_dim) *
         size_t(kv_elem_bytes);
}

TokenTraffic token_traffic(const ModelConfig& c, const ModelTypes& t, int64_t pos, int kv_elem_bytes) {
  TokenTraffic r;
  const int64_t d = c.d_model, q_dim = int64_t(c.n_heads) * c.head_dim,
                kv_dim = int64_t(c.n_kv_heads) * c.head_dim, ff = c.d_ff;
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerTypes& lt = l < int(t.layers.size()) ? t.layers[size_t(l)] : LayerTypes{};
    r.layer_weight_bytes += layer_weight_bytes(c, lt);
  }
  r.head_bytes = matrix_bytes(t.output, c.vocab_size, d) + size_t(d) * sizeof(float);
  r.embed_bytes = row_bytes(t.tok_embd, d);
  r.kv_read_bytes = kv_read_bytes(c, pos, kv_elem_bytes);
  r.kv_write_bytes = size_t(c.n_layers) * size_t(2 * kv_dim) * size_t(kv_elem_bytes);
  const double layer_matvec = matvec_flops(q_dim + 2 * kv_dim, d) + matvec_flops(d, q_dim) +
                              matvec_flops(2 * ff, d) + matvec_flops(d, ff);
  // per query head: q.k over head_dim for each position, then the weighted sum of V rows
  const double attn = 4.0 * double(c.n_heads) * double(c.head_dim) * double(attended_positions(c, pos));
  r.flops = double(c.n_layers) * (layer_matvec + attn) + matvec_flops(c.vocab_size, d);
  return r;
}

TokenTraffic mean_token_traffic(const ModelConfig& c, const ModelTypes& t, int64_t first_pos,
                                int n_tokens, int kv_elem_bytes) {
  TokenTraffic r = token_traffic(c, t, first_pos, kv_elem_bytes);
  if (n_tokens <= 1) return r;
  double kv = 0, flops = 0;
  for (int i = 0; i < n_tokens; ++i) {
    const TokenTraffic s = token_traffic(c, t, first_pos + i, kv_elem_bytes);
    kv += double(s.kv_read_bytes);
    flops += s.flops;
  }
  r.kv_read_bytes = size_t(kv / n_tokens + 0.5);
  r.flops = flops / n_tokens;
  return r;
}

}  // namespace pdvm::core
