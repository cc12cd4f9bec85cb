// Scratch paths for tests. ctest runs each test case as its own process, several at once (-j), so
// a fixed file name in the shared temp directory could be written by two processes at a time, and
// files left there pile up over runs. Every path here lives in one directory per process, removed
// when the process exits.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace pdvm::test {

inline const std::filesystem::path& scratch_dir() {
  struct Dir {
    std::filesystem::path path =
        std::filesystem::path(testing::TempDir()) / ("pdvm_test_" + std::to_string(::getpid()));
    Dir() { std::filesystem::create_directories(path); }
    ~Dir() {
      std::error_code ec;  // best effort at exit: never throw from here
      std::filesystem::remove_all(path, ec);
    }
  };
  static const Dir dir;
  return dir.path;
}

inline std::filesystem::path scratch_path(const std::string& name) { return scratch_dir() / name; }

}  // namespace pdvm::test
