// The native pdvm file: a safetensors file whose metadata holds the format version, the model
// config (JSON), the tokenizer and a table of matrices with their weight types; weights in any
// mix of formats. A dense matrix is one tensor; a sparse one is several tensors under one name
// prefix (`<name>.row_ptr`, `.row_scale`, `.values`, and `.deltas` + `.chunk_base` for MdCSR or
// `.masks` for bitmap). docs/FORMAT.md is the specification. This file writes it and reads it
// back as validated views into the mapping (nothing copied but norms); model/load_pdvm.cpp turns
// that into a core::Model.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/weight.h"
#include "formats/safetensors.h"
#include "pdvm/status.h"

namespace pdvm::formats {

constexpr int kPdvmFormatVersion = 1;
// Metadata keys.
inline constexpr char kPdvmKeyVersion[] = "pdvm.format_version";    // "1"
inline constexpr char kPdvmKeyConfig[] = "pdvm.config";             // config_to_json()
inline constexpr char kPdvmKeyMatrices[] = "pdvm.matrices";         // {name: {type, rows, cols}}
inline constexpr char kPdvmKeyTokenizerJson[] = "pdvm.tokenizer.json";          // HF tokenizer.json text
inline constexpr char kPdvmKeyTokenizerConfig[] = "pdvm.tokenizer_config.json"; // HF tokenizer_config.json text
inline constexpr char kPdvmKeyTokenizerGguf[] = "pdvm.tokenizer.gguf";          // GGUF tokenizer fields as JSON
inline constexpr char kPdvmKeyConversion[] = "pdvm.conversion";     // how the converter made it (JSON)

std::string config_to_json(const core::ModelConfig& c);
Result<core::ModelConfig> config_from_json(const std::string& text, const std::string& where);

// What to write: matrices (dense or sparse views) and f32 vectors (norms, biases) by name.
struct PdvmContents {
  core::ModelConfig config;
  std::vector<std::pair<std::string, core::Matrix>> matrices;
  std::vector<std::pair<std::string, std::vector<float>>> vectors;
  std::map<std::string, std::string> metadata;  // tokenizer, conversion info (the writer adds version, config, matrices)
};
// Tensors are written in order of alignment (8-, 4-, 2-, then 1-byte elements), so every
// array is naturally aligned in the mapping.
Status write_pdvm_file(const std::string& path, const PdvmContents& contents);

// A read file: validated views into the mapping.
struct PdvmFile {
  core::ModelConfig config;
  std::map<std::string, core::Matrix> matrices;
  std::map<std::string, std::vector<float>> vectors;
  std::map<std::string, std::string> metadata;
  std::vector<std::shared_ptr<const void>> storage;  // the mapping and the sparse layouts
};

struct PdvmReadOptions {
  // Checks every sparse array (row pointers, chunk bases, deltas, columns, masks, scales); on
  // by default, O(bytes of the index arrays). Off only for trusted files (measured: README).
  bool validate = true;
};

Result<PdvmFile> read_pdvm_file(const SafetensorsFile& file, const PdvmReadOptions& options = {});
Result<PdvmFile> open_pdvm_file(const std::string& path, const PdvmReadOptions& options = {});

// Bytes of a sparse matrix's arrays by name suffix, as written (for inspect and tests).
std::vector<std::pair<std::string, size_t>> sparse_array_sizes(const core::Matrix& m);

}  // namespace pdvm::formats
