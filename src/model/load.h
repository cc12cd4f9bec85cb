// Loading a model from disk: a Hugging Face directory (config.json + safetensors, single or
// sharded, + tokenizer files) or a GGUF file. Weights are viewed in place in the mapped files;
// only norms and biases are converted (to f32). Every tensor is checked for presence, dtype and
// shape against the config before anything runs.
#pragma once

#include <memory>
#include <string>

#include "core/model.h"
#include "tokenizer/tokenizer.h"

namespace pdvm::model {

struct LoadedModel {
  core::Model model;
  std::shared_ptr<const tokenizer::Tokenizer> tokenizer;  // null when the source has none
  std::string chat_template;                              // "" when the source has none
};

// `path` is a directory holding config.json, or a .gguf file.
Result<LoadedModel> load_model(const std::string& path);

Result<LoadedModel> load_hf_directory(const std::string& dir);
Result<LoadedModel> load_gguf(const std::string& path);

}  // namespace pdvm::model
