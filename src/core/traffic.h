// Traffic: the bytes a decode step must move and the FLOPs it does, computed from shapes and
// WeightTypes alone (never by timing). The benchmark harness, kernel comments and the CLI all
// quote these numbers, so "GB/s" and "% of ceiling" mean the same thing everywhere.
// Counted: every weight matrix read once per token, norms and biases (f32), one embedding row,
// and the KV cache rows attention reads. Not counted: activations (KBs, cache-resident).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/config.h"
#include "core/model.h"
#include "core/weight.h"

namespace pdvm::core {

// The WeightType of each matrix of one layer (real GGUF files mix types across layers).
struct LayerTypes {
  WeightType wq = WeightType::kQ8_0, wk = WeightType::kQ8_0, wv = WeightType::kQ8_0,
             wo = WeightType::kQ8_0, w_gate = WeightType::kQ8_0, w_up = WeightType::kQ8_0,
             w_down = WeightType::kQ8_0;
};

struct ModelTypes {
  std::vector<LayerTypes> layers;  // [n_layers]
  WeightType tok_embd = WeightType::kQ8_0;
  WeightType output = WeightType::kQ8_0;  // LM head (== tok_embd's type when tied)
};

// Every layer `layer_type`, embedding and LM head `head_type` (how synthetic models are built).
ModelTypes uniform_types(const ModelConfig& c, WeightType layer_type, WeightType head_type);
// The types a loaded model actually holds (read from its Matrix views).
ModelTypes types_of(const Model& m);

// Bytes of a [rows, cols] matrix of `type`; 2*rows*cols FLOPs for y = W x.
size_t matrix_bytes(WeightType type, int64_t rows, int64_t cols);
inline double matvec_flops(int64_t rows, int64_t cols) { return 2.0 * double(rows) * double(cols); }

// Weight bytes of layer `t`: the seven matrices plus norms (and qkv biases), f32 vectors.
size_t layer_weight_bytes(const ModelConfig& c, const LayerTypes& t);
// Positions attention reads when the token at `pos` is decoded (the window caps it).
int64_t attended_positions(const ModelConfig& c, int64_t pos);
// KV-cache bytes attention reads, over all layers, decoding the token at `pos`: K and V rows of
// every attended position, `kv_elem_bytes` each (CPU cache: 4, f32; CUDA cache: 2, f16).
size_t kv_read_bytes(const ModelConfig& c, int64_t pos, int kv_elem_bytes);

struct TokenTraffic {
  size_t layer_weight_bytes = 0;  // all layers together
  size_t head_bytes = 0;          // final norm + LM head
  size_t embed_bytes = 0;         // one embedding row
  size_t kv_read_bytes = 0;       // KV cache read by attention
  size_t kv_write_bytes = 0;      // K and V of the new position, all layers
  double flops = 0;               // matvecs + attention (QK^T and PV); elementwise ops ignored
  size_t weight_bytes() const { return layer_weight_bytes + head_bytes + embed_bytes; }
  size_t total_bytes() const { return weight_bytes() + kv_read_bytes; }
};

// Traffic of one decode step at position `pos` (pos positions are already in the cache).
TokenTraffic token_traffic(const ModelConfig& c, const ModelTypes& t, int64_t pos, int kv_elem_bytes);

// Mean traffic of decoding `n_tokens` consecutive positions starting at `first_pos`
// (the KV term grows by one position per token; the weight terms do not change).
TokenTraffic mean_token_traffic(const ModelConfig& c, const ModelTypes& t, int64_t first_pos,
                                int n_tokens, int kv_elem_bytes);

}  // namespace pdvm::core
