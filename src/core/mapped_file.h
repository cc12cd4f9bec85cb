// MappedFile: a read-only memory mapping of a whole file (safetensors and GGUF weights are read
// in place, never copied). Shared by the Model that views into it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "pdvm/status.h"

namespace pdvm::core {

class MappedFile {
 public:
  static Result<std::shared_ptr<MappedFile>> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

}  // namespace pdvm::core
