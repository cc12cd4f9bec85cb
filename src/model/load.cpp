// load_model: Hugging Face directories and GGUF files -> Model (+ tokenizer). The tensor-name
// maps for both sources live here, side by side, so a reader sees one table per layout.
#include "model/load.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "model/hf_config.h"
#include "model/load_pdvm.h"
#include "model/tensor_convert.h"

namespace pdvm::model {
namespace fs = std::filesystem;
using core::Arch;
using core::Matrix;
using nlohmann::json;

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

Result<json> read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return io_error(path + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  json j = json::parse(ss.str(), nullptr, false);
  if (j.is_discarded()) return corrupt(path + ": not valid JSON");
  return j;
}

// ---- Hugging Face safetensors ----------------------------------------------------------------

// All tensors of a (possibly sharded) checkpoint by name.
class SafetensorsSet {
 public:
  Status add(formats::SafetensorsFile file) {
    files_.push_back(std::make_unique<formats::SafetensorsFile>(std::move(file)));
    const auto& f = *files_.back();
    for (const auto& t : f.tensors()) {
      if (!by_name_.emplace(t.name, &t).second)
        return corrupt(f.path() + ": tensor '" + t.name + "' also appears in another shard");
    }
    return Status::ok();
  }
  const formats::SafetensorsTensor* find(const std::string& name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : it->second;
  }
  void keep_alive(core::Model& m) const {
    for (const auto& f : files_) m.storage.push_back(f->mapping());
  }
  std::string where(const std::string& name) const { return name; }

  Result<Matrix> matrix(const std::string& name, int64_t rows, int64_t cols) const {
    const auto* t = find(name);
    if (!t) return not_found("tensor '" + name + "' is missing");
    auto type = weight_type_from_safetensors_dtype(t->dtype);
    if (!type)
      return unsupported("tensor '" + name + "' has dtype " + t->dtype +
                         " (supported for weights: F32, F16, BF16)");
    if (t->shape != std::vector<int64_t>{rows, cols})
      return invalid_argument("tensor '" + name + "' has shape " + shape_str(t->shape) +
                              ", expected " + shape_str({rows, cols}) + " from config.json");
    return Matrix{*type, rows, cols, t->data};
  }
  Result<std::vector<float>> vector(const std::string& name, int64_t n) const {
    const auto* t = find(name);
    if (!t) return not_found("tensor '" + name + "' is missing");
    auto type = weight_type_from_safetensors_dtype(t->dtype);
    if (!type) return unsupported("tensor '" + name + "' has dtype " + t->dtype);
    if (t->shape != std::vector<int64_t>{n})
      return invalid_argument("tensor '" + name + "' has shape " + shape_str(t->shape) +
                              ", expected " + shape_str({n}) + " from config.json");
    return to_f32(*type, t->data, n);
  }

