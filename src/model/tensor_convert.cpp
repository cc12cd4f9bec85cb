#include "model/tensor_convert.h"

#include "formats/quant_blocks.h"

namespace pdvm::model {

std::optional<core::WeightType> weight_type_from_safetensors_dtype(std::string_view dtype) {
  if (dtype == "F32") return core::WeightType::kF32;
  if (dtype == "F16") return core::WeightType::kF16;
  if (dtype == "BF16") return core::WeightType::kBF16;
  return std::nullopt;
}

std::vector<float> to_f32(core::WeightType type, const uint8_t* data, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  formats::dequantize_row(type, data, n, out.data());
  return out;
}

}  // namespace pdvm::model
