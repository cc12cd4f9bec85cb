// The GPU's MdCSR chunk order (cuda_backend.cu's upload): a run of consecutive chunks of one row
// whose entries are dealt out across the run's chunks like cards, so chunk i holds entries i,
// i + m, i + 2m, ... of the run (m chunks). Still valid MdCSR: each chunk's columns are
// non-decreasing from its own base, with gaps of at most 255.
//
// Why: the CUDA kernel gives each lane of a warp one of 32 consecutive chunks, and at step j every
// lane reads x at entry j of its chunk. In the file's order those 32 columns lie ~32 columns apart
// (one chunk's span), at banks that are in effect random: ~3.7 shared-memory wavefronts per load
// (Nsight Compute, bitmap_i8's equal case). Dealt, the 32 lanes read 32 consecutive entries of the
// row, whose columns span ~2 banks' worth at 50% sparsity: at most ~2 wavefronts.
#pragma once

#include <cstdint>

namespace pdvm::formats {

constexpr int kMdCsrInterleaveMax = 32;  // chunks per run: one per lane of a warp

// chunks: m chunks of 32 bytes each (16 int8 values, then 16 column deltas, delta 0 of each 0);
// bases: their m base columns; the columns must be non-decreasing over the run (a row's chunks as
// MdCsrRowPacker writes them). Deals the entries in place and returns true, or leaves the run as it
// is and returns false when m < 2 or a dealt chunk would need a gap wider than 255.
bool interleave_mdcsr_run(uint8_t* chunks, uint16_t* bases, int m);

}  // namespace pdvm::formats
