// Model: a ModelConfig plus every weight, as views into storage the Model owns (file mappings
// or converted buffers). Built by model/load.cpp from a Hugging Face directory or a GGUF file;
// read by backends. Immutable once loaded, so backends may share it across threads.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/weight.h"

namespace pdvm::core {

struct LayerWeights {
  std::vector<float> attn_norm;  // [d_model]
  Matrix wq;                     // [n_heads * head_dim, d_model]
  Matrix wk;                     // [n_kv_heads * head_dim, d_model]
  Matrix wv;                     // [n_kv_heads * head_dim, d_model]
  std::vector<float> bq, bk, bv; // biases (Qwen2); empty when absent
  Matrix wo;                     // [d_model, n_heads * head_dim]
  std::vector<float> ffn_norm;   // [d_model]
  Matrix w_gate;                 // [d_ff, d_model]
  Matrix w_up;                   // [d_ff, d_model]
  Matrix w_down;                 // [d_model, d_ff]
};

struct Model {
  ModelConfig config;
  Matrix tok_embd;                 // [vocab_size, d_model]; one row is dequantized per token
  std::vector<LayerWeights> layers;
  std::vector<float> output_norm;  // [d_model]
  Matrix output;                   // [vocab_size, d_model]; == tok_embd when tied
  std::string source;              // path it was loaded from
  std::vector<std::shared_ptr<const void>> storage;  // keeps mappings / buffers alive

  // Bytes of weights a decode step reads: all layer matrices plus the LM head (one
  // embedding row is negligible and not counted).
  size_t weight_bytes_per_token() const;
};

}  // namespace pdvm::core