 private:
  std::vector<std::unique_ptr<formats::SafetensorsFile>> files_;
  std::map<std::string, const formats::SafetensorsTensor*> by_name_;
};

Status load_hf_layers(const SafetensorsSet& st, core::Model& m) {
  const auto& c = m.config;
  const int64_t q_rows = int64_t(c.n_heads) * c.head_dim, kv_rows = int64_t(c.n_kv_heads) * c.head_dim;
  m.layers.resize(size_t(c.n_layers));
  for (int i = 0; i < c.n_layers; ++i) {
    auto& l = m.layers[size_t(i)];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    PDVM_ASSIGN_OR_RETURN(l.attn_norm, st.vector(p + "input_layernorm.weight", c.d_model));
    PDVM_ASSIGN_OR_RETURN(l.ffn_norm, st.vector(p + "post_attention_layernorm.weight", c.d_model));
    if (c.arch == Arch::kPhi3) {
      // Phi-3/Phi-4 store Q,K,V as one matrix and gate,up as another: split by rows, no copy.
      PDVM_ASSIGN_OR_RETURN(Matrix qkv, st.matrix(p + "self_attn.qkv_proj.weight", q_rows + 2 * kv_rows, c.d_model));
      l.wq = qkv.slice_rows(0, q_rows);
      l.wk = qkv.slice_rows(q_rows, kv_rows);
      l.wv = qkv.slice_rows(q_rows + kv_rows, kv_rows);
      PDVM_ASSIGN_OR_RETURN(Matrix gate_up, st.matrix(p + "mlp.gate_up_proj.weight", 2 * int64_t(c.d_ff), c.d_model));
      l.w_gate = gate_up.slice_rows(0, c.d_ff);
      l.w_up = gate_up.slice_rows(c.d_ff, c.d_ff);
    } else {
      PDVM_ASSIGN_OR_RETURN(l.wq, st.matrix(p + "self_attn.q_proj.weight", q_rows, c.d_model));
      PDVM_ASSIGN_OR_RETURN(l.wk, st.matrix(p + "self_attn.k_proj.weight", kv_rows, c.d_model));
      PDVM_ASSIGN_OR_RETURN(l.wv, st.matrix(p + "self_attn.v_proj.weight", kv_rows, c.d_model));
      PDVM_ASSIGN_OR_RETURN(l.w_gate, st.matrix(p + "mlp.gate_proj.weight", c.d_ff, c.d_model));
      PDVM_ASSIGN_OR_RETURN(l.w_up, st.matrix(p + "mlp.up_proj.weight", c.d_ff, c.d_model));
    }
    if (c.qkv_bias) {
      PDVM_ASSIGN_OR_RETURN(l.bq, st.vector(p + "self_attn.q_proj.bias", q_rows));
      PDVM_ASSIGN_OR_RETURN(l.bk, st.vector(p + "self_attn.k_proj.bias", kv_rows));
      PDVM_ASSIGN_OR_RETURN(l.bv, st.vector(p + "self_attn.v_proj.bias", kv_rows));
    }
    PDVM_ASSIGN_OR_RETURN(l.wo, st.matrix(p + "self_attn.o_proj.weight", c.d_model, q_rows));
    PDVM_ASSIGN_OR_RETURN(l.w_down, st.matrix(p + "mlp.down_proj.weight", c.d_model, c.d_ff));
  }
  return Status::ok();
}

Result<std::vector<std::string>> shard_files(const std::string& dir) {
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(index)) {
    PDVM_ASSIGN_OR_RETURN(json j, read_json_file(index.string()));
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      return corrupt(index.string() + ": expected an object with a 'weight_map' object");
    std::set<std::string> files;
    for (const auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string()) return corrupt(index.string() + ": weight_map['" + name + "'] is not a string");
      const std::string f = file.get<std::string>();
      if (f.find('/') != std::string::npos || f.find("..") != std::string::npos)
        return corrupt(index.string() + ": shard name '" + f + "' must be a plain file name");
      files.insert(f);
    }
    std::vector<std::string> out;
    for (const auto& f : files) out.push_back((fs::path(dir) / f).string());
    return out;
  }
  const fs::path single = fs::path(dir) / "model.safetensors";
  if (fs::exists(single)) return std::vector<std::string>{single.string()};
  return not_found(dir + ": no model.safetensors or model.safetensors.index.json");
}

// generation_config.json may list more EOS ids than config.json (Llama-3 instruct does).
void merge_generation_config(const std::string& dir, core::ModelConfig& c) {
  const fs::path p = fs::path(dir) / "generation_config.json";
  if (!fs::exists(p)) return;
  auto j = read_json_file(p.string());
  if (!j.is_ok() || !j->is_object()) return;
  auto add = [&](const json& e) {
    if (e.is_number_integer() &&
        std::find(c.eos_ids.begin(), c.eos_ids.end(), e.get<int>()) == c.eos_ids.end())
      c.eos_ids.push_back(e.get<int>());
  };
  if (auto it = j->find("eos_token_id"); it != j->end()) {
    if (it->is_array()) for (const auto& e : *it) add(e);
    else add(*it);
  }
}

// ---- GGUF ------------------------------------------------------------------------------------

