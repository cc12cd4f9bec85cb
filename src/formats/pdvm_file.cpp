// Native pdvm file: writer and validating reader (see pdvm_file.h and docs/FORMAT.md).
#include "formats/pdvm_file.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <nlohmann/json.hpp>

#include "formats/bitmap_i8.h"
#include "formats/int8_rows.h"
#include "formats/mdcsr.h"

namespace pdvm::formats {
using core::Matrix;
using core::WeightType;
using nlohmann::json;

// ---- config ------------------------------------------------------------------------------------

std::string config_to_json(const core::ModelConfig& c) {
  json j;
  j["arch"] = core::arch_name(c.arch);
  j["d_model"] = c.d_model;
  j["d_ff"] = c.d_ff;
  j["n_layers"] = c.n_layers;
  j["n_heads"] = c.n_heads;
  j["n_kv_heads"] = c.n_kv_heads;
  j["head_dim"] = c.head_dim;
  j["vocab_size"] = c.vocab_size;
  j["max_seq"] = c.max_seq;
  j["rms_eps"] = c.rms_eps;
  j["rope_theta"] = c.rope_theta;
  j["rope_dim"] = c.rope_dim;
  j["rope_style"] = c.rope_style == core::RopeStyle::kNeox ? "neox" : "interleaved";
  const char* st = c.rope_scaling.type == core::RopeScalingType::kNone     ? "none"
                   : c.rope_scaling.type == core::RopeScalingType::kLinear ? "linear"
                                                                           : "llama3";
  j["rope_scaling"] = {{"type", st},
                       {"factor", c.rope_scaling.factor},
                       {"low_freq_factor", c.rope_scaling.low_freq_factor},
                       {"high_freq_factor", c.rope_scaling.high_freq_factor},
                       {"original_max_position", c.rope_scaling.original_max_position}};
  j["rope_freq_factors"] = c.rope_freq_factors;
  j["qkv_bias"] = c.qkv_bias;
  j["tie_embeddings"] = c.tie_embeddings;
  j["sliding_window"] = c.sliding_window;
  j["bos_id"] = c.bos_id;
  j["eos_ids"] = c.eos_ids;
  return j.dump();
}

Result<core::ModelConfig> config_from_json(const std::string& text, const std::string& where) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return corrupt(where + ": metadata '" + kPdvmKeyConfig + "' is not a JSON object");
  core::ModelConfig c;
  try {
    const std::string arch = j.at("arch").get<std::string>();
    bool found = false;
    for (auto a : {core::Arch::kLlama, core::Arch::kMistral, core::Arch::kQwen2, core::Arch::kPhi3})
      if (arch == core::arch_name(a)) { c.arch = a; found = true; }
    if (!found) return corrupt(where + ": config arch '" + arch + "' is not known");
    c.d_model = j.at("d_model").get<int>();
    c.d_ff = j.at("d_ff").get<int>();
    c.n_layers = j.at("n_layers").get<int>();
    c.n_heads = j.at("n_heads").get<int>();
    c.n_kv_heads = j.at("n_kv_heads").get<int>();
    c.head_dim = j.at("head_dim").get<int>();
    c.vocab_size = j.at("vocab_size").get<int>();
    c.max_seq = j.at("max_seq").get<int>();
    c.rms_eps = j.at("rms_eps").get<float>();
    c.rope_theta = j.at("rope_theta").get<float>();
    c.rope_dim = j.at("rope_dim").get<int>();
    const std::string style = j.at("rope_style").get<std::string>();
    if (style != "neox" && style != "interleaved") return corrupt(where + ": config rope_style '" + style + "' is not known");
    c.rope_style = style == "neox" ? core::RopeStyle::kNeox : core::RopeStyle::kInterleaved;
    const json& rs = j.at("rope_scaling");
    const std::string st = rs.at("type").get<std::string>();
    if (st == "none") c.rope_scaling.type = core::RopeScalingType::kNone;
    else if (st == "linear") c.rope_scaling.type = core::RopeScalingType::kLinear;
    else if (st == "llama3") c.rope_scaling.type = core::RopeScalingType::kLlama3;
    else return corrupt(where + ": config rope_scaling type '" + st + "' is not known");
    c.rope_scaling.factor = rs.at("factor").get<float>();
    c.rope_scaling.low_freq_factor = rs.at("low_freq_factor").get<float>();
    c.rope_scaling.high_freq_factor = rs.at("high_freq_factor").get<float>();
    c.rope_scaling.original_max_position = rs.at("original_max_position").get<int>();
    c.rope_freq_factors = j.at("rope_freq_factors").get<std::vector<float>>();
    c.qkv_bias = j.at("qkv_bias").get<bool>();
    c.tie_embeddings = j.at("tie_embeddings").get<bool>();
    c.sliding_window = j.at("sliding_window").get<int>();
    c.bos_id = j.at("bos_id").get<int>();
    c.eos_ids = j.at("eos_ids").get<std::vector<int>>();
  } catch (const json::exception& e) {
    return corrupt(where + ": config: " + e.what());
  }
  if (!c.rope_freq_factors.empty() && int64_t(c.rope_freq_factors.size()) != c.rope_dim / 2)
    return corrupt(where + ": config rope_freq_factors has " + std::to_string(c.rope_freq_factors.size()) +
                   " entries, expected rope_dim / 2 = " + std::to_string(c.rope_dim / 2));
  if (Status s = c.validate(); !s.is_ok()) return s.with_context(where);
  return c;
}

