// libFuzzer target for the file loaders (the STYLE.md "fuzz-tensors" idea): feeds every input to
// GgufFile::open_memory and SafetensorsFile::open_memory. Whatever loads is then read the way a
// model loader would (every getter, every tensor byte, row 0 dequantized), so ASan/UBSan see any
// range the validator let through. Seed corpus: tests/data/broken/ plus tests/data/quant/.
//   cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DPDVM_FUZZ=ON
//   cmake --build build-fuzz --target fuzz_loaders
//   mkdir -p build-fuzz/corpus && build-fuzz/fuzz/fuzz_loaders -max_len=4096 build-fuzz/corpus tests/data/broken
// libFuzzer writes new inputs into the FIRST directory: never name tests/data/... first.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "formats/gguf.h"
#include "formats/quant_blocks.h"
#include "formats/safetensors.h"

namespace {

using namespace pdvm::formats;

volatile uint64_t g_sink;  // keeps the reads below from being optimized away

void touch(const uint8_t* p, size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i < n; ++i) s += p[i];
  g_sink = g_sink + s;
}

void exercise(const GgufFile& f) {
  for (const auto& key : f.keys()) {
    (void)f.type_of(key);
    (void)f.get_string(key);
    (void)f.get_int(key);
    (void)f.get_float(key);
    (void)f.get_bool(key);
    (void)f.get_string_array(key);
    (void)f.get_int_array(key);
    (void)f.get_float_array(key);
  }
  for (const auto& t : f.tensors()) {
    PDVM_ASSERT(f.find(t.name) != nullptr);
    touch(t.data, t.n_bytes);
    if (!t.weight_type || t.dims.empty() || t.dims[0] == 0) continue;
    // The validator's byte count must agree with the row geometry the kernels use.
    const int64_t cols = t.dims[0];
    const size_t row = pdvm::core::row_bytes(*t.weight_type, cols);
    PDVM_ASSERT(t.n_bytes % row == 0);
    if (t.n_bytes >= row && cols <= (1 << 16)) {
      std::vector<float> out(static_cast<size_t>(cols));
      dequantize_row(*t.weight_type, t.data, cols, out.data());
    }
  }
}

void exercise(const SafetensorsFile& f) {
  for (const auto& [k, v] : f.metadata()) g_sink = g_sink + k.size() + v.size();
  for (const auto& t : f.tensors()) {
    PDVM_ASSERT(f.find(t.name) == &t);
    touch(t.data, t.n_bytes);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> bytes(data, size);
  if (auto g = GgufFile::open_memory(bytes, "fuzz.gguf"); g.is_ok()) {
    exercise(*g);
    GgufFile copy = *g;  // copies share the parsed values
    exercise(copy);
  }
  if (auto s = SafetensorsFile::open_memory(bytes, "fuzz.safetensors"); s.is_ok()) exercise(*s);
  return 0;
}