class GgufTensors {
 public:
  explicit GgufTensors(const formats::GgufFile& f) : f_(f) {}
  Result<Matrix> matrix(const std::string& name, int64_t rows, int64_t cols) const {
    const auto* t = f_.find(name);
    if (!t) return not_found("tensor '" + name + "' is missing");
    if (!t->weight_type)
      return unsupported("tensor '" + name + "' has ggml type " + std::to_string(t->ggml_type) +
                         ", which pdvm does not run (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, "
                         "Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)");
    if (t->dims != std::vector<int64_t>{cols, rows})
      return invalid_argument("tensor '" + name + "' has dims " + shape_str(t->dims) +
                              ", expected " + shape_str({cols, rows}) + " from the metadata");
    return Matrix{*t->weight_type, rows, cols, t->data};
  }
  Result<std::vector<float>> vector(const std::string& name, int64_t n) const {
    const auto* t = f_.find(name);
    if (!t) return not_found("tensor '" + name + "' is missing");
    if (!t->weight_type) return unsupported("tensor '" + name + "' has an unsupported ggml type");
    if (t->dims != std::vector<int64_t>{n})
      return invalid_argument("tensor '" + name + "' has dims " + shape_str(t->dims) +
                              ", expected " + shape_str({n}));
    return to_f32(*t->weight_type, t->data, n);
  }
  bool has(const std::string& name) const { return f_.find(name) != nullptr; }

 private:
  const formats::GgufFile& f_;
};

Result<core::ModelConfig> gguf_config(const formats::GgufFile& f) {
  core::ModelConfig c;
  PDVM_ASSIGN_OR_RETURN(std::string arch, f.get_string("general.architecture"));
  core::RopeStyle rope_style = core::RopeStyle::kNeox;
  if (arch == "llama" || arch == "mistral") {
    c.arch = arch == "llama" ? Arch::kLlama : Arch::kMistral;
    rope_style = core::RopeStyle::kInterleaved;  // llama.cpp's converter permuted Q and K
  } else if (arch == "qwen2") {
    c.arch = Arch::kQwen2;
    c.qkv_bias = true;
  } else if (arch == "phi3") {
    c.arch = Arch::kPhi3;
  } else {
    return unsupported("architecture '" + arch + "' is not supported (supported: llama, mistral, qwen2, phi3)");
  }
  c.rope_style = rope_style;
  auto key = [&](const std::string& k) { return arch + "." + k; };
  auto get_int = [&](const std::string& k) -> Result<int> {
    PDVM_ASSIGN_OR_RETURN(int64_t v, f.get_int(key(k)));
    if (v <= 0 || v > (int64_t(1) << 30)) return invalid_argument("metadata '" + key(k) + "' = " + std::to_string(v) + " is out of range");
    return int(v);
  };
  PDVM_ASSIGN_OR_RETURN(c.n_layers, get_int("block_count"));
  PDVM_ASSIGN_OR_RETURN(c.d_model, get_int("embedding_length"));
  PDVM_ASSIGN_OR_RETURN(c.d_ff, get_int("feed_forward_length"));
  PDVM_ASSIGN_OR_RETURN(c.n_heads, get_int("attention.head_count"));
  c.n_kv_heads = c.n_heads;
  if (f.has(key("attention.head_count_kv"))) { PDVM_ASSIGN_OR_RETURN(c.n_kv_heads, get_int("attention.head_count_kv")); }
  c.head_dim = c.d_model / c.n_heads;
  if (f.has(key("attention.key_length"))) { PDVM_ASSIGN_OR_RETURN(c.head_dim, get_int("attention.key_length")); }
  c.rope_dim = c.head_dim;
  if (f.has(key("rope.dimension_count"))) { PDVM_ASSIGN_OR_RETURN(c.rope_dim, get_int("rope.dimension_count")); }
  c.max_seq = 2048;
  if (f.has(key("context_length"))) { PDVM_ASSIGN_OR_RETURN(c.max_seq, get_int("context_length")); }
  if (f.has(key("rope.freq_base"))) {
    PDVM_ASSIGN_OR_RETURN(double theta, f.get_float(key("rope.freq_base")));
    c.rope_theta = float(theta);
  }
  if (f.has(key("attention.layer_norm_rms_epsilon"))) {
    PDVM_ASSIGN_OR_RETURN(double eps, f.get_float(key("attention.layer_norm_rms_epsilon")));
    c.rms_eps = float(eps);
  }
  if (f.has(key("attention.sliding_window"))) {
    PDVM_ASSIGN_OR_RETURN(int64_t w, f.get_int(key("attention.sliding_window")));
    c.sliding_window = int(std::max<int64_t>(0, w));
  }
  if (f.has(key("rope.scaling.type"))) {
    PDVM_ASSIGN_OR_RETURN(std::string type, f.get_string(key("rope.scaling.type")));
    if (type == "linear") {
      c.rope_scaling.type = core::RopeScalingType::kLinear;
      PDVM_ASSIGN_OR_RETURN(double factor, f.get_float(key("rope.scaling.factor")));
      c.rope_scaling.factor = float(factor);
    } else if (type != "none") {
      return unsupported("metadata '" + key("rope.scaling.type") + "' = '" + type +
                         "' is not supported (supported: none, linear, and llama3 via rope_freqs)");
    }
  }
  // Vocabulary: the embedding's row count is the truth; metadata may omit vocab_size.
  const auto* embd = f.find("token_embd.weight");
  if (!embd) return not_found("tensor 'token_embd.weight' is missing");
  if (embd->dims.size() != 2) return invalid_argument("tensor 'token_embd.weight' must be 2-D");
  c.vocab_size = int(embd->dims[1]);
  c.tie_embeddings = f.find("output.weight") == nullptr;
  if (f.has("tokenizer.ggml.bos_token_id")) { PDVM_ASSIGN_OR_RETURN(int64_t b, f.get_int("tokenizer.ggml.bos_token_id")); c.bos_id = int(b); }
  if (f.has("tokenizer.ggml.eos_token_id")) { PDVM_ASSIGN_OR_RETURN(int64_t e, f.get_int("tokenizer.ggml.eos_token_id")); c.eos_ids = {int(e)}; }
  if (f.has("tokenizer.ggml.eot_token_id")) {
    PDVM_ASSIGN_OR_RETURN(int64_t e, f.get_int("tokenizer.ggml.eot_token_id"));
    if (std::find(c.eos_ids.begin(), c.eos_ids.end(), int(e)) == c.eos_ids.end()) c.eos_ids.push_back(int(e));
  }
  return c;
}

