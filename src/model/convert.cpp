// Converter: pruning, quantization, format encoding and the pdvm file (see convert.h).
#include "model/convert.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/half.h"
#include "core/thread_pool.h"
#include "cpu/matvec.h"
#include "cpu/reference_kernels.h"
#include "formats/bitmap_i8.h"
#include "formats/gguf.h"
#include "formats/int8_rows.h"
#include "formats/mdcsr.h"
#include "formats/pdvm_file.h"
#include "formats/quant_blocks.h"
#include "model/load_pdvm.h"

namespace pdvm::model {
namespace fs = std::filesystem;
using core::Matrix;
using core::WeightType;
using nlohmann::json;

Result<CompressFormat> parse_compress_format(const std::string& name) {
  if (name == "int8" || name == "i8_row") return CompressFormat::kI8Row;
  if (name == "q8_0") return CompressFormat::kQ8_0;
  if (name == "mdcsr") return CompressFormat::kMdCsr;
  if (name == "bitmap" || name == "bitmap_i8") return CompressFormat::kBitmapI8;
  return invalid_argument("unknown format '" + name + "' (known: int8, q8_0, mdcsr, bitmap)");
}

const char* compress_format_name(CompressFormat f) {
  switch (f) {
    case CompressFormat::kI8Row: return "int8";
    case CompressFormat::kQ8_0: return "q8_0";
    case CompressFormat::kMdCsr: return "mdcsr";
    case CompressFormat::kBitmapI8: return "bitmap";
  }
  return "?";
}

void dequantize_matrix_row(const Matrix& m, int64_t r, float* out) {
  if (!core::is_sparse(m.type)) {
    formats::dequantize_row(m.type, m.row(r), m.cols, out);
    return;
  }
  std::vector<int8_t> q(static_cast<size_t>(m.cols));
  const float scale = m.type == WeightType::kMdCsr ? formats::mdcsr_decode_row(m, r, q.data())
                                                   : formats::bitmap_i8_decode_row(m, r, q.data());
  for (int64_t c = 0; c < m.cols; ++c) out[c] = scale * float(q[size_t(c)]);
}

// ---- calibration -------------------------------------------------------------------------------

Result<ActivationNorms> gather_activation_norms(const core::Model& model, std::span<const int32_t> tokens,
                                                int threads) {
  const core::ModelConfig& c = model.config;
  PDVM_TRY(c.validate());
  const int T = int(tokens.size());
  const int d = c.d_model, hd = c.head_dim;
  const int q_dim = c.n_heads * hd, kv_dim = c.n_kv_heads * hd;
  const int group = c.n_heads / c.n_kv_heads;
  core::ThreadPool pool(threads);
  cpu::PreparedInput px(std::max({int64_t(d), int64_t(c.d_ff), int64_t(q_dim)}));
  const auto D = size_t(d), Q = size_t(q_dim), KV = size_t(kv_dim), F = size_t(c.d_ff);
  std::vector<float> x(D), xb(D), tmp(D), q(Q), k(KV), v(KV), att(Q), gate(F), up(F), hb(F);
  std::vector<float> scores(size_t(std::max(T, 1)));
  std::vector<float> kc(size_t(c.n_layers) * size_t(T) * size_t(kv_dim));
  std::vector<float> vc(kc.size());
  std::vector<std::vector<double>> s_attn_in(size_t(c.n_layers), std::vector<double>(size_t(d))),
      s_attn_out(size_t(c.n_layers), std::vector<double>(size_t(q_dim))),
      s_ffn_in(size_t(c.n_layers), std::vector<double>(size_t(d))),
      s_ffn_hidden(size_t(c.n_layers), std::vector<double>(size_t(c.d_ff)));
  auto mv = [&](const Matrix& w, const float* in, float* out) {
    px.prepare(in, w.cols);
    cpu::matvec(w, px, out, pool);
  };
  auto acc = [](std::vector<double>& s, const float* v) {
    for (size_t i = 0; i < s.size(); ++i) s[i] += double(v[i]) * double(v[i]);
  };
  auto add = [](std::vector<float>& a, const std::vector<float>& b) {
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) a[i] += b[i];
  };
  for (int pos = 0; pos < T; ++pos) {
    const int32_t tok = tokens[size_t(pos)];
    if (tok < 0 || tok >= c.vocab_size) return out_of_range("calibration token " + std::to_string(tok) + " is outside the vocabulary");
    dequantize_matrix_row(model.tok_embd, tok, x.data());
    for (int l = 0; l < c.n_layers; ++l) {
      const core::LayerWeights& w = model.layers[size_t(l)];
      cpu::ref::rmsnorm(x.data(), w.attn_norm.data(), d, c.rms_eps, xb.data());
      acc(s_attn_in[size_t(l)], xb.data());
      mv(w.wq, xb.data(), q.data());
      mv(w.wk, xb.data(), k.data());
      mv(w.wv, xb.data(), v.data());
      add(q, w.bq); add(k, w.bk); add(v, w.bv);
      cpu::ref::rope(q.data(), c.n_heads, c, pos);
      cpu::ref::rope(k.data(), c.n_kv_heads, c, pos);
      float* kl = kc.data() + size_t(l) * size_t(T) * size_t(kv_dim);
      float* vl = vc.data() + size_t(l) * size_t(T) * size_t(kv_dim);
      std::copy(k.begin(), k.end(), kl + size_t(pos) * size_t(kv_dim));
      std::copy(v.begin(), v.end(), vl + size_t(pos) * size_t(kv_dim));
      const int first = c.sliding_window > 0 ? std::max(0, pos - c.sliding_window + 1) : 0;
      for (int h = 0; h < c.n_heads; ++h)
        cpu::ref::attend_head(q.data() + size_t(h) * hd, kl + size_t(h / group) * hd, vl + size_t(h / group) * hd,
                              kv_dim, hd, first, pos, scores.data(), att.data() + size_t(h) * hd);
      acc(s_attn_out[size_t(l)], att.data());
      mv(w.wo, att.data(), tmp.data());
      add(x, tmp);
      cpu::ref::rmsnorm(x.data(), w.ffn_norm.data(), d, c.rms_eps, xb.data());
      acc(s_ffn_in[size_t(l)], xb.data());
      mv(w.w_gate, xb.data(), gate.data());
      mv(w.w_up, xb.data(), up.data());
      cpu::ref::swiglu(gate.data(), up.data(), c.d_ff, hb.data());
      acc(s_ffn_hidden[size_t(l)], hb.data());
      mv(w.w_down, hb.data(), tmp.data());
      add(x, tmp);
    }
  }
  auto finish = [](const std::vector<std::vector<double>>& s) {
    std::vector<std::vector<float>> out;
    for (const auto& v : s) {
      std::vector<float> n(v.size());
      for (size_t i = 0; i < v.size(); ++i) n[i] = float(std::sqrt(v[i]));
      out.push_back(std::move(n));
    }
    return out;
  };
  ActivationNorms norms;
  norms.attn_in = finish(s_attn_in);
  norms.attn_out = finish(s_attn_out);
  norms.ffn_in = finish(s_ffn_in);
  norms.ffn_hidden = finish(s_ffn_hidden);
  return norms;
}