// ---- writer ------------------------------------------------------------------------------------
namespace {

struct Pending {
  SafetensorsTensorToWrite t;
  int align;
};

std::string dense_dtype(WeightType type) {
  switch (type) {
    case WeightType::kF32: return "F32";
    case WeightType::kF16: return "F16";
    case WeightType::kBF16: return "BF16";
    default: return "U8";  // block types and i8_row: raw bytes [rows, row_bytes]
  }
}
// Element alignment a kernel needs: GGUF blocks hold f16 fields at even offsets.
int dense_align(WeightType type) {
  switch (type) {
    case WeightType::kF32: return 4;
    case WeightType::kI8Row: return 1;
    default: return 2;
  }
}

}  // namespace

std::vector<std::pair<std::string, size_t>> sparse_array_sizes(const Matrix& m) {
  PDVM_ASSERT(m.sparse != nullptr);
  const core::SparseLayout& s = *m.sparse;
  std::vector<std::pair<std::string, size_t>> out = {
      {"row_ptr", size_t(m.rows + 1) * 4}, {"row_scale", size_t(m.rows) * 4}, {"values", size_t(s.n_values)}};
  if (m.type == WeightType::kMdCsr) {
    out.emplace_back("deltas", size_t(s.n_values));
    out.emplace_back("chunk_base", size_t(s.n_values / kMdCsrChunk) * 2);
  } else {
    out.emplace_back("masks", size_t(m.rows * bitmap_groups(m.cols)) * 8);
  }
  return out;
}