Status load_gguf_layers(const GgufTensors& g, core::Model& m) {
  const auto& c = m.config;
  const int64_t q_rows = int64_t(c.n_heads) * c.head_dim, kv_rows = int64_t(c.n_kv_heads) * c.head_dim;
  m.layers.resize(size_t(c.n_layers));
  for (int i = 0; i < c.n_layers; ++i) {
    auto& l = m.layers[size_t(i)];
    const std::string p = "blk." + std::to_string(i) + ".";
    PDVM_ASSIGN_OR_RETURN(l.attn_norm, g.vector(p + "attn_norm.weight", c.d_model));
    PDVM_ASSIGN_OR_RETURN(l.ffn_norm, g.vector(p + "ffn_norm.weight", c.d_model));
    if (g.has(p + "attn_qkv.weight")) {  // Phi-3 layout: fused QKV
      PDVM_ASSIGN_OR_RETURN(Matrix qkv, g.matrix(p + "attn_qkv.weight", q_rows + 2 * kv_rows, c.d_model));
      l.wq = qkv.slice_rows(0, q_rows);
      l.wk = qkv.slice_rows(q_rows, kv_rows);
      l.wv = qkv.slice_rows(q_rows + kv_rows, kv_rows);
    } else {
      PDVM_ASSIGN_OR_RETURN(l.wq, g.matrix(p + "attn_q.weight", q_rows, c.d_model));
      PDVM_ASSIGN_OR_RETURN(l.wk, g.matrix(p + "attn_k.weight", kv_rows, c.d_model));
      PDVM_ASSIGN_OR_RETURN(l.wv, g.matrix(p + "attn_v.weight", kv_rows, c.d_model));
    }
    if (c.qkv_bias) {
      PDVM_ASSIGN_OR_RETURN(l.bq, g.vector(p + "attn_q.bias", q_rows));
      PDVM_ASSIGN_OR_RETURN(l.bk, g.vector(p + "attn_k.bias", kv_rows));
      PDVM_ASSIGN_OR_RETURN(l.bv, g.vector(p + "attn_v.bias", kv_rows));
    }
    PDVM_ASSIGN_OR_RETURN(l.wo, g.matrix(p + "attn_output.weight", c.d_model, q_rows));
    if (!g.has(p + "ffn_gate.weight")) {  // Phi-3 layout: ffn_up holds gate and up
      PDVM_ASSIGN_OR_RETURN(Matrix gate_up, g.matrix(p + "ffn_up.weight", 2 * int64_t(c.d_ff), c.d_model));
      l.w_gate = gate_up.slice_rows(0, c.d_ff);
      l.w_up = gate_up.slice_rows(c.d_ff, c.d_ff);
    } else {
      PDVM_ASSIGN_OR_RETURN(l.w_gate, g.matrix(p + "ffn_gate.weight", c.d_ff, c.d_model));
      PDVM_ASSIGN_OR_RETURN(l.w_up, g.matrix(p + "ffn_up.weight", c.d_ff, c.d_model));
    }
    PDVM_ASSIGN_OR_RETURN(l.w_down, g.matrix(p + "ffn_down.weight", c.d_model, c.d_ff));
  }
  return Status::ok();
}

