#include "model/hf_config.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace pdvm::model {
using core::Arch;
using nlohmann::json;

namespace {

Result<std::string> read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return io_error(path + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Typed getters that say which key was wrong. Absent or null -> fallback.
template <typename T>
Result<T> get_or(const json& j, const char* key, T fallback, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if constexpr (std::is_same_v<T, bool>) {
    if (!it->is_boolean()) return invalid_argument(where + ": '" + key + "' must be true or false");
  } else if constexpr (std::is_integral_v<T>) {
    if (!it->is_number_integer())
      return invalid_argument(where + ": '" + key + "' must be an integer, found " + it->dump());
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!it->is_number())
      return invalid_argument(where + ": '" + key + "' must be a number, found " + it->dump());
  } else {
    if (!it->is_string())
      return invalid_argument(where + ": '" + key + "' must be a string, found " + it->dump());
  }
  return it->get<T>();
}

template <typename T>
Result<T> get_required(const json& j, const char* key, const std::string& where) {
  if (!j.contains(key) || j[key].is_null())
    return invalid_argument(where + ": required key '" + std::string(key) + "' is missing");
  return get_or<T>(j, key, T{}, where);
}

Status parse_rope(const json& cfg, core::ModelConfig& c, const std::string& where) {
  // transformers 5: rope_parameters {rope_type, rope_theta, factor, ...};
  // transformers 4: rope_theta at the top, rope_scaling {type|rope_type, factor, ...} or null.
  const json* scaling = nullptr;
  if (auto it = cfg.find("rope_parameters"); it != cfg.end() && it->is_object()) {
    scaling = &*it;
    PDVM_ASSIGN_OR_RETURN(c.rope_theta, get_or<float>(*it, "rope_theta", 10000.0f, where + " rope_parameters"));
  } else {
    PDVM_ASSIGN_OR_RETURN(c.rope_theta, get_or<float>(cfg, "rope_theta", 10000.0f, where));
    if (auto s = cfg.find("rope_scaling"); s != cfg.end() && !s->is_null()) {
      if (!s->is_object()) return invalid_argument(where + ": 'rope_scaling' must be an object");
      scaling = &*s;
    }
  }
  if (!scaling) return Status::ok();
  std::string type;
  if (scaling->contains("rope_type")) {
    PDVM_ASSIGN_OR_RETURN(type, get_or<std::string>(*scaling, "rope_type", "default", where));
  } else {
    PDVM_ASSIGN_OR_RETURN(type, get_or<std::string>(*scaling, "type", "default", where));
  }
  auto& rs = c.rope_scaling;
  if (type == "default") return Status::ok();
  PDVM_ASSIGN_OR_RETURN(rs.factor, get_or<float>(*scaling, "factor", 1.0f, where + " rope scaling"));
  if (type == "linear") {
    rs.type = core::RopeScalingType::kLinear;
  } else if (type == "llama3") {
    rs.type = core::RopeScalingType::kLlama3;
    PDVM_ASSIGN_OR_RETURN(rs.low_freq_factor, get_or<float>(*scaling, "low_freq_factor", 1.0f, where));
    PDVM_ASSIGN_OR_RETURN(rs.high_freq_factor, get_or<float>(*scaling, "high_freq_factor", 4.0f, where));
    PDVM_ASSIGN_OR_RETURN(rs.original_max_position,
                          get_or<int>(*scaling, "original_max_position_embeddings", 8192, where));
    if (rs.high_freq_factor <= rs.low_freq_factor)
      return invalid_argument(where + ": llama3 rope scaling needs high_freq_factor > low_freq_factor");
  } else {
    return unsupported(where + ": rope scaling type '" + type +
                       "' is not supported (supported: default, linear, llama3)");
  }
  return Status::ok();
}

}  // namespace