// ---- compression -------------------------------------------------------------------------------
namespace {

// Zeroes the floor(sparsity * cols) lowest-scoring weights of each row (score |w| * norm[c],
// norm == nullptr for plain magnitude). Ties go to the lower column index being kept.
void prune_rows(std::vector<float>& w, int64_t rows, int64_t cols, double sparsity, const float* norm) {
  const auto n_prune = int64_t(std::floor(sparsity * double(cols) + 1e-9));
  if (n_prune <= 0) return;
  std::vector<int32_t> idx(static_cast<size_t>(cols));
  std::vector<float> score(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    float* row = w.data() + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      score[size_t(c)] = std::fabs(row[c]) * (norm ? norm[c] : 1.0f);
      idx[size_t(c)] = int32_t(c);
    }
    auto less = [&](int32_t a, int32_t b) { return score[size_t(a)] < score[size_t(b)] || (score[size_t(a)] == score[size_t(b)] && a > b); };
    std::nth_element(idx.begin(), idx.begin() + (n_prune - 1), idx.end(), less);
    for (int64_t i = 0; i < n_prune; ++i) row[idx[size_t(i)]] = 0.0f;
  }
}

struct Owned {
  std::vector<std::shared_ptr<const void>> storage;
  std::shared_ptr<std::deque<core::SparseLayout>> layouts = std::make_shared<std::deque<core::SparseLayout>>();
};

