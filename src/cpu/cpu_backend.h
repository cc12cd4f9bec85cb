// The CPU backend: core::Backend on the host, in two flavours sharing one forward pass:
//  - kReference: plain scalar kernels with fp64 sums (cpu/reference_kernels.h), the oracle;
//  - kFast: threaded SIMD kernels (cpu/matvec.h) that read quantized weights in place.
// KV cache and activations are allocated in the constructor; the decode loop allocates nothing.
#pragma once

#include <memory>

#include "core/backend.h"
#include "core/thread_pool.h"

namespace pdvm::cpu {

enum class CpuKernels { kReference, kFast };

struct CpuOptions : core::BackendOptions {
  CpuKernels kernels = CpuKernels::kFast;
};

Result<std::unique_ptr<core::Backend>> make_cpu_backend(const core::Model& model,
                                                        const CpuOptions& options);

}  // namespace pdvm::cpu
