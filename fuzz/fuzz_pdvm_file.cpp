// libFuzzer target for the native pdvm file reader (formats/pdvm_file.h) and the MdCSR / bitmap /
// int8-row validators behind it: any input must give a Status or a file whose every matrix
// decodes in bounds (each row of each matrix is decoded here, under ASan/UBSan).
//   cmake --build build-fuzz --target fuzz_pdvm_file
//   build-fuzz/fuzz/fuzz_pdvm_file -max_len=262144 -max_total_time=60 build-fuzz/corpus-pdvm tests/data/pdvm
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "formats/bitmap_i8.h"
#include "formats/mdcsr.h"
#include "formats/pdvm_file.h"
#include "formats/quant_blocks.h"
#include "formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pdvm;
  auto file = formats::SafetensorsFile::open_memory(std::span<const uint8_t>(data, size), "fuzz.pdvm");
  if (!file.is_ok()) return 0;
  auto pdvm_file = formats::read_pdvm_file(*file);
  if (!pdvm_file.is_ok()) return 0;
  for (const auto& [name, m] : pdvm_file->matrices) {
    if (m.rows * m.cols > (int64_t(1) << 24)) continue;  // keep each input fast
    std::vector<int8_t> q(static_cast<size_t>(m.cols));
    std::vector<float> f(static_cast<size_t>(m.cols));
    for (int64_t r = 0; r < m.rows; ++r) {
      if (m.type == core::WeightType::kMdCsr) formats::mdcsr_decode_row(m, r, q.data());
      else if (m.type == core::WeightType::kBitmapI8) formats::bitmap_i8_decode_row(m, r, q.data());
      else formats::dequantize_row(m.type, m.row(r), m.cols, f.data());
    }
  }
  return 0;
}