Result<Matrix> compress_matrix(const Matrix& src, const ConvertOptions& o, const float* norm, Owned& owned,
                               const std::string& name) {
  std::vector<float> w(size_t(src.rows * src.cols));
  for (int64_t r = 0; r < src.rows; ++r) dequantize_matrix_row(src, r, w.data() + r * src.cols);
  for (float v : w)
    if (!std::isfinite(v)) return invalid_argument(name + ": weight is not finite");
  prune_rows(w, src.rows, src.cols, o.sparsity, norm);
  Matrix m;
  m.rows = src.rows;
  m.cols = src.cols;
  if (o.format == CompressFormat::kQ8_0) {
    if (src.cols % formats::kQK != 0) return invalid_argument(name + ": q8_0 needs cols % 32 == 0");
    auto buf = std::make_shared<std::vector<uint8_t>>(size_t(src.rows * src.cols / formats::kQK) * sizeof(formats::BlockQ8_0));
    auto* b = reinterpret_cast<formats::BlockQ8_0*>(buf->data());
    for (int64_t i = 0; i < src.rows * src.cols / formats::kQK; ++i) {
      const float* v = w.data() + i * formats::kQK;
      float amax = 0;
      for (int j = 0; j < formats::kQK; ++j) amax = std::max(amax, std::fabs(v[j]));
      const float dq = amax / 127.0f;
      b[i].d = core::f32_to_f16(dq);
      const float inv = dq == 0 ? 0.0f : 1.0f / dq;
      for (int j = 0; j < formats::kQK; ++j) b[i].qs[j] = int8_t(std::clamp(std::nearbyint(v[j] * inv), -127.0f, 127.0f));
    }
    m.type = WeightType::kQ8_0;
    m.data = buf->data();
    owned.storage.push_back(buf);
    return m;
  }
  const formats::QuantizedMatrix qm = formats::quantize_matrix_i8(w.data(), src.rows, src.cols);
  if (o.format == CompressFormat::kI8Row) {
    auto buf = std::make_shared<std::vector<uint8_t>>(formats::encode_i8_rows(qm));
    m.type = WeightType::kI8Row;
    m.data = buf->data();
    owned.storage.push_back(buf);
    return m;
  }
  Result<formats::SparseArrays> enc = o.format == CompressFormat::kMdCsr ? formats::encode_mdcsr(qm)
                                                                         : formats::encode_bitmap_i8(qm);
  if (!enc.is_ok()) return enc.status().with_context(name);
  auto arrays = std::make_shared<formats::SparseArrays>(std::move(*enc));
  owned.layouts->push_back(arrays->layout());
  owned.storage.push_back(arrays);
  return arrays->matrix(&owned.layouts->back());
}

}  // namespace

