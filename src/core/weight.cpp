// Table of weight types: names and block geometry (GGUF's, for the quantized ones).
#include "core/weight.h"

#include <array>
#include <string>

namespace pdvm::core {
namespace {
constexpr std::array<WeightTypeInfo, 14> kInfos = {{
    {"f32", 1, 4},
    {"f16", 1, 2},
    {"bf16", 1, 2},
    {"q8_0", 32, 34},    // f16 d, int8 q[32]
    {"q4_0", 32, 18},    // f16 d, uint8 qs[16] (nibbles, offset 8)
    {"q4_1", 32, 20},    // f16 d, f16 m, uint8 qs[16]
    {"q4_K", 256, 144},  // f16 d, f16 dmin, uint8 scales[12], uint8 qs[128]
    {"q6_K", 256, 210},  // uint8 ql[128], uint8 qh[64], int8 scales[16], f16 d
    {"q5_0", 32, 22},    // f16 d, uint8 qh[4] (5th bits), uint8 qs[16] (nibbles, offset 16)
    {"q5_1", 32, 24},    // f16 d, f16 m, uint8 qh[4], uint8 qs[16]
    {"q5_K", 256, 176},  // f16 d, f16 dmin, uint8 scales[12], uint8 qh[32], uint8 qs[128]
    // pdvm's formats; their byte counts are not per block (see row_bytes / Matrix::n_bytes).
    {"i8_row", 1, 1},    // f32 scale then cols int8, per row
    {"mdcsr", 1, 0},     // sparse: formats/mdcsr.h
    {"bitmap_i8", 1, 0}, // sparse: formats/bitmap_i8.h
}};
}  // namespace

const WeightTypeInfo& weight_type_info(WeightType type) {
  const auto i = size_t(type);
  PDVM_ASSERT(i < kInfos.size());
  return kInfos[i];
}

Result<WeightType> parse_weight_type(std::string_view name) {
  std::string known;
  for (size_t i = 0; i < kInfos.size(); ++i) {
    if (kInfos[i].name == name) return WeightType(i);
    known += (i ? ", " : "") + std::string(kInfos[i].name);
  }
  return invalid_argument("unknown weight type '" + std::string(name) + "' (known: " + known + ")");
}

}  // namespace pdvm::core
