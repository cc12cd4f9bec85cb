// GGUF reader (zero-copy over a mapping) and a minimal writer. open() validates everything
// before returning: magic, version (2 or 3), every count, string and array length against the
// bytes left, every key/value, tensor infos (dims, type geometry, alignment, bounds, overlaps,
// duplicate names). Interpreting keys and tensor names (llama.*, blk.N.*) is left to model/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/mapped_file.h"
#include "core/weight.h"
#include "pdvm/status.h"

namespace pdvm::formats {

enum class GgufValueType : uint32_t { kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5,
                                      kF32 = 6, kBool = 7, kString = 8, kArray = 9, kU64 = 10,
                                      kI64 = 11, kF64 = 12 };

std::string_view gguf_value_type_name(GgufValueType type);  // "u32", "string", "array", ...

// One GGUF value. Integers of every width (and bools, as 0/1) are held in int64_t; a u64 above
// INT64_MAX is held bit-cast (type says so, and get_int refuses it). f32 values are widened to
// double exactly. Nested arrays are not supported (no model uses them; open() rejects them).
struct GgufValue {
  GgufValueType type = GgufValueType::kU32;
  GgufValueType array_type = GgufValueType::kU8;  // element type, when type == kArray
  std::variant<int64_t, double, std::string, std::vector<int64_t>, std::vector<double>,
               std::vector<std::string>>
      v;

  // Constructors for the writer (and tests).
  static GgufValue u8(uint8_t x) { return {GgufValueType::kU8, {}, int64_t(x)}; }
  static GgufValue i8(int8_t x) { return {GgufValueType::kI8, {}, int64_t(x)}; }
  static GgufValue u16(uint16_t x) { return {GgufValueType::kU16, {}, int64_t(x)}; }
  static GgufValue i16(int16_t x) { return {GgufValueType::kI16, {}, int64_t(x)}; }
  static GgufValue u32(uint32_t x) { return {GgufValueType::kU32, {}, int64_t(x)}; }
  static GgufValue i32(int32_t x) { return {GgufValueType::kI32, {}, int64_t(x)}; }
  static GgufValue u64(uint64_t x) { return {GgufValueType::kU64, {}, int64_t(x)}; }
  static GgufValue i64(int64_t x) { return {GgufValueType::kI64, {}, x}; }
  static GgufValue f32(float x) { return {GgufValueType::kF32, {}, double(x)}; }
  static GgufValue f64(double x) { return {GgufValueType::kF64, {}, x}; }
  static GgufValue boolean(bool x) { return {GgufValueType::kBool, {}, int64_t(x)}; }
  static GgufValue string(std::string x) { return {GgufValueType::kString, {}, std::move(x)}; }
  // element_type: an integer type or kBool (values must fit it; the writer checks).
  static GgufValue int_array(GgufValueType element_type, std::vector<int64_t> x) {
    return {GgufValueType::kArray, element_type, std::move(x)};
  }
  // element_type: kF32 or kF64.
  static GgufValue float_array(GgufValueType element_type, std::vector<double> x) {
    return {GgufValueType::kArray, element_type, std::move(x)};
  }
  static GgufValue string_array(std::vector<std::string> x) {
    return {GgufValueType::kArray, GgufValueType::kString, std::move(x)};
  }
};

// Block geometry of a ggml type id (every type ggml defines, not only those pdvm runs).
struct GgmlTypeInfo {
  std::string_view name;  // "F32", "Q4_K", ...
  int block_size = 0;     // elements per block
  int block_bytes = 0;    // bytes per block
};
// nullopt for ids ggml does not define (or has removed).
std::optional<GgmlTypeInfo> ggml_type_info(uint32_t ggml_type);
// The pdvm WeightType of a ggml type id; nullopt when pdvm does not run that type.
std::optional<core::WeightType> weight_type_from_ggml(uint32_t ggml_type);
uint32_t ggml_type_from_weight_type(core::WeightType type);

struct GgufTensorInfo {
  std::string name;
  // raw ggml type id (F32=0 F16=1 Q4_0=2 Q4_1=3 Q5_0=6 Q5_1=7 Q8_0=8 Q4_K=12 Q5_K=13 Q6_K=14
  // BF16=30 ...)
  uint32_t ggml_type = 0;
  std::optional<core::WeightType> weight_type;  // set when pdvm supports the type
  std::vector<int64_t> dims;                    // ggml ne[], innermost (columns) first
  uint64_t offset = 0;                          // relative to the data section
  const uint8_t* data = nullptr;                // into the mapping; n_bytes bytes
  size_t n_bytes = 0;
};

// An open, validated GGUF file. Cheap to copy: copies share the mapping and the parsed values;
// the mapping stays alive as long as any copy (or any shared_ptr from mapping()) does.
// Immutable, so it may be read from several threads.
class GgufFile {
 public:
  // Maps the file (core::MappedFile) and validates header, all KVs, tensor infos, alignment
  // and data bounds.
  static Result<GgufFile> open(const std::string& path);
  // Same checks over bytes in memory (copied; used by the fuzzer and tests). `name` is used in
  // messages and returned by path(); mapping() is null for such a file.
  static Result<GgufFile> open_memory(std::span<const uint8_t> bytes, std::string name);

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  // general.alignment (32 when absent): a power of two >= 8, so every tensor's data starts at
  // a file offset that is a multiple of 8 (and its pointer too: mappings are page-aligned).
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // file offset of the data section

