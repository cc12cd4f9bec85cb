// load_pdvm: native pdvm file -> core::Model + tokenizer (see load_pdvm.h).
#include "model/load_pdvm.h"

#include <filesystem>
#include <nlohmann/json.hpp>

namespace pdvm::model {
using core::Matrix;
using nlohmann::json;

std::string pdvm_layer_name(int layer, const char* what) {
  return "layers." + std::to_string(layer) + "." + what;
}

bool is_pdvm_path(const std::string& path) {
  return std::filesystem::path(path).extension() == ".pdvm";
}

namespace {

Result<tokenizer::TokenizerSpec> spec_from_json(const std::string& text, const std::string& where) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return corrupt(where + ": GGUF tokenizer metadata is not a JSON object");
  tokenizer::TokenizerSpec s;
  try {
    s.model = j.at("model").get<std::string>();
    s.pre = j.value("pre", std::string());
    s.tokens = j.at("tokens").get<std::vector<std::string>>();
    s.token_types = j.value("token_types", std::vector<int32_t>());
    s.merges = j.value("merges", std::vector<std::string>());
    s.scores = j.value("scores", std::vector<float>());
    s.bos_id = j.value("bos_id", -1);
    s.eos_id = j.value("eos_id", -1);
    s.unk_id = j.value("unk_id", -1);
    s.pad_id = j.value("pad_id", -1);
    s.add_bos = j.value("add_bos", false);
    s.add_eos = j.value("add_eos", false);
    s.add_space_prefix = j.value("add_space_prefix", false);
    s.chat_template = j.value("chat_template", std::string());
  } catch (const json::exception& e) {
    return corrupt(where + ": GGUF tokenizer metadata: " + e.what());
  }
  return s;
}

}  // namespace

Result<LoadedModel> load_pdvm_file(formats::PdvmFile f, const std::string& where) {
  LoadedModel out;
  core::Model& m = out.model;
  m.source = where;
  m.config = f.config;
  const core::ModelConfig& c = m.config;
  auto matrix = [&](const std::string& name, int64_t rows, int64_t cols) -> Result<Matrix> {
    auto it = f.matrices.find(name);
    if (it == f.matrices.end()) return corrupt(where + ": matrix '" + name + "' is missing");
    const Matrix& w = it->second;
    if (w.rows != rows || w.cols != cols)
      return corrupt(where + ": matrix '" + name + "' is [" + std::to_string(w.rows) + ", " + std::to_string(w.cols) +
                     "], the config expects [" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
    return w;
  };
  auto vec = [&](const std::string& name, int64_t n, bool optional = false) -> Result<std::vector<float>> {
    auto it = f.vectors.find(name);
    if (it == f.vectors.end()) {
      if (optional) return std::vector<float>();
      return corrupt(where + ": vector '" + name + "' is missing");
    }
    if (int64_t(it->second.size()) != n)
      return corrupt(where + ": vector '" + name + "' has " + std::to_string(it->second.size()) +
                     " entries, expected " + std::to_string(n));
    return std::move(it->second);
  };
  const int64_t q_dim = int64_t(c.n_heads) * c.head_dim, kv_dim = int64_t(c.n_kv_heads) * c.head_dim;
  PDVM_ASSIGN_OR_RETURN(m.tok_embd, matrix("tok_embd", c.vocab_size, c.d_model));
  if (core::is_sparse(m.tok_embd.type))
    return corrupt(where + ": tok_embd must be dense (one row is dequantized per token)");
  for (int l = 0; l < c.n_layers; ++l) {
    core::LayerWeights lw;
    auto n = [&](const char* what) { return pdvm_layer_name(l, what); };
    PDVM_ASSIGN_OR_RETURN(lw.attn_norm, vec(n("attn_norm"), c.d_model));
    PDVM_ASSIGN_OR_RETURN(lw.ffn_norm, vec(n("ffn_norm"), c.d_model));
    PDVM_ASSIGN_OR_RETURN(lw.wq, matrix(n("wq"), q_dim, c.d_model));
    PDVM_ASSIGN_OR_RETURN(lw.wk, matrix(n("wk"), kv_dim, c.d_model));
    PDVM_ASSIGN_OR_RETURN(lw.wv, matrix(n("wv"), kv_dim, c.d_model));
    PDVM_ASSIGN_OR_RETURN(lw.wo, matrix(n("wo"), c.d_model, q_dim));
    PDVM_ASSIGN_OR_RETURN(lw.w_gate, matrix(n("w_gate"), c.d_ff, c.d_model));
    PDVM_ASSIGN_OR_RETURN(lw.w_up, matrix(n("w_up"), c.d_ff, c.d_model));
    PDVM_ASSIGN_OR_RETURN(lw.w_down, matrix(n("w_down"), c.d_model, c.d_ff));
    PDVM_ASSIGN_OR_RETURN(lw.bq, vec(n("bq"), q_dim, !c.qkv_bias));
    PDVM_ASSIGN_OR_RETURN(lw.bk, vec(n("bk"), kv_dim, !c.qkv_bias));
    PDVM_ASSIGN_OR_RETURN(lw.bv, vec(n("bv"), kv_dim, !c.qkv_bias));
    m.layers.push_back(std::move(lw));
  }
  PDVM_ASSIGN_OR_RETURN(m.output_norm, vec("output_norm", c.d_model));
  if (c.tie_embeddings) {
    m.output = m.tok_embd;
  } else {
    PDVM_ASSIGN_OR_RETURN(m.output, matrix("output", c.vocab_size, c.d_model));
  }
  m.storage = std::move(f.storage);

  auto meta = [&](const char* k) -> const std::string* {
    auto it = f.metadata.find(k);
    return it == f.metadata.end() ? nullptr : &it->second;
  };
  if (const std::string* tj = meta(formats::kPdvmKeyTokenizerJson)) {
    const std::string* cfg = meta(formats::kPdvmKeyTokenizerConfig);
    auto tok = tokenizer::Tokenizer::from_json_string(*tj, cfg ? std::string_view(*cfg) : std::string_view());
    if (!tok.is_ok()) return tok.status().with_context(where + ": tokenizer");
    out.tokenizer = std::make_shared<tokenizer::Tokenizer>(std::move(*tok));
    out.chat_template = out.tokenizer->chat_template();
  } else if (const std::string* tg = meta(formats::kPdvmKeyTokenizerGguf)) {
    PDVM_ASSIGN_OR_RETURN(auto spec, spec_from_json(*tg, where));
    auto tok = tokenizer::Tokenizer::from_spec(spec);
    if (!tok.is_ok()) return tok.status().with_context(where + ": tokenizer");
    out.tokenizer = std::make_shared<tokenizer::Tokenizer>(std::move(*tok));
    out.chat_template = spec.chat_template;
  }
  return out;
}

Result<LoadedModel> load_pdvm(const std::string& path, const formats::PdvmReadOptions& options) {
  PDVM_ASSIGN_OR_RETURN(auto file, formats::open_pdvm_file(path, options));
  return load_pdvm_file(std::move(file), path);
}

}  // namespace pdvm::model