Result<tokenizer::TokenizerSpec> gguf_tokenizer_spec(const formats::GgufFile& f) {
  tokenizer::TokenizerSpec s;
  PDVM_ASSIGN_OR_RETURN(s.model, f.get_string("tokenizer.ggml.model"));
  if (f.has("tokenizer.ggml.pre")) { PDVM_ASSIGN_OR_RETURN(s.pre, f.get_string("tokenizer.ggml.pre")); }
  PDVM_ASSIGN_OR_RETURN(s.tokens, f.get_string_array("tokenizer.ggml.tokens"));
  if (f.has("tokenizer.ggml.token_type")) {
    PDVM_ASSIGN_OR_RETURN(auto types, f.get_int_array("tokenizer.ggml.token_type"));
    s.token_types.assign(types.begin(), types.end());
  }
  if (f.has("tokenizer.ggml.merges")) { PDVM_ASSIGN_OR_RETURN(s.merges, f.get_string_array("tokenizer.ggml.merges")); }
  if (f.has("tokenizer.ggml.scores")) {
    PDVM_ASSIGN_OR_RETURN(auto scores, f.get_float_array("tokenizer.ggml.scores"));
    s.scores.assign(scores.begin(), scores.end());
  }
  auto id = [&](const char* k, int32_t& out) -> Status {
    if (!f.has(k)) return Status::ok();
    PDVM_ASSIGN_OR_RETURN(int64_t v, f.get_int(k));
    out = int32_t(v);
    return Status::ok();
  };
  PDVM_TRY(id("tokenizer.ggml.bos_token_id", s.bos_id));
  PDVM_TRY(id("tokenizer.ggml.eos_token_id", s.eos_id));
  PDVM_TRY(id("tokenizer.ggml.unknown_token_id", s.unk_id));
  PDVM_TRY(id("tokenizer.ggml.padding_token_id", s.pad_id));
  if (f.has("tokenizer.ggml.add_bos_token")) { PDVM_ASSIGN_OR_RETURN(s.add_bos, f.get_bool("tokenizer.ggml.add_bos_token")); }
  if (f.has("tokenizer.ggml.add_eos_token")) { PDVM_ASSIGN_OR_RETURN(s.add_eos, f.get_bool("tokenizer.ggml.add_eos_token")); }
  if (f.has("tokenizer.ggml.add_space_prefix")) { PDVM_ASSIGN_OR_RETURN(s.add_space_prefix, f.get_bool("tokenizer.ggml.add_space_prefix")); }
  if (f.has("tokenizer.chat_template")) { PDVM_ASSIGN_OR_RETURN(s.chat_template, f.get_string("tokenizer.chat_template")); }
  return s;
}

}  // namespace