Result<core::Model> compress_model(const core::Model& src, const ConvertOptions& o, const ActivationNorms* norms,
                                   ConvertReport* report) {
  if (!(o.sparsity >= 0.0 && o.sparsity < 1.0)) return invalid_argument("sparsity must be in [0, 1)");
  if (o.prune == PruneMethod::kWanda && o.sparsity > 0 && norms == nullptr)
    return invalid_argument("activation-aware pruning needs activation norms (a calibration text)");
  for (const auto& n : o.matrices)
    if (std::find(std::begin(kPdvmLayerMatrices), std::end(kPdvmLayerMatrices), n) == std::end(kPdvmLayerMatrices))
      return invalid_argument("unknown matrix '" + n + "' (known: wq wk wv wo w_gate w_up w_down)");
  core::Model m = src;  // shares src's storage; matrices are replaced below
  Owned owned;
  const int total = src.config.n_layers * int(o.matrices.size()) + (o.compress_output ? 1 : 0);
  int done = 0;
  const bool wanda = o.prune == PruneMethod::kWanda && o.sparsity > 0;
  for (int l = 0; l < src.config.n_layers; ++l) {
    core::LayerWeights& lw = m.layers[size_t(l)];
    struct Slot { const char* name; Matrix* m; const std::vector<std::vector<float>>* norms; };
    const Slot slots[] = {{"wq", &lw.wq, wanda ? &norms->attn_in : nullptr},
                          {"wk", &lw.wk, wanda ? &norms->attn_in : nullptr},
                          {"wv", &lw.wv, wanda ? &norms->attn_in : nullptr},
                          {"wo", &lw.wo, wanda ? &norms->attn_out : nullptr},
                          {"w_gate", &lw.w_gate, wanda ? &norms->ffn_in : nullptr},
                          {"w_up", &lw.w_up, wanda ? &norms->ffn_in : nullptr},
                          {"w_down", &lw.w_down, wanda ? &norms->ffn_hidden : nullptr}};
    for (const Slot& s : slots) {
      if (std::find(o.matrices.begin(), o.matrices.end(), s.name) == o.matrices.end()) continue;
      const std::string name = pdvm_layer_name(l, s.name);
      const float* norm = nullptr;
      if (s.norms) {
        const auto& n = (*s.norms)[size_t(l)];
        if (int64_t(n.size()) != s.m->cols) return invalid_argument(name + ": activation norms have the wrong size");
        norm = n.data();
      }
      PDVM_ASSIGN_OR_RETURN(*s.m, compress_matrix(*s.m, o, norm, owned, name));
      if (o.progress) o.progress(++done, total, name);
    }
  }
  if (o.compress_output && !src.config.tie_embeddings) {
    ConvertOptions oo = o;
    oo.sparsity = 0;
    PDVM_ASSIGN_OR_RETURN(m.output, compress_matrix(src.output, oo, nullptr, owned, "output"));
    if (o.progress) o.progress(++done, total, "output");
  }
  m.storage.push_back(owned.layouts);
  for (auto& s : owned.storage) m.storage.push_back(std::move(s));
  if (report) {
    report->matrices.clear();
    report->layer_weight_bytes = 0;
    report->layer_weights = 0;
    auto rep = [&](const std::string& name, const Matrix& w, bool layer) {
      MatrixReport r;
      r.name = name;
      r.type = std::string(core::weight_type_name(w.type));
      r.rows = w.rows;
      r.cols = w.cols;
      r.n_nonzero = w.sparse ? w.sparse->n_nonzero : w.rows * w.cols;
      r.n_bytes = w.n_bytes();
      report->matrices.push_back(r);
      if (layer) {
        report->layer_weight_bytes += r.n_bytes;
        report->layer_weights += w.rows * w.cols;
      }
    };
    rep("tok_embd", m.tok_embd, false);
    for (int l = 0; l < m.config.n_layers; ++l) {
      const auto& lw = m.layers[size_t(l)];
      const Matrix* ms[] = {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.w_gate, &lw.w_up, &lw.w_down};
      for (int i = 0; i < 7; ++i) rep(pdvm_layer_name(l, kPdvmLayerMatrices[i]), *ms[i], true);
    }
    if (!m.config.tie_embeddings) rep("output", m.output, false);
  }
  return m;
}