  std::vector<std::string> keys() const;  // in file order
  bool has(std::string_view key) const;
  std::optional<GgufValueType> type_of(std::string_view key) const;
  const GgufValue* value(std::string_view key) const;  // nullptr if absent
  Result<std::string> get_string(std::string_view key) const;
  Result<int64_t> get_int(std::string_view key) const;   // any integer type (and bool)
  Result<double> get_float(std::string_view key) const;  // f32/f64 (ints accepted too)
  Result<bool> get_bool(std::string_view key) const;
  Result<std::vector<std::string>> get_string_array(std::string_view key) const;
  Result<std::vector<int64_t>> get_int_array(std::string_view key) const;  // int/bool elements
  Result<std::vector<double>> get_float_array(std::string_view key) const;  // also int elements

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }  // in file order
  const GgufTensorInfo* find(std::string_view name) const;  // nullptr if absent
  std::shared_ptr<const core::MappedFile> mapping() const { return mapping_; }

 private:
  static Result<GgufFile> parse(std::shared_ptr<const void> keepalive, const uint8_t* base,
                                size_t size, std::string name);
  Result<const GgufValue*> lookup(std::string_view key) const;

  std::string path_;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  // Shared, not copied, between copies of the file: the token list alone is 49k strings.
  std::shared_ptr<const std::vector<std::pair<std::string, GgufValue>>> kvs_;
  std::shared_ptr<const std::map<std::string, size_t, std::less<>>> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
  std::shared_ptr<const core::MappedFile> mapping_;
  std::shared_ptr<const void> keepalive_;  // the mapping or the in-memory copy
};

// Minimal writer (for tests, broken-file corpus generation in tests, and the converter).
struct GgufKv {
  std::string key;
  GgufValue value;
};
struct GgufTensorToWrite {
  std::string name;
  uint32_t ggml_type;
  std::vector<int64_t> dims;  // ggml ne[], innermost first
  const void* data;
  size_t n_bytes;
};
// Writes GGUF v3: KVs in order (general.alignment added when alignment != 32 and absent),
// tensor data in order, each tensor's data padded to `alignment`. Checks what the reader
// checks: unique keys and names, known ggml types, dims against block geometry, n_bytes.
Status write_gguf(const std::string& path, const std::vector<GgufKv>& kvs,
                  const std::vector<GgufTensorToWrite>& tensors, uint32_t alignment = 32);

}  // namespace pdvm::formats
