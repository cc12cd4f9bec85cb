// ModelConfig validation and the rope frequency rule (incl. Llama-3 "llama3" scaling).
#include "core/config.h"

#include <cmath>

namespace pdvm::core {

const char* arch_name(Arch arch) {
  switch (arch) {
    case Arch::kLlama: return "llama";
    case Arch::kMistral: return "mistral";
    case Arch::kQwen2: return "qwen2";
    case Arch::kPhi3: return "phi3";
  }
  return "?";
}

Status ModelConfig::validate() const {
  auto need = [](bool ok, const std::string& what) {
    return ok ? Status::ok() : invalid_argument("model config: " + what);
  };
  PDVM_TRY(need(d_model > 0, "hidden size must be positive, got " + std::to_string(d_model)));
  PDVM_TRY(need(d_ff > 0, "intermediate size must be positive, got " + std::to_string(d_ff)));
  PDVM_TRY(need(n_layers > 0, "layer count must be positive, got " + std::to_string(n_layers)));
  PDVM_TRY(need(n_heads > 0 && n_kv_heads > 0,
                "head counts must be positive, got " + std::to_string(n_heads) + " query / " +
                    std::to_string(n_kv_heads) + " kv"));
  PDVM_TRY(need(n_heads % n_kv_heads == 0, "query heads (" + std::to_string(n_heads) +
                                               ") must be a multiple of kv heads (" +
                                               std::to_string(n_kv_heads) + ")"));
  PDVM_TRY(need(head_dim > 0 && head_dim % 2 == 0,
                "head_dim must be positive and even, got " + std::to_string(head_dim)));
  PDVM_TRY(need(rope_dim > 0 && rope_dim <= head_dim && rope_dim % 2 == 0,
                "rotary dims must be even and within head_dim, got " + std::to_string(rope_dim)));
  PDVM_TRY(need(vocab_size > 0, "vocab size must be positive, got " + std::to_string(vocab_size)));
  PDVM_TRY(need(max_seq > 0, "context length must be positive, got " + std::to_string(max_seq)));
  PDVM_TRY(need(rms_eps > 0 && std::isfinite(rms_eps), "rms_norm_eps must be positive"));
  PDVM_TRY(need(rope_theta > 0 && std::isfinite(rope_theta), "rope theta must be positive"));
  PDVM_TRY(need(rope_scaling.factor > 0, "rope scaling factor must be positive"));
  PDVM_TRY(need(rope_freq_factors.empty() || int(rope_freq_factors.size()) == rope_dim / 2,
                "rope_freqs has " + std::to_string(rope_freq_factors.size()) +
                    " factors, expected rotary dims / 2 = " + std::to_string(rope_dim / 2)));
  for (float f : rope_freq_factors)
    PDVM_TRY(need(f > 0 && std::isfinite(f), "rope_freqs factors must be positive and finite"));
  return Status::ok();
}

double ModelConfig::rope_inv_freq(int i) const {
  double freq = 1.0 / std::pow(double(rope_theta), 2.0 * i / rope_dim);
  if (size_t(i) < rope_freq_factors.size()) freq /= rope_freq_factors[size_t(i)];
  switch (rope_scaling.type) {
    case RopeScalingType::kNone: return freq;
    case RopeScalingType::kLinear: return freq / rope_scaling.factor;
    case RopeScalingType::kLlama3: {
      // transformers' _compute_llama3_parameters: long wavelengths are slowed by `factor`,
      // short ones kept, and the band between interpolated smoothly.
      const double pi = 3.14159265358979323846;
      const double old_ctx = rope_scaling.original_max_position;
      const double low_wavelen = old_ctx / rope_scaling.low_freq_factor;
      const double high_wavelen = old_ctx / rope_scaling.high_freq_factor;
      const double wavelen = 2 * pi / freq;
      if (wavelen < high_wavelen) return freq;
      if (wavelen > low_wavelen) return freq / rope_scaling.factor;
      const double smooth = (old_ctx / wavelen - rope_scaling.low_freq_factor) /
                            (rope_scaling.high_freq_factor - rope_scaling.low_freq_factor);
      return (1 - smooth) * freq / rope_scaling.factor + smooth * freq;
    }
  }
  return freq;
}

}  // namespace pdvm::core