// ---- file-level conversion --------------------------------------------------------------------
namespace {

Result<std::string> read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return io_error(path + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The source's tokenizer as pdvm metadata: tokenizer.json text, or GGUF fields as JSON.
Result<std::map<std::string, std::string>> tokenizer_metadata(const std::string& src) {
  std::map<std::string, std::string> meta;
  std::error_code ec;
  if (is_pdvm_path(src)) {
    PDVM_ASSIGN_OR_RETURN(auto f, formats::SafetensorsFile::open(src));
    for (const char* k : {formats::kPdvmKeyTokenizerJson, formats::kPdvmKeyTokenizerConfig, formats::kPdvmKeyTokenizerGguf}) {
      auto it = f.metadata().find(k);
      if (it != f.metadata().end()) meta[k] = it->second;
    }
    return meta;
  }
  std::string gguf = src;
  if (fs::is_directory(src, ec)) {
    if (fs::exists(fs::path(src) / "config.json", ec)) {
      if (fs::exists(fs::path(src) / "tokenizer.json", ec)) {
        PDVM_ASSIGN_OR_RETURN(meta[formats::kPdvmKeyTokenizerJson], read_text((fs::path(src) / "tokenizer.json").string()));
        if (fs::exists(fs::path(src) / "tokenizer_config.json", ec)) {
          PDVM_ASSIGN_OR_RETURN(meta[formats::kPdvmKeyTokenizerConfig],
                                read_text((fs::path(src) / "tokenizer_config.json").string()));
        }
      }
      return meta;
    }
    for (const auto& e : fs::directory_iterator(src, ec))
      if (e.path().extension() == ".gguf") gguf = e.path().string();
  }
  PDVM_ASSIGN_OR_RETURN(auto f, formats::GgufFile::open(gguf));
  if (!f.has("tokenizer.ggml.model")) return meta;
  json j;
  PDVM_ASSIGN_OR_RETURN(std::string model, f.get_string("tokenizer.ggml.model"));
  j["model"] = model;
  if (f.has("tokenizer.ggml.pre")) { PDVM_ASSIGN_OR_RETURN(std::string pre, f.get_string("tokenizer.ggml.pre")); j["pre"] = pre; }
  PDVM_ASSIGN_OR_RETURN(auto tokens, f.get_string_array("tokenizer.ggml.tokens"));
  j["tokens"] = tokens;
  if (f.has("tokenizer.ggml.token_type")) { PDVM_ASSIGN_OR_RETURN(auto t, f.get_int_array("tokenizer.ggml.token_type")); j["token_types"] = t; }
  if (f.has("tokenizer.ggml.merges")) { PDVM_ASSIGN_OR_RETURN(auto t, f.get_string_array("tokenizer.ggml.merges")); j["merges"] = t; }
  if (f.has("tokenizer.ggml.scores")) { PDVM_ASSIGN_OR_RETURN(auto t, f.get_float_array("tokenizer.ggml.scores")); j["scores"] = t; }
  const std::pair<const char*, const char*> ids[] = {{"tokenizer.ggml.bos_token_id", "bos_id"},
                                                     {"tokenizer.ggml.eos_token_id", "eos_id"},
                                                     {"tokenizer.ggml.unknown_token_id", "unk_id"},
                                                     {"tokenizer.ggml.padding_token_id", "pad_id"}};
  for (const auto& [k, name] : ids)
    if (f.has(k)) { PDVM_ASSIGN_OR_RETURN(int64_t v, f.get_int(k)); j[name] = v; }
  const std::pair<const char*, const char*> flags[] = {{"tokenizer.ggml.add_bos_token", "add_bos"},
                                                       {"tokenizer.ggml.add_eos_token", "add_eos"},
                                                       {"tokenizer.ggml.add_space_prefix", "add_space_prefix"}};
  for (const auto& [k, name] : flags)
    if (f.has(k)) { PDVM_ASSIGN_OR_RETURN(bool v, f.get_bool(k)); j[name] = v; }
  if (f.has("tokenizer.chat_template")) { PDVM_ASSIGN_OR_RETURN(std::string t, f.get_string("tokenizer.chat_template")); j["chat_template"] = t; }
  meta[formats::kPdvmKeyTokenizerGguf] = j.dump();
  return meta;
}

}  // namespace

Status convert_model_file(const std::string& src_path, const std::string& out_path, const ConvertOptions& o,
                          ConvertReport* report) {
  PDVM_ASSIGN_OR_RETURN(LoadedModel src, load_model(src_path));
  ActivationNorms norms;
  const bool wanda = o.prune == PruneMethod::kWanda && o.sparsity > 0;
  if (wanda) {
    if (o.calibration_file.empty()) return invalid_argument("activation-aware pruning needs --calibration FILE.txt");
    if (!src.tokenizer) return invalid_argument(src_path + ": has no tokenizer to encode the calibration text");
    PDVM_ASSIGN_OR_RETURN(std::string text, read_text(o.calibration_file));
    PDVM_ASSIGN_OR_RETURN(auto ids, src.tokenizer->encode(text));
    const size_t n = std::min({ids.size(), size_t(std::max(1, o.calibration_tokens)), size_t(src.model.config.max_seq)});
    ids.resize(n);
    PDVM_ASSIGN_OR_RETURN(norms, gather_activation_norms(src.model, ids, o.threads));
  }
  ConvertReport local;
  ConvertReport& rep = report ? *report : local;
  PDVM_ASSIGN_OR_RETURN(core::Model m, compress_model(src.model, o, wanda ? &norms : nullptr, &rep));

  formats::PdvmContents contents;
  contents.config = m.config;
  contents.matrices.emplace_back("tok_embd", m.tok_embd);
  for (int l = 0; l < m.config.n_layers; ++l) {
    const auto& lw = m.layers[size_t(l)];
    const Matrix* ms[] = {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.w_gate, &lw.w_up, &lw.w_down};
    for (int i = 0; i < 7; ++i) contents.matrices.emplace_back(pdvm_layer_name(l, kPdvmLayerMatrices[i]), *ms[i]);
    contents.vectors.emplace_back(pdvm_layer_name(l, "attn_norm"), lw.attn_norm);
    contents.vectors.emplace_back(pdvm_layer_name(l, "ffn_norm"), lw.ffn_norm);
    if (!lw.bq.empty()) contents.vectors.emplace_back(pdvm_layer_name(l, "bq"), lw.bq);
    if (!lw.bk.empty()) contents.vectors.emplace_back(pdvm_layer_name(l, "bk"), lw.bk);
    if (!lw.bv.empty()) contents.vectors.emplace_back(pdvm_layer_name(l, "bv"), lw.bv);
  }
  contents.vectors.emplace_back("output_norm", m.output_norm);
  if (!m.config.tie_embeddings) contents.matrices.emplace_back("output", m.output);
  PDVM_ASSIGN_OR_RETURN(contents.metadata, tokenizer_metadata(src_path));
  json conv;
  conv["source"] = fs::path(src_path).filename().string();
  conv["format"] = compress_format_name(o.format);
  conv["sparsity"] = o.sparsity;
  conv["prune"] = o.prune == PruneMethod::kWanda ? "activation-aware" : "magnitude";
  if (wanda) {
    conv["calibration_file"] = fs::path(o.calibration_file).filename().string();
    conv["calibration_tokens"] = o.calibration_tokens;
  }
  conv["matrices"] = o.matrices;
  conv["compress_output"] = o.compress_output;
  contents.metadata[formats::kPdvmKeyConversion] = conv.dump();
  PDVM_TRY(formats::write_pdvm_file(out_path, contents));
  std::error_code ec;
  rep.file_bytes = size_t(fs::file_size(out_path, ec));
  return Status::ok();
}

}  // namespace pdvm::model
