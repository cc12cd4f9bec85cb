// Hugging Face config.json -> core::ModelConfig, for the architectures pdvm runs. Reads both
// layouts found in the wild: transformers 4.x (`rope_theta`, `rope_scaling`) and transformers 5
// (`rope_parameters`). Anything else is rejected with the field that is not supported.
#pragma once

#include <string>

#include "core/config.h"

namespace pdvm::model {

Result<core::ModelConfig> parse_hf_config(const std::string& json_text, const std::string& where);
Result<core::ModelConfig> load_hf_config(const std::string& path);

}  // namespace pdvm::model
