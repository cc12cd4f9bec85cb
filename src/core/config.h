// ModelConfig: the hyperparameters of one model. Family differences (Llama, Mistral, Qwen2,
// Phi-3/Phi-4, SmolLM2) are named fields here, not classes. Filled by model/hf_config.cpp from
// config.json, or by model/gguf_model.cpp from GGUF metadata; validated by validate().
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pdvm/status.h"

namespace pdvm::core {

enum class Arch { kLlama, kMistral, kQwen2, kPhi3 };
const char* arch_name(Arch arch);

// Which pairs of a head's dims rotate together.
enum class RopeStyle {
  kNeox,         // (i, i + rope_dim/2): Hugging Face's rotate_half, and GGUF qwen2/phi3
  kInterleaved,  // (2i, 2i+1): GGUF llama, whose converter permuted the Q and K rows
};

enum class RopeScalingType { kNone, kLinear, kLlama3 };

struct RopeScaling {
  RopeScalingType type = RopeScalingType::kNone;
  float factor = 1.0f;
  float low_freq_factor = 1.0f;    // llama3
  float high_freq_factor = 4.0f;   // llama3
  int original_max_position = 8192;  // llama3
};

struct ModelConfig {
  Arch arch = Arch::kLlama;
  int d_model = 0;
  int d_ff = 0;
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int vocab_size = 0;
  int max_seq = 0;          // the model's trained context (max_position_embeddings)
  float rms_eps = 1e-5f;
  float rope_theta = 10000.0f;
  int rope_dim = 0;         // rotated dims per head (== head_dim unless partial rotary)
  RopeStyle rope_style = RopeStyle::kNeox;
  RopeScaling rope_scaling;
  std::vector<float> rope_freq_factors;  // GGUF rope_freqs.weight: inv_freq[i] /= factor[i]
  bool qkv_bias = false;    // Qwen2
  bool tie_embeddings = false;
  int sliding_window = 0;   // 0: full attention; else attend to the last N positions (Mistral v0.1, Phi-3)
  int bos_id = -1;
  std::vector<int> eos_ids;

  // Checks that the numbers are positive and consistent; says which field is wrong.
  Status validate() const;
  // Frequency of rotary pair i (0 <= i < rope_dim/2), with rope scaling applied.
  double rope_inv_freq(int i) const;
};

}  // namespace pdvm::core
