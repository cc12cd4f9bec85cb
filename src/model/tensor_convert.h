// Small conversions shared by the loaders: a safetensors dtype name to a WeightType, and
// a 1-D tensor of any float dtype to an owned f32 vector (norm weights, biases).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/weight.h"

namespace pdvm::model {

std::optional<core::WeightType> weight_type_from_safetensors_dtype(std::string_view dtype);

// Converts n elements of a float-like weight type (f32, f16, bf16 or any GGUF block type) to f32.
std::vector<float> to_f32(core::WeightType type, const uint8_t* data, int64_t n);

}  // namespace pdvm::model
