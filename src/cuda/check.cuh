// CUDA error checking: every runtime call and launch becomes a Status at the backend boundary
// (code kDevice, with the failing expression, file and line). Device code never reports errors.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "pdvm/status.h"

namespace pdvm::cuda {

inline Status cuda_status(cudaError_t e, const char* expr, const char* file, int line) {
  return Status(StatusCode::kDevice, std::string("CUDA error ") + cudaGetErrorName(e) + " (" +
                                         cudaGetErrorString(e) + ") in " + expr + " at " + file +
                                         ":" + std::to_string(line));
}

}  // namespace pdvm::cuda

// Returns a Status from the enclosing function when a CUDA runtime call fails.
#define PDVM_CUDA_TRY(expr)                                                          \
  do {                                                                               \
    const cudaError_t pdvm_e_ = (expr);                                              \
    if (pdvm_e_ != cudaSuccess)                                                      \
      return ::pdvm::cuda::cuda_status(pdvm_e_, #expr, __FILE__, __LINE__);          \
  } while (0)

// After a <<<>>> launch: launch-configuration errors and sticky errors from earlier work.
#define PDVM_CUDA_LAUNCHED(what) PDVM_CUDA_TRY(cudaGetLastError())
