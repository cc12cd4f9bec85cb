// Loading a native pdvm file (formats/pdvm_file.h) into a core::Model + tokenizer: weights are
// views into the mapping (no copy; norms and biases become f32 vectors), every sparse array is
// validated first (on by default), and each matrix's shape is checked against the config.
#pragma once

#include <span>
#include <string>

#include "formats/pdvm_file.h"
#include "model/load.h"

namespace pdvm::model {

// Tensor names inside a pdvm file, shared with the converter.
std::string pdvm_layer_name(int layer, const char* what);  // "layers.<layer>.<what>"
inline constexpr const char* kPdvmLayerMatrices[] = {"wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down"};

// True when `path` names a pdvm file (its extension is .pdvm).
bool is_pdvm_path(const std::string& path);

Result<LoadedModel> load_pdvm(const std::string& path, const formats::PdvmReadOptions& options = {});
// The same from a parsed file (tests and the fuzzer build one in memory).
Result<LoadedModel> load_pdvm_file(formats::PdvmFile file, const std::string& where);


}  // namespace pdvm::model