Result<core::ModelConfig> parse_hf_config(const std::string& text, const std::string& where) {
  json cfg = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (cfg.is_discarded()) return corrupt(where + ": not valid JSON");
  if (!cfg.is_object()) return corrupt(where + ": expected a JSON object");

  core::ModelConfig c;
  std::string model_type;
  PDVM_ASSIGN_OR_RETURN(model_type, get_or<std::string>(cfg, "model_type", "", where));
  if (model_type == "llama") c.arch = Arch::kLlama;
  else if (model_type == "mistral") c.arch = Arch::kMistral;
  else if (model_type == "qwen2") c.arch = Arch::kQwen2;
  else if (model_type == "phi3") c.arch = Arch::kPhi3;
  else
    return unsupported(where + ": model_type '" + model_type +
                       "' is not supported (supported: llama, mistral, qwen2, phi3)");

  PDVM_ASSIGN_OR_RETURN(c.d_model, get_required<int>(cfg, "hidden_size", where));
  PDVM_ASSIGN_OR_RETURN(c.d_ff, get_required<int>(cfg, "intermediate_size", where));
  PDVM_ASSIGN_OR_RETURN(c.n_layers, get_required<int>(cfg, "num_hidden_layers", where));
  PDVM_ASSIGN_OR_RETURN(c.n_heads, get_required<int>(cfg, "num_attention_heads", where));
  PDVM_ASSIGN_OR_RETURN(c.n_kv_heads, get_or<int>(cfg, "num_key_value_heads", c.n_heads, where));
  PDVM_ASSIGN_OR_RETURN(c.vocab_size, get_required<int>(cfg, "vocab_size", where));
  PDVM_ASSIGN_OR_RETURN(c.max_seq, get_or<int>(cfg, "max_position_embeddings", 2048, where));
  PDVM_ASSIGN_OR_RETURN(c.rms_eps, get_or<float>(cfg, "rms_norm_eps", 1e-6f, where));
  if (c.n_heads <= 0) return invalid_argument(where + ": num_attention_heads must be positive");
  PDVM_ASSIGN_OR_RETURN(c.head_dim, get_or<int>(cfg, "head_dim", c.d_model / c.n_heads, where));
  PDVM_ASSIGN_OR_RETURN(c.tie_embeddings, get_or<bool>(cfg, "tie_word_embeddings", false, where));

  float partial_rotary = 1.0f;
  PDVM_ASSIGN_OR_RETURN(partial_rotary, get_or<float>(cfg, "partial_rotary_factor", 1.0f, where));
  c.rope_dim = int(float(c.head_dim) * partial_rotary);
  c.rope_style = core::RopeStyle::kNeox;  // HF checkpoints use rotate_half
  PDVM_TRY(parse_rope(cfg, c, where));

  bool attention_bias = false, mlp_bias = false;
  PDVM_ASSIGN_OR_RETURN(attention_bias, get_or<bool>(cfg, "attention_bias", false, where));
  PDVM_ASSIGN_OR_RETURN(mlp_bias, get_or<bool>(cfg, "mlp_bias", false, where));
  if (mlp_bias) return unsupported(where + ": mlp_bias=true is not supported");
  if (attention_bias)
    return unsupported(where + ": attention_bias=true (with an o_proj bias) is not supported");
  c.qkv_bias = c.arch == Arch::kQwen2;

  std::string act;
  PDVM_ASSIGN_OR_RETURN(act, get_or<std::string>(cfg, "hidden_act", "silu", where));
  if (act != "silu")
    return unsupported(where + ": hidden_act '" + act + "' is not supported (only silu)");

  // Sliding window: Mistral applies it when set; Qwen2 only with use_sliding_window.
  int window = 0;
  PDVM_ASSIGN_OR_RETURN(window, get_or<int>(cfg, "sliding_window", 0, where));
  bool use_window = c.arch == Arch::kMistral || c.arch == Arch::kPhi3;
  if (c.arch == Arch::kQwen2) {
    PDVM_ASSIGN_OR_RETURN(use_window, get_or<bool>(cfg, "use_sliding_window", false, where));
  }
  c.sliding_window = use_window ? window : 0;

  PDVM_ASSIGN_OR_RETURN(c.bos_id, get_or<int>(cfg, "bos_token_id", -1, where));
  if (auto it = cfg.find("eos_token_id"); it != cfg.end() && !it->is_null()) {
    if (it->is_number_integer()) c.eos_ids = {it->get<int>()};
    else if (it->is_array()) {
      for (const auto& e : *it) {
        if (!e.is_number_integer()) return invalid_argument(where + ": 'eos_token_id' must hold integers");
        c.eos_ids.push_back(e.get<int>());
      }
    } else {
      return invalid_argument(where + ": 'eos_token_id' must be an integer or a list");
    }
  }
  PDVM_TRY(c.validate().with_context(where));
  return c;
}

Result<core::ModelConfig> load_hf_config(const std::string& path) {
  PDVM_ASSIGN_OR_RETURN(std::string text, read_text_file(path));
  return parse_hf_config(text, path);
}

}  // namespace pdvm::model