Result<LoadedModel> load_hf_directory(const std::string& dir) {
  LoadedModel out;
  auto& m = out.model;
  m.source = dir;
  PDVM_ASSIGN_OR_RETURN(m.config, load_hf_config((fs::path(dir) / "config.json").string()));
  merge_generation_config(dir, m.config);
  const auto& c = m.config;

  PDVM_ASSIGN_OR_RETURN(auto files, shard_files(dir));
  SafetensorsSet st;
  for (const auto& f : files) {
    PDVM_ASSIGN_OR_RETURN(auto file, formats::SafetensorsFile::open(f));
    PDVM_TRY(st.add(std::move(file)));
  }
  auto in_dir = [&](Status s) { return s.with_context(dir); };
  {
    auto r = st.matrix("model.embed_tokens.weight", c.vocab_size, c.d_model);
    if (!r.is_ok()) return in_dir(r.status());
    m.tok_embd = *r;
  }
  if (Status s = load_hf_layers(st, m); !s.is_ok()) return in_dir(s);
  {
    auto r = st.vector("model.norm.weight", c.d_model);
    if (!r.is_ok()) return in_dir(r.status());
    m.output_norm = std::move(*r);
  }
  if (c.tie_embeddings || !st.find("lm_head.weight")) {
    if (!c.tie_embeddings) return in_dir(not_found("tensor 'lm_head.weight' is missing and tie_word_embeddings is false"));
    m.output = m.tok_embd;
  } else {
    auto r = st.matrix("lm_head.weight", c.vocab_size, c.d_model);
    if (!r.is_ok()) return in_dir(r.status());
    m.output = *r;
  }
  st.keep_alive(m);

  const fs::path tok_json = fs::path(dir) / "tokenizer.json";
  if (fs::exists(tok_json)) {
    const fs::path tok_cfg = fs::path(dir) / "tokenizer_config.json";
    PDVM_ASSIGN_OR_RETURN(auto tok, tokenizer::Tokenizer::from_json_file(
                                        tok_json.string(), fs::exists(tok_cfg) ? tok_cfg.string() : ""));
    out.tokenizer = std::make_shared<tokenizer::Tokenizer>(std::move(tok));
    out.chat_template = out.tokenizer->chat_template();
  }
  return out;
}

Result<LoadedModel> load_gguf(const std::string& path) {
  PDVM_ASSIGN_OR_RETURN(auto file, formats::GgufFile::open(path));
  LoadedModel out;
  auto& m = out.model;
  m.source = path;
  auto at = [&](const Status& s) { return s.with_context(path); };
  {
    auto r = gguf_config(file);
    if (!r.is_ok()) return at(r.status());
    m.config = std::move(*r);
  }
  GgufTensors g(file);
  if (g.has("rope_freqs.weight")) {  // Llama-3.1 style scaling, as per-frequency factors
    auto r = g.vector("rope_freqs.weight", m.config.rope_dim / 2);
    if (!r.is_ok()) return at(r.status());
    m.config.rope_freq_factors = std::move(*r);
  }
  if (Status s = m.config.validate(); !s.is_ok()) return at(s);
  const auto& c = m.config;
  {
    auto r = g.matrix("token_embd.weight", c.vocab_size, c.d_model);
    if (!r.is_ok()) return at(r.status());
    m.tok_embd = *r;
  }
  if (Status s = load_gguf_layers(g, m); !s.is_ok()) return at(s);
  {
    auto r = g.vector("output_norm.weight", c.d_model);
    if (!r.is_ok()) return at(r.status());
    m.output_norm = std::move(*r);
  }
  if (c.tie_embeddings) {
    m.output = m.tok_embd;
  } else {
    auto r = g.matrix("output.weight", c.vocab_size, c.d_model);
    if (!r.is_ok()) return at(r.status());
    m.output = *r;
  }
  m.storage.push_back(file.mapping());

  if (file.has("tokenizer.ggml.model")) {
    auto spec = gguf_tokenizer_spec(file);
    if (!spec.is_ok()) return at(spec.status());
    auto tok = tokenizer::Tokenizer::from_spec(*spec);
    if (!tok.is_ok()) return at(tok.status());
    out.tokenizer = std::make_shared<tokenizer::Tokenizer>(std::move(*tok));
    out.chat_template = spec->chat_template;
  }
  return out;
}

Result<LoadedModel> load_model(const std::string& path) {
  if (is_pdvm_path(path)) return load_pdvm(path);
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (fs::exists(fs::path(path) / "config.json", ec)) return load_hf_directory(path);
    // A directory holding one GGUF file (and no config.json) means that file.
    std::vector<fs::path> ggufs;
    for (const auto& e : fs::directory_iterator(path, ec))
      if (e.path().extension() == ".gguf") ggufs.push_back(e.path());
    if (ggufs.size() == 1) return load_gguf(ggufs[0].string());
    return not_found(path + ": no config.json (a Hugging Face model directory)" +
                     (ggufs.empty() ? std::string(" and no .gguf file")
                                    : " and " + std::to_string(ggufs.size()) + " .gguf files: name one"));
  }
  if (!fs::exists(path, ec)) return not_found(path + ": no such file or directory");
  return load_gguf(path);
}

}  // namespace pdvm::model
