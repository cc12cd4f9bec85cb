// The machine's read-bandwidth ceiling: how fast the pool's threads can stream a buffer larger
// than the last-level cache. Batch-1 decode cannot beat (weight bytes per token) / this rate, so
// benchmarks and the CLI report kernels as a percentage of it.
#pragma once

#include <cstddef>

#include "core/thread_pool.h"

namespace pdvm::cpu {

struct ReadBandwidth {
  double gbps = 0;      // 1e9 bytes per second, best repeat
  size_t n_bytes = 0;   // bytes read per repeat
  int threads = 0;      // pool threads that read
  double best_ms = 0;   // time of the best repeat
};

// Allocates and touches n_bytes (choose it well above L3: 32 MB here), then times `repeats`
// passes in which each pool thread sums its contiguous share with vector loads; reports the best.
// Allocates, so call it outside the decode loop.
ReadBandwidth measure_read_bandwidth(core::ThreadPool& pool, size_t n_bytes = size_t(1) << 30,
                                     int repeats = 5);

}  // namespace pdvm::cpu
