// safetensors reader (zero-copy over a mapping) and writer. open() validates the whole header
// before returning: header length, JSON, dtypes, shapes, and that the tensors' byte ranges tile
// the data section exactly (the reference implementation's rule: no holes, no overlaps). What
// the tensors mean (names, shapes against a config) is left to model/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/mapped_file.h"
#include "pdvm/status.h"

namespace pdvm::formats {

struct SafetensorsTensor {
  std::string name;
  std::string dtype;             // as in the header: "F32", "F16", "BF16", "I8", "U8", "I32", ...
  std::vector<int64_t> shape;
  // Into the mapping; n_bytes bytes. Not necessarily aligned: safetensors offsets carry no
  // alignment guarantee (the reference writer pads only the header to 8), so read elements
  // with memcpy or check the alignment before casting.
  const uint8_t* data = nullptr;
  size_t n_bytes = 0;
  // Bits per element of `dtype` (4 for F4, 6 for F6_*, 16 for BF16, ...); 0 when pdvm does not
  // know the dtype: such a tensor loads (its range is checked) but its size could not be
  // checked against its shape, so a user must reject it or know what it holds.
  int dtype_bits = 0;
  bool dtype_known() const { return dtype_bits != 0; }
};

// Bits per element of a safetensors dtype name; 0 when unknown.
int safetensors_dtype_bits(std::string_view dtype);

// An open, validated safetensors file. Cheap to copy: copies share the mapping, which stays
// alive as long as any copy (or any shared_ptr from mapping()) does. Immutable, so it may be
// read from several threads.
class SafetensorsFile {
 public:
  // Maps the file (core::MappedFile) and validates the whole header.
  static Result<SafetensorsFile> open(const std::string& path);
  // Same checks over bytes in memory (copied; used by the fuzzer and tests). `name` is used in
  // messages and returned by path(); mapping() is null for such a file.
  static Result<SafetensorsFile> open_memory(std::span<const uint8_t> bytes, std::string name);

  const std::string& path() const { return path_; }
  // In data order (by offset).
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* find(std::string_view name) const;  // nullptr if absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }  // __metadata__
  std::shared_ptr<const core::MappedFile> mapping() const { return mapping_; }

 private:
  static Result<SafetensorsFile> parse(std::shared_ptr<const void> keepalive, const uint8_t* base,
                                       size_t size, std::string name);
  std::string path_;
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
  std::shared_ptr<const core::MappedFile> mapping_;
  std::shared_ptr<const void> keepalive_;  // the mapping or the in-memory copy
};

struct SafetensorsTensorToWrite {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  const void* data;
  size_t n_bytes;
};

// Writes tensors in the given order, header padded with spaces to a multiple of 8 bytes (as the
// reference writer does, so data stays 8-byte aligned). Checks names (unique, not
// "__metadata__") and, for known dtypes, n_bytes == product(shape) * dtype size.
Status write_safetensors(const std::string& path,
                         const std::vector<SafetensorsTensorToWrite>& tensors,
                         const std::map<std::string, std::string>& metadata = {});

}  // namespace pdvm::formats