Status write_pdvm_file(const std::string& path, const PdvmContents& contents) {
  std::vector<Pending> pending;
  json table = json::object();
  for (const auto& entry : contents.matrices) {
    const std::string& name = entry.first;  // (a structured binding cannot be captured before C++20's P1091 in clang)
    const Matrix& m = entry.second;
    table[name] = {{"type", core::weight_type_name(m.type)}, {"rows", m.rows}, {"cols", m.cols}};
    if (m.sparse == nullptr) {
      std::vector<int64_t> shape = {m.rows, m.cols};
      if (dense_dtype(m.type) == "U8") shape = {m.rows, int64_t(m.row_stride())};
      pending.push_back({{name, dense_dtype(m.type), shape, m.data, m.n_bytes()}, dense_align(m.type)});
      continue;
    }
    const core::SparseLayout& s = *m.sparse;
    auto add = [&](const char* suffix, const char* dtype, int64_t n, const void* p, int elem) {
      pending.push_back({{name + "." + suffix, dtype, {n}, p, size_t(n) * size_t(elem)}, elem});
    };
    add("row_ptr", "U32", m.rows + 1, s.row_ptr, 4);
    add("row_scale", "F32", m.rows, s.row_scale, 4);
    add("values", "I8", s.n_values, s.values, 1);
    if (m.type == WeightType::kMdCsr) {
      add("deltas", "U8", s.n_values, s.deltas, 1);
      add("chunk_base", "U16", s.n_values / kMdCsrChunk, s.chunk_base, 2);
    } else {
      add("masks", "U64", m.rows * bitmap_groups(m.cols), s.masks, 8);
    }
  }
  for (const auto& [name, v] : contents.vectors)
    pending.push_back({{name, "F32", {int64_t(v.size())}, v.data(), v.size() * 4}, 4});
  std::stable_sort(pending.begin(), pending.end(), [](const Pending& a, const Pending& b) { return a.align > b.align; });
  std::vector<SafetensorsTensorToWrite> tensors;
  for (auto& p : pending) tensors.push_back(p.t);
  std::map<std::string, std::string> meta = contents.metadata;
  meta[kPdvmKeyVersion] = std::to_string(kPdvmFormatVersion);
  meta[kPdvmKeyConfig] = config_to_json(contents.config);
  meta[kPdvmKeyMatrices] = table.dump();
  return write_safetensors(path, tensors, meta);
}

// ---- reader ------------------------------------------------------------------------------------
namespace {

template <typename T>
Result<const T*> typed(const SafetensorsTensor& t, const char* dtype, const std::string& where) {
  if (t.dtype != dtype)
    return corrupt(where + ": tensor '" + t.name + "' has dtype " + t.dtype + ", expected " + dtype);
  if (t.shape.size() != 1)
    return corrupt(where + ": tensor '" + t.name + "' must be 1-D");
  if (t.n_bytes % sizeof(T) != 0 || reinterpret_cast<uintptr_t>(t.data) % alignof(T) != 0)
    return corrupt(where + ": tensor '" + t.name + "' is not aligned to " + std::to_string(alignof(T)) +
                   " bytes in the file");
  return reinterpret_cast<const T*>(t.data);
}

}  // namespace

Result<PdvmFile> read_pdvm_file(const SafetensorsFile& file, const PdvmReadOptions& options) {
  const std::string& where = file.path();
  PdvmFile out;
  out.metadata = file.metadata();
  auto meta = [&](const char* key) -> Result<std::string> {
    auto it = out.metadata.find(key);
    if (it == out.metadata.end()) return corrupt(where + ": metadata key '" + key + "' is missing (not a pdvm file?)");
    return it->second;
  };
  PDVM_ASSIGN_OR_RETURN(std::string version, meta(kPdvmKeyVersion));
  if (version != std::to_string(kPdvmFormatVersion))
    return unsupported(where + ": pdvm format version '" + version + "', this build reads version " +
                       std::to_string(kPdvmFormatVersion));
  PDVM_ASSIGN_OR_RETURN(std::string config_text, meta(kPdvmKeyConfig));
  PDVM_ASSIGN_OR_RETURN(out.config, config_from_json(config_text, where));
  PDVM_ASSIGN_OR_RETURN(std::string table_text, meta(kPdvmKeyMatrices));
  json table = json::parse(table_text, nullptr, false);
  if (table.is_discarded() || !table.is_object())
    return corrupt(where + ": metadata '" + kPdvmKeyMatrices + "' is not a JSON object");
  if (file.mapping()) out.storage.push_back(file.mapping());
  auto layouts = std::make_shared<std::deque<core::SparseLayout>>();
  out.storage.push_back(layouts);
  // An in-memory file (fuzzer) keeps its bytes alive through a copy of the SafetensorsFile.
  out.storage.push_back(std::make_shared<SafetensorsFile>(file));

  std::map<std::string, const SafetensorsTensor*> used;
  auto need = [&](const std::string& name) -> Result<const SafetensorsTensor*> {
    const SafetensorsTensor* t = file.find(name);
    if (t == nullptr) return corrupt(where + ": tensor '" + name + "' is missing");
    used[name] = t;
    return t;
  };
  for (auto it = table.begin(); it != table.end(); ++it) {
    const std::string& name = it.key();
    const json& e = it.value();
    if (!e.is_object() || !e.contains("type") || !e["type"].is_string() || !e.contains("rows") ||
        !e["rows"].is_number_integer() || !e.contains("cols") || !e["cols"].is_number_integer())
      return corrupt(where + ": matrix table entry '" + name + "' needs type (string), rows and cols (integers)");
    auto type_r = core::parse_weight_type(e["type"].get<std::string>());
    if (!type_r.is_ok()) return type_r.status().with_context(where + ": matrix '" + name + "'");
    Matrix m;
    m.type = *type_r;
    m.rows = e["rows"].get<int64_t>();
    m.cols = e["cols"].get<int64_t>();
    const std::string at = where + ": matrix '" + name + "'";
    if (m.rows <= 0 || m.cols <= 0 || m.rows > (int64_t(1) << 31) || m.cols > (int64_t(1) << 31))
      return corrupt(at + ": shape [" + std::to_string(m.rows) + ", " + std::to_string(m.cols) + "] is not valid");
    if (!core::is_sparse(m.type)) {
      const auto& info = core::weight_type_info(m.type);
      if (m.type != WeightType::kI8Row && m.cols % info.block_size != 0)
        return corrupt(at + ": cols " + std::to_string(m.cols) + " is not a multiple of the " +
                       std::string(info.name) + " block size " + std::to_string(info.block_size));
      PDVM_ASSIGN_OR_RETURN(const SafetensorsTensor* t, need(name));
      if (t->dtype != dense_dtype(m.type))
        return corrupt(at + ": dtype " + t->dtype + ", expected " + dense_dtype(m.type) + " for " + std::string(info.name));
      if (t->n_bytes != m.n_bytes())
        return corrupt(at + ": " + std::to_string(t->n_bytes) + " bytes, expected " + std::to_string(m.n_bytes()) +
                       " for " + std::string(info.name) + " [" + std::to_string(m.rows) + ", " + std::to_string(m.cols) + "]");
      if (reinterpret_cast<uintptr_t>(t->data) % size_t(dense_align(m.type)) != 0)
        return corrupt(at + ": data is not aligned to " + std::to_string(dense_align(m.type)) + " bytes");
      m.data = t->data;
      if (m.type == WeightType::kI8Row && options.validate)
        PDVM_TRY(validate_i8_rows(m.data, t->n_bytes, m.rows, m.cols, at));
      out.matrices[name] = m;
      continue;
    }
    core::SparseLayout s;
    SparseLengths len;
    PDVM_ASSIGN_OR_RETURN(const SafetensorsTensor* t_ptr, need(name + ".row_ptr"));
    PDVM_ASSIGN_OR_RETURN(s.row_ptr, typed<uint32_t>(*t_ptr, "U32", at));
    len.row_ptr = t_ptr->n_bytes / 4;
    PDVM_ASSIGN_OR_RETURN(const SafetensorsTensor* t_sc, need(name + ".row_scale"));
    PDVM_ASSIGN_OR_RETURN(s.row_scale, typed<float>(*t_sc, "F32", at));
    len.row_scale = t_sc->n_bytes / 4;
    PDVM_ASSIGN_OR_RETURN(const SafetensorsTensor* t_val, need(name + ".values"));
    PDVM_ASSIGN_OR_RETURN(s.values, typed<int8_t>(*t_val, "I8", at));
    len.values = t_val->n_bytes;
    s.n_values = int64_t(len.values);
    // Structural lengths are checked even when full validation is off: kernels index by them.
    if (len.row_ptr != size_t(m.rows) + 1 || len.row_scale != size_t(m.rows))
      return corrupt(at + ": row_ptr has " + std::to_string(len.row_ptr) + " and row_scale " +
                     std::to_string(len.row_scale) + " entries, expected rows + 1 and rows (rows = " +
                     std::to_string(m.rows) + ")");
    if (m.type == WeightType::kMdCsr) {
      PDVM_ASSIGN_OR_RETURN(const SafetensorsTensor* t_d, need(name + ".deltas"));
      PDVM_ASSIGN_OR_RETURN(s.deltas, typed<uint8_t>(*t_d, "U8", at));
      len.deltas = t_d->n_bytes;
      PDVM_ASSIGN_OR_RETURN(const SafetensorsTensor* t_b, need(name + ".chunk_base"));
      PDVM_ASSIGN_OR_RETURN(s.chunk_base, typed<uint16_t>(*t_b, "U16", at));
      len.chunk_base = t_b->n_bytes / 2;
      if (len.values != len.chunk_base * kMdCsrChunk || len.deltas != len.values ||
          s.row_ptr[m.rows] != len.chunk_base)
        return corrupt(at + ": row_ptr ends at " + std::to_string(s.row_ptr[m.rows]) + " chunks, chunk_base has " +
                       std::to_string(len.chunk_base) + ", values " + std::to_string(len.values) + " and deltas " +
                       std::to_string(len.deltas) + " entries (expected 16 per chunk)");
      if (options.validate) PDVM_TRY(validate_mdcsr(s, len, m.rows, m.cols, at));
    } else {
      PDVM_ASSIGN_OR_RETURN(const SafetensorsTensor* t_m, need(name + ".masks"));
      PDVM_ASSIGN_OR_RETURN(s.masks, typed<uint64_t>(*t_m, "U64", at));
      len.masks = t_m->n_bytes / 8;
      if (len.masks != size_t(m.rows * bitmap_groups(m.cols)) || s.row_ptr[m.rows] != len.values)
        return corrupt(at + ": masks has " + std::to_string(len.masks) + " words (expected " +
                       std::to_string(m.rows * bitmap_groups(m.cols)) + ") and row_ptr ends at " +
                       std::to_string(s.row_ptr[m.rows]) + " with " + std::to_string(len.values) + " values");
      if (options.validate) PDVM_TRY(validate_bitmap_i8(s, len, m.rows, m.cols, at));
    }
    int64_t nz = 0;
    for (int64_t i = 0; i < s.n_values; ++i) nz += s.values[i] != 0;
    s.n_nonzero = nz;
    s.n_bytes = len.row_ptr * 4 + len.row_scale * 4 + len.values + len.deltas + len.chunk_base * 2 + len.masks * 8;
    layouts->push_back(s);
    m.sparse = &layouts->back();
    m.data = reinterpret_cast<const uint8_t*>(s.row_ptr);
    out.matrices[name] = m;
  }
  for (const auto& t : file.tensors()) {
    if (used.count(t.name)) continue;
    if (t.dtype != "F32" || t.shape.size() != 1)
      return corrupt(where + ": tensor '" + t.name + "' is neither in the matrix table nor a 1-D F32 vector");
    std::vector<float> v(t.n_bytes / 4);
    if (!v.empty()) std::memcpy(v.data(), t.data, t.n_bytes);
    out.vectors[t.name] = std::move(v);
  }
  return out;
}

Result<PdvmFile> open_pdvm_file(const std::string& path, const PdvmReadOptions& options) {
  PDVM_ASSIGN_OR_RETURN(auto file, SafetensorsFile::open(path));
  return read_pdvm_file(file, options);
}

}  // namespace pdvm::formats
